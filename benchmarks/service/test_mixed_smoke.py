"""Smoke test: the mixed load runs at tiny sizes, every phase measures what it names,
and every code of both kinds of call is answered INVALID (run with `pytest
benchmarks/service`)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from benchmarks.service import mixed
from benchmarks.service.fixtures import FactorPool, seed_database, sqlite_database


def test_unary_and_batches_are_measured_alone_and_at_once(tmp_path: Path) -> None:
    config = SimpleNamespace(items=50, concurrency=2, seconds=0.5, turns=1)
    with sqlite_database(tmp_path) as database:
        pool = FactorPool(seed_database(database, tmp_path, 300))
        figures = mixed.measure(database, tmp_path, pool, config)
    (unary_alone,), (batch_alone,), (both,), (apart,) = (figures["turns"][p] for p in mixed.PHASES)
    assert "batch" not in unary_alone and "unary" not in batch_alone
    for phase in (unary_alone, both, apart):
        assert phase["unary"]["requests"] > 0
        assert set(phase["unary"]["verdicts"]) == {"VERIFY_RESULT_INVALID"}
    for phase in (batch_alone, both, apart):
        assert phase["batch"]["calls"] >= 1
        assert phase["batch"]["invalid_fraction"] == 1.0
    text = "\n".join(mixed.table(figures))
    assert "at once: unary" in text and "apart (batches on a second process): unary" in text
    # The second server answered batches only: its warm-up call and the `apart` phase's.
    second = _methods_served(tmp_path / "totpd-mixed-batches.log")
    assert second == {"BatchVerify": 1 + apart["batch"]["calls"]}
    assert {"Verify", "BatchVerify"} <= set(_methods_served(tmp_path / "totpd-mixed.log"))


def _methods_served(log: Path) -> dict[str, int]:
    """TotpService methods by their access lines in a server's log, and how often."""
    served: dict[str, int] = {}
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            method = json.loads(line).get("method", "")
            if method.startswith("/totpd.v1.TotpService/"):
                name = method.rsplit("/", 1)[1]
                served[name] = served.get(name, 0) + 1
    return served


def test_a_batch_names_distinct_accounts_and_cycles_over_the_pool(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as database:
        pool = FactorPool(seed_database(database, tmp_path, 5))
    batches = mixed._WrongBatches(pool, 3)
    first, second = ([item.account_id for item in batches.request().items] for _ in range(2))
    assert len(set(first)) == 3 and len(set(second)) == 3
    assert second[:2] == [pool.account(3), pool.account(4)] and second[2] == first[0]
