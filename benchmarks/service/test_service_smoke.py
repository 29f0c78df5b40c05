"""Smoke test: the service benchmark code runs end to end at tiny sizes.

Run with `pytest benchmarks/service` (not part of the main `pytest` run). It checks
that every piece produces well-formed figures, never how fast anything is.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.service import __main__ as service_main
from benchmarks.service import batch, breakdown, report, targets, unary, unary_stages, wire
from benchmarks.service.fixtures import (
    POSTGRES_URL_ENV,
    FactorPool,
    postgres_database,
    postgres_settings,
    seed_database,
    sqlite_database,
    sqlite_settings,
)
from benchmarks.service.servers import ServerProcess


def test_service_benchmarks_run_at_tiny_sizes(tmp_path: Path) -> None:
    figures = _run_every_piece(tmp_path)
    service, consume, own_sql = figures["service"], figures["consume"], figures["own_sql"]
    parts, level = figures["parts"], figures["level"]
    # Fresh codes only: replay protection must not turn the measured calls into REPLAYED.
    assert service["valid_fraction"] == 1.0
    assert consume["updated_fraction"] == 1.0 and own_sql["updated_fraction"] == 1.0
    assert own_sql["read_fraction"] == 1.0
    assert set(breakdown.STAGES) <= set(parts["stages_median_s"])
    # The store reported the time of the read's and the write's statements.
    assert {"read_select_sql_exec", "write_update_sql_exec"} <= set(parts["stages_median_s"])
    assert level["requests"] > 0 and set(level["verdicts"]) == {"VERIFY_RESULT_VALID"}
    assert level["mode"] == "closed"
    # `--processes 2`: two workers on one port, at least two connections each, and the
    # server's CPU is theirs (the supervisor alone is idle: far below this).
    assert level["servers"] == 2 and level["connections"] >= 4
    assert level["server_cpu_s"][0] > 0.05
    _check_open_level(figures["open_level"])
    _check_unary_parts(figures["unary_parts"])
    assert figures["settings"]["journal_mode"] == "wal"

    shapes = wire.measure(50, 1)
    assert shapes["per_item"]["request_bytes"] > 0 and shapes["columnar"]["request_bytes"] > 0

    results = _results(figures, shapes)
    printed = report.table(results)
    assert "sqlite" in printed and "open loop" in printed and "synchronous=NORMAL" in printed
    # Tiny sizes: the targets table shows the figures and claims no verdict on them.
    found = targets.evaluate(results)
    assert all(target.met is None for target in found)
    assert "x20 only" in "\n".join(targets.table(found))
    report.write_json(results, tmp_path / "service.json")
    if report.plot(results, tmp_path / "service.png"):
        assert (tmp_path / "service.png").stat().st_size > 0


def _run_every_piece(tmp_path: Path) -> dict[str, Any]:
    """Every measurement once, at tiny sizes, on one SQLite database and one server."""
    with sqlite_database(tmp_path) as database:
        seeded = seed_database(database, tmp_path, 400)
        pool = FactorPool(seeded)
        server = ServerProcess(tmp_path, database.url, processes=2)
        server.start()
        try:
            return {
                "seed_s": seeded.seconds,
                "service": batch.run_service(server.address, pool, 20, 1, server.pid),
                "consume": batch.run_database(database, pool, 20, 1),
                "own_sql": batch.run_service_sql(database, pool, 20, 1),
                "parts": breakdown.run_breakdown(database, tmp_path, pool, 20, 1),
                "unary_parts": unary_stages.run_unary_breakdown(database, tmp_path, pool, 10),
                "level": unary.run_level(server, pool, 2, 0.3, max_rate=200),
                "open_level": unary.run_open_level(server, pool, 100.0, 0.4, 50, warmup=10),
                "settings": sqlite_settings(database),
            }
        finally:
            server.stop()


def _check_open_level(open_level: dict[str, Any]) -> None:
    """Open loop: 100 req/s for 0.4 s is 40 requests due, each sent, dropped or failed."""
    assert open_level["mode"] == "open" and open_level["rate"] == 100.0
    assert open_level["scheduled"] == 40 and open_level["max_outstanding"] == 50
    assert open_level["sent"] + open_level["dropped"] == open_level["scheduled"]
    assert open_level["requests"] == open_level["sent"] > 0
    assert 0 <= open_level["late"] <= open_level["sent"]
    assert 1 <= open_level["peak_outstanding"] <= open_level["max_outstanding"]
    assert set(open_level["verdicts"]) == {"VERIFY_RESULT_VALID"}
    assert sum(open_level["verdicts"].values()) == open_level["requests"]
    assert 0 < open_level["rps"] and 0 < open_level["seconds"] and open_level["schedule_s"] == 0.4
    p50, p99, top = open_level["p50_ms"], open_level["p99_ms"], open_level["max_ms"]
    assert 0 < p50 <= p99 <= top and math.isfinite(top)
    # From the due time, never shorter than from the actual send.
    assert open_level["from_send_p99_ms"] <= p99 + 1e-6
    # The workers' named threads (both workers' event loops add up in `totpd-loop`).
    assert open_level["server_threads_cpu_s"]["totpd-loop"] > 0
    assert "totpd-loop" in report.by_thread(open_level)


def _check_unary_parts(parts: dict[str, Any]) -> None:
    """Ten unary calls timed by stage: each stage the batch's, per call."""
    assert parts["unary"] is True and parts["batch"] == parts["calls"] == 10
    assert parts["verdicts"] == {"VERIFY_RESULT_INVALID": 10}
    stages = parts["stages_median_s"]
    assert set(breakdown.STAGES) <= set(stages)
    # Each call read its factor and wrote its failure: both statements were timed.
    assert stages["read_select_sql_exec"] > 0 and stages["write_update_sql_exec"] > 0
    assert stages["c_verify"] > 0 and stages["decrypt"] > 0
    grouped = sum(seconds for _, seconds, _ in breakdown.grouped(stages))
    assert 0 < grouped <= stages["total"] * 1.001
    printed = "\n".join(unary_stages.table("sqlite", parts, None))
    assert "10 unary Verify calls in-process" in printed and "µs/call" in printed
    cpu = {"noop": 200.0, "noop+interceptors": 280.0, "totpd": 700.0}
    floor = {
        "servers": {name: {"median_cpu_us_per_call": us} for name, us in cpu.items()},
        "concurrency": 8,
    }
    served = unary_stages.table("sqlite", parts, floor)[1]
    assert served.startswith("   served, 8 in flight")
    assert "(the no-op) 200, totpd's interceptor chain 80, the rest 420" in served


def test_each_open_loop_turn_is_followed_by_the_no_op_at_the_same_rate(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as database:
        pool = FactorPool(seed_database(database, tmp_path, 1_000))
        server = ServerProcess(tmp_path, database.url)
        server.start()
        try:
            config = {"open_turns": 2, "seconds": 0.4}
            (level,) = service_main._open_levels(
                database, server, pool, config, [100.0], 50, tmp_path
            )
        finally:
            server.stop()
    # totpd's two turns took fresh steps (their warm-up too); the no-op's wrong codes none.
    assert pool.cursor == 2 * (200 + 40)
    assert set(level["verdicts"]) == {"VERIFY_RESULT_VALID"}
    assert len(level["turns"]) == len(level["noop_turns"]) == 2
    for turn in level["noop_turns"]:
        assert turn["rps"] > 0 and 0 < turn["p50_ms"] <= turn["p99_ms"]
    printed = "\n".join(report.open_loop_lines([level]))
    assert "the no-op behind the interceptors, the same rate, a turn after each: p99 " in printed


def test_unary_requests_survive_their_framing() -> None:
    messages = [b"", b"\x00\x01", bytes(300)]
    assert unary_stages.unpack(unary_stages.pack(messages)) == messages


def _results(figures: dict[str, Any], shapes: dict[str, Any]) -> dict[str, Any]:
    """The figures in the shape `__main__` gives the report."""
    service, consume, own_sql = figures["service"], figures["consume"], figures["own_sql"]
    return {
        "meta": {"sqlite": figures["settings"]},
        "databases": {
            "sqlite": {
                "factors": 400,
                "seed_s": figures["seed_s"],
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
                "breakdown": {k: v for k, v in figures["parts"].items() if k != "profile_top"},
                "unary": [figures["level"]],
                "unary_open": [figures["open_level"]],
            }
        },
        "wire": shapes,
    }


def test_benchmark_postgres_is_durable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's throwaway PostgreSQL keeps fsync & co. on (the tests' turns them off)."""
    from tests.pg_server import PostgresUnavailableError

    monkeypatch.delenv(POSTGRES_URL_ENV, raising=False)
    with contextlib.ExitStack() as stack:
        try:
            database = stack.enter_context(postgres_database())
        except (PostgresUnavailableError, OSError) as error:
            pytest.skip(f"no PostgreSQL: {error}")
        settings = postgres_settings(database)
    assert settings["source"] == "throwaway" and settings["durable"] is True
    assert {k: settings["settings"][k] for k in ("fsync", "synchronous_commit")} == {
        "fsync": "on",
        "synchronous_commit": "on",
    }
    assert settings["settings"]["full_page_writes"] == "on"
    header = report.table({"meta": {"postgresql": settings}, "databases": {}})
    assert "durable" in header and "fsync=on" in header
