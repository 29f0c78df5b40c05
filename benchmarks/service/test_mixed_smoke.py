"""Smoke test: the mixed load runs at tiny sizes, every phase measures what it names,
and every code of both kinds of call is answered INVALID (run with `pytest
benchmarks/service`)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from benchmarks.service import mixed
from benchmarks.service.fixtures import FactorPool, seed_database, sqlite_database


def test_unary_and_batches_are_measured_alone_and_at_once(tmp_path: Path) -> None:
    config = SimpleNamespace(items=50, concurrency=2, seconds=0.5, turns=1)
    with sqlite_database(tmp_path) as database:
        pool = FactorPool(seed_database(database, tmp_path, 300))
        figures = mixed.measure(database, tmp_path, pool, config)
    (unary_alone,), (batch_alone,), (both,) = (figures["turns"][p] for p in mixed.PHASES)
    assert "batch" not in unary_alone and "unary" not in batch_alone
    for phase in (unary_alone, both):
        assert phase["unary"]["requests"] > 0
        assert set(phase["unary"]["verdicts"]) == {"VERIFY_RESULT_INVALID"}
    for phase in (batch_alone, both):
        assert phase["batch"]["calls"] >= 1
        assert phase["batch"]["invalid_fraction"] == 1.0
    assert "at once: unary" in "\n".join(mixed.table(figures))


def test_a_batch_names_distinct_accounts_and_cycles_over_the_pool(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as database:
        pool = FactorPool(seed_database(database, tmp_path, 5))
    batches = mixed._WrongBatches(pool, 3)
    first, second = ([item.account_id for item in batches.request().items] for _ in range(2))
    assert len(set(first)) == 3 and len(set(second)) == 3
    assert second[:2] == [pool.account(3), pool.account(4)] and second[2] == first[0]
