"""Smoke test: the BatchVerify ratio and its stage table come out of one run at tiny
sizes, every code VALID, the stages adding up to the call (run with `pytest benchmarks/service`)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.service import batch_stages, breakdown
from benchmarks.service.fixtures import FactorPool, seed_database, sqlite_database


def test_ratio_and_stage_table_in_one_run(tmp_path: Path) -> None:
    args = batch_stages._parser().parse_args(
        ["--items", "40", "--turns", "2", "--calls", "1", "--breakdown-calls", "1"]
    )
    with sqlite_database(tmp_path) as database:
        pool = FactorPool(seed_database(database, tmp_path, 400))
        figures = batch_stages.measure(database, tmp_path, pool, args)
    assert figures["valid_fraction"] == 1.0
    assert len(figures["service"]["times_s"]) == 2  # one call per turn, the warm-up left out
    assert figures["db_consume"]["updated_fraction"] == 1.0
    assert figures["ratio_vs_consume"] > 0
    stages = figures["breakdown"]["stages_median_s"]
    groups = dict((name, seconds) for name, seconds, _ in breakdown.grouped(stages))
    assert {"wire", "decrypt", "C", "decide", "SQL read", "SQL write", "commit"} <= set(groups)
    # The groups split the timed call: their sum is its total, within the untimed glue.
    assert 0.5 * stages["total"] <= sum(groups.values()) <= 1.01 * stages["total"]
    assert groups["commit"] > 0 and groups["SQL read"] > 0
    printed = "\n".join(batch_stages.table("sqlite", figures))
    assert "svc/db1" in printed and "µs/item" in printed and "through gRPC" in printed
