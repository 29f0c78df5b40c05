"""Options and JSON metadata of the core micro-benchmarks (``pytest benchmarks/core``).

By default the suite is a smoke run: batch sizes 1 and 100, one timed round per
cell, a few seconds. ``--core-sizes full`` (what ``run_core_bench.py`` and
``benchmarks/run.sh`` pass) times every batch size with enough rounds for medians.
"""

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import coremeta

from totpd import otp
from totpd.config import load_settings


def pytest_configure(config: pytest.Config) -> None:
    """The CPU path as totpd's composition root sets it: the cpu_path setting
    (TOTPD_CPU_PATH), so a forced path is the one the default-path rows time."""
    otp.use_cpu_path(load_settings().cpu_path)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--core-sizes",
        choices=("smoke", "full"),
        default="smoke",
        help="core benchmarks: smoke (batches 1 and 100, one round) or full",
    )


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    """The run's commit, CPU, dispatcher and versions, next to its figures."""
    timer = str(config.getoption("benchmark_timer"))
    output_json["totpd_core"] = coremeta.collect(config.getoption("core_sizes"), timer)
