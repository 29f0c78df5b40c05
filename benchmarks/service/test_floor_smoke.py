"""Smoke test: the gRPC floor comparison runs at tiny sizes, the no-op servers answer
without touching the database, and totpd counts every wrong code as a failure
(run with `pytest benchmarks/service`)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from benchmarks.service import floor
from benchmarks.service.fixtures import FactorPool, seed_database, sqlite_database
from totpd.store import open_engine
from totpd.store.models import EVENT_IDS_PER_CALL


def test_totpd_and_the_noop_floor_are_measured_side_by_side(tmp_path: Path) -> None:
    config = {"seconds": 0.5, "concurrency": 2, "turns": 1}
    with sqlite_database(tmp_path) as database:
        pool = FactorPool(seed_database(database, tmp_path, 300))
        figures = floor.measure(database, tmp_path, pool, config)
        engine = open_engine(database.url)
        with engine.connect() as connection:
            verifies = connection.execute(
                text(
                    "SELECT count(*) FROM audit_events JOIN audit_calls ON audit_calls.id = "
                    f"audit_events.id / {EVENT_IDS_PER_CALL} WHERE method = 'Verify'"
                )
            ).scalar_one()
            failures = connection.execute(
                text("SELECT coalesce(sum(failed_attempts), 0) FROM factors")
            ).scalar_one()
        engine.dispose()
    servers = figures["servers"]
    assert set(servers) == set(floor.SERVERS)
    for name in floor.SERVERS:
        assert servers[name]["requests"] > 0
        assert servers[name]["rps"] > 0
    # Every call to totpd was a wrong code it compared and counted: no lock, no budget.
    assert set(figures["totpd_verdicts"]) == {"VERIFY_RESULT_INVALID"}
    assert verifies >= servers["totpd"]["requests"]
    assert failures >= servers["totpd"]["requests"]
    assert figures["ratio"] > 0
    # Where each server's CPU goes, by its named threads (Linux /proc).
    assert {"totpd-loop", "totpd-round"} <= set(servers["totpd"]["server_threads_cpu_s"])
    assert "totpd-loop" in servers["noop"]["server_threads_cpu_s"]
    by_thread = [line for line in floor.table("sqlite", figures) if "by thread" in line]
    assert len(by_thread) == len(floor.SERVERS)
    assert all("totpd-loop" in line for line in by_thread)
    assert "totpd / noop" in "\n".join(floor.table("sqlite", figures))
