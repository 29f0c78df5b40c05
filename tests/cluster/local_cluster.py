"""deploy/local-cluster (a script without a .py name) as a module, for the tests."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local-cluster"


def load() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("local_cluster", str(SCRIPT))
    spec = importlib.util.spec_from_loader("local_cluster", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
