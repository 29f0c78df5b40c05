"""Smoke test: the audit on/off comparison runs at tiny sizes, and only the audit-on
server writes events (run with `pytest benchmarks/service`)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from benchmarks.service import audit_cost
from benchmarks.service.fixtures import FactorPool, seed_database, sqlite_database
from totpd.store import open_engine
from totpd.store.models import EVENT_IDS_PER_CALL


def test_audit_on_and_off_are_measured_side_by_side(tmp_path: Path) -> None:
    config = {
        "batches": [20],
        "repeat": 1,
        "seconds": 0.3,
        "audit_unary_concurrency": 2,
        "unary_turns": 2,
    }
    with sqlite_database(tmp_path) as database:
        pool = FactorPool(seed_database(database, tmp_path, 400))
        figures = audit_cost.measure(database, tmp_path, pool, config)
        engine = open_engine(database.url)
        with engine.connect() as connection:
            methods: dict[str, int] = dict(
                connection.execute(
                    text(
                        "SELECT method, count(*) FROM audit_events JOIN audit_calls ON "
                        f"audit_calls.id = audit_events.id / {EVENT_IDS_PER_CALL} GROUP BY method"
                    )
                ).all()
            )
        engine.dispose()
    (row,) = figures["batch"]
    assert row["batch"] == 20 and row["ratio"] > 0
    for mode in audit_cost.MODES:
        assert row[mode]["valid_fraction"] == 1.0
        # 40 items of a warm server can spend less than one 10 ms tick of the /proc
        # clock: a figure, possibly 0 at this size; the unary turns run long enough.
        assert row[mode]["server_cpu_us_per_item"] >= 0
        assert figures["unary"][mode]["requests"] > 0
        assert figures["unary"][mode]["server_cpu_us_per_call"] > 0
        assert len(figures["unary"][mode]["turns_rps"]) == 2
    # The audit-on server's batches only: 1 warm-up and TURNS x 1 measured calls of 20.
    assert methods["BatchVerify"] == (1 + audit_cost.TURNS) * 20
    assert methods["Verify"] > 0
    assert "BatchVerify x20" in "\n".join(audit_cost.table("sqlite", figures))
