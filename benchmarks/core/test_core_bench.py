"""pytest-benchmark micro-benchmarks of the C core, against pyotp and a plain hmac loop.
No test asserts a rate: the assertions check that the code verified what it should.

How to run and read them: benchmarks/README.md, "Core benchmarks: how to run, how to read".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from corebench import (
    FULL_BATCHES,
    FULL_PASSES,
    PEER_RUNNERS,
    SMOKE_BATCHES,
    TARGET_BATCH,
    Cell,
    cells,
    make_peer_work,
    make_workload,
    run_core,
)
from pytest_benchmark.fixture import BenchmarkFixture

from totpd.service.types import Algorithm


@dataclass(frozen=True)
class Budget:
    seconds: float  # timed time wanted per cell and pass
    min_rounds: int  # per pass
    round_s: float  # a round repeats the call until it lasts this long


FULL = {"totpd": Budget(0.2, 3, 0.01), "peer": Budget(0.3, 2, 0.01)}
SMOKE = Budget(0.0, 1, 0.0)


def _full(config: pytest.Config) -> bool:
    return bool(config.getoption("core_sizes", "smoke") == "full")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" in metafunc.fixturenames:
        full = _full(metafunc.config)
        batches = FULL_BATCHES if full else SMOKE_BATCHES
        todo = cells(batches, TARGET_BATCH if full else batches[-1], FULL_PASSES if full else 1)
        metafunc.parametrize("cell", todo, ids=[c.id for c in todo])


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return max(time.perf_counter() - t0, 1e-7)


def plan(fn: Callable[[], object], budget: Budget) -> tuple[int, int]:
    """(rounds, iterations): the first call warms up, a short one is timed again."""
    once = _timed(fn)
    if once < budget.round_s:
        once = _timed(fn)
    iterations = max(1, math.ceil(budget.round_s / once))
    rounds = int(budget.seconds / (once * iterations))
    return max(budget.min_rounds, rounds), iterations


def measure(
    benchmark: BenchmarkFixture, config: pytest.Config, cell: Cell, fn: Callable[[], Any]
) -> Any:
    """Time ``fn`` (one call = ``timed_pairs`` verifications) under the cell's name."""
    budget = FULL["peer" if cell.is_peer else "totpd"] if _full(config) else SMOKE
    rounds, iterations = plan(fn, budget)
    benchmark.group = f"{cell.alg}-{cell.batch}"
    benchmark.extra_info.update(cell.info())
    return benchmark.pedantic(  # type: ignore[no-untyped-call]
        fn, rounds=rounds, iterations=iterations, warmup_rounds=0
    )


def test_bench(benchmark: BenchmarkFixture, pytestconfig: pytest.Config, cell: Cell) -> None:
    w = make_workload(Algorithm(cell.alg), cell.batch, cell.valid)
    if cell.is_peer:
        work = make_peer_work(w, cell.stride)
        run = PEER_RUNNERS[cell.impl]
        benchmark.extra_info["timed_pairs"] = len(work.codes)
        ok = measure(benchmark, pytestconfig, cell, lambda: run(work))
        assert ok == (len(work.codes) if cell.valid else 0)
    else:
        benchmark.extra_info["timed_pairs"] = cell.batch
        out = measure(benchmark, pytestconfig, cell, lambda: run_core(w, cell.path))
        assert len(out) == cell.batch
        assert all((step >= 0) == cell.valid for step in out)
