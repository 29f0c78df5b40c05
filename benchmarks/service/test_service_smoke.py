"""Smoke test: the service benchmark code runs end to end at tiny sizes.

Run with `pytest benchmarks/service` (not part of the main `pytest` run). It checks
that every piece produces well-formed figures, never how fast anything is.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.service import batch, breakdown, report, unary, wire
from benchmarks.service.fixtures import FactorPool, ServerProcess, seed_database, sqlite_database


def test_service_benchmarks_run_at_tiny_sizes(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as database:
        seeded = seed_database(database, tmp_path, 400)
        pool = FactorPool(seeded)
        server = ServerProcess(tmp_path, database.url)
        server.start()
        try:
            service = batch.run_service(server.address, pool, 20, 1, server.pid)
            consume = batch.run_database(database, pool, 20, 1)
            own_sql = batch.run_service_sql(database, pool, 20, 1)
            parts = breakdown.run_breakdown(database, tmp_path, pool, 20, 1)
            level = unary.run_level([server.address], [server.pid], pool, 2, 0.3, max_rate=200)
        finally:
            server.stop()
    # Fresh codes only: replay protection must not turn the measured calls into REPLAYED.
    assert service["valid_fraction"] == 1.0
    assert consume["updated_fraction"] == 1.0 and own_sql["updated_fraction"] == 1.0
    assert own_sql["read_fraction"] == 1.0
    assert set(breakdown.STAGES) <= set(parts["stages_median_s"])
    assert level["requests"] > 0 and set(level["verdicts"]) == {"VERIFY_RESULT_VALID"}

    shapes = wire.measure(50, 1)
    assert shapes["per_item"]["request_bytes"] > 0 and shapes["columnar"]["request_bytes"] > 0

    results = {
        "meta": {},
        "databases": {
            "sqlite": {
                "factors": 400,
                "seed_s": seeded.seconds,
                "batch": [
                    {
                        "batch": 20,
                        "service": service,
                        "db_consume": consume,
                        "db_service_sql": own_sql,
                        "ratio_vs_consume": service["rate"] / consume["rate"],
                        "ratio_vs_service_sql": service["rate"] / own_sql["rate"],
                        "ratio_service_sql_vs_consume": own_sql["rate"] / consume["rate"],
                    }
                ],
                "breakdown": {k: v for k, v in parts.items() if k != "profile_top"},
                "unary": [level],
            }
        },
        "wire": shapes,
    }
    assert "sqlite" in report.table(results)
    report.write_json(results, tmp_path / "service.json")
    if report.plot(results, tmp_path / "service.png"):
        assert (tmp_path / "service.png").stat().st_size > 0
