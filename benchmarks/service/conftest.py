"""Lets `pytest benchmarks/service` import `benchmarks.service` and `tests.pg_server`.

The main `pytest` run never sees this directory (testpaths is `tests`); `make test`
runs it on its own (`make test-benchmarks`).
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
