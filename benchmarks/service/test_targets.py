"""The targets table: each of issue 16's targets met, missed, or "not measured" from a
run's figures (run with `pytest benchmarks/service`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.service import targets, unary


def _floor(ratio: float) -> dict[str, Any]:
    return {
        "ratio": ratio,
        "servers": {
            "totpd": {"rps": 1000 * ratio, "server_cpu_us_per_call": 1200.0},
            "noop": {"rps": 1000.0, "server_cpu_us_per_call": 340.0},
        },
    }


def _batch(size: int, ratio: float) -> dict[str, Any]:
    return {
        "batch": size,
        "ratio_vs_consume": ratio,
        "service": {"rate": 10_000 * ratio},
        "db_consume": {"rate": 10_000.0},
    }


def _open(rate: float, rps: float, p99_ms: float, dropped: int) -> dict[str, Any]:
    return {"rate": rate, "rps": rps, "p99_ms": p99_ms, "dropped": dropped}


def _database(floor_ratio: float, batch_ratio: float, opened: list[dict[str, Any]]) -> Any:
    return {
        "floor": _floor(floor_ratio),
        "batch": [_batch(1_000, 0.5), _batch(10_000, batch_ratio)],
        "unary_open": opened,
        "peak_process_kb": 160 * 1024,
    }


def _growth(worst: float) -> dict[str, Any]:
    memory = {"peak_rss_kb": {"1": 150 * 1024}, "hwm_kb": {"1": 170 * 1024}}
    return {
        "sizes": [
            {"factors": 100_000, "memory": memory},
            {"factors": 10_000_000, "memory": memory},
        ],
        "growth_vs_reference": {"unary ms/call (1/req/s)": 1.1, "batch µs/item (1/rate)": worst},
    }


def test_every_target_gets_its_verdict_from_the_figures() -> None:
    results = {
        "databases": {
            "sqlite": _database(0.61, 0.25, []),
            "postgresql": _database(0.26, 0.72, [_open(2000.0, 777.0, 1593.0, 1389)]),
        },
        "growth": {"postgresql": _growth(2.05)},
    }
    core = {"targets": [{"alg": "SHA1", "rate_valid": 12e6, "rate_target": 5e6, "met": True}]}
    found = targets.evaluate(results, core)
    verdicts = {(t.name, t.database): t.met for t in found}
    assert verdicts[("unary Verify vs the gRPC floor", "sqlite")] is True
    assert verdicts[("unary Verify vs the gRPC floor", "postgresql")] is False
    assert verdicts[("BatchVerify x10,000 vs the bulk UPDATE", "sqlite")] is False
    assert verdicts[("BatchVerify x10,000 vs the bulk UPDATE", "postgresql")] is True
    assert verdicts[("open loop at 2,000 req/s", "postgresql")] is False
    assert verdicts[("growth to 10M factors", "postgresql")] is False
    assert verdicts[("growth to 1M factors", "sqlite")] is None  # no growth run for it
    assert verdicts[("memory per server process", "all")] is None  # a figure, not a goal
    assert verdicts[("C core", "core")] is True
    measured = {(t.name, t.database): t.measured for t in found}
    assert "0.26" in measured[("unary Verify vs the gRPC floor", "postgresql")]
    assert "1,389 dropped" in measured[("open loop at 2,000 req/s", "postgresql")]
    assert "batch µs/item (1/rate) 2.05x" in measured[("growth to 10M factors", "postgresql")]
    # The largest peak anywhere in the run: the growth run's high-water mark here.
    assert "170 MB" in measured[("memory per server process", "all")]


def test_a_batch_ratio_just_under_its_goal_never_prints_as_the_goal() -> None:
    results = {"databases": {"postgresql": _database(0.26, 0.69953, [])}}
    found = targets.evaluate(results)
    (batch,) = [t for t in found if t.name.startswith("BatchVerify") and t.database == "postgresql"]
    assert batch.met is False
    assert batch.measured.startswith("69.9% ")


def test_the_half_full_tables_ratio_is_context_beside_the_target() -> None:
    postgres = {**_database(0.26, 0.72, []), "batch_half_full": _batch(10_000, 0.29)}
    found = targets.evaluate({"databases": {"postgresql": postgres}})
    batch = [t for t in found if t.name.startswith("BatchVerify") and t.database == "postgresql"]
    assert [t.met for t in batch] == [True, None]  # the target's verdict, then no verdict
    assert batch[1].measured.startswith("29.0% at x10,000")
    assert "half full" in batch[1].name


def test_a_quick_run_claims_no_verdict() -> None:
    results = {
        "meta": {"quick": True},
        "databases": {"postgresql": _database(0.26, 0.38, [_open(2000.0, 777.0, 1593.0, 9)])},
    }
    found = targets.evaluate(results)
    assert all(t.met is None and t.measured.startswith("--quick: ") for t in found)
    assert all(t.needs == "" for t in found)  # no budget for a goal it does not judge
    memory = next(t for t in found if t.name.startswith("memory"))
    assert memory.measured == "--quick: peak RSS 160 MB (postgresql, batches up to x10,000)"


@pytest.mark.parametrize(
    ("level", "met"),
    [
        (_open(2000.0, 1999.0, 12.0, 0), True),
        (_open(2000.0, 1999.0, 25.0, 0), False),  # p99 over 20 ms
        (_open(2000.0, 1999.0, 12.0, 1), False),  # one dropped
        (_open(2000.0, 1900.0, 12.0, 0), False),  # the rate not kept
    ],
)
def test_the_open_loop_is_met_only_at_its_rate_without_drops(
    level: dict[str, Any], met: bool
) -> None:
    results = {"databases": {"postgresql": _database(0.5, 0.5, [level])}}
    (target,) = [t for t in targets.evaluate(results) if t.name.startswith("open loop")]
    assert target.met is met


def _turn(p99_ms: float, dropped: int) -> dict[str, Any]:
    return {**_open(2000.0, 1999.0, p99_ms, dropped), "p50_ms": 7.0, "cpu": p99_ms}


def test_the_open_loop_reports_its_median_turn_whole_and_shows_every_turn() -> None:
    turns = [_turn(16.8, 0), _turn(56.3, 12), _turn(18.6, 0)]
    level = unary.median_turn(turns)
    assert (level["p99_ms"], level["cpu"]) == (18.6, 18.6)  # one turn's figures, not a mix
    assert [t["p99_ms"] for t in level["turns"]] == [16.8, 56.3, 18.6]  # in the order run
    results = {"databases": {"postgresql": _database(0.5, 0.5, [level])}}
    (target,) = [t for t in targets.evaluate(results) if t.name.startswith("open loop")]
    assert target.met is True
    assert "the median of 3 turns: p99 16.8 ms 0 dropped, p99 56.3 ms 12 dropped" in target.measured


def test_of_an_even_number_of_open_loop_turns_the_worse_middle_one_counts() -> None:
    level = unary.median_turn([_turn(21.0, 0), _turn(12.0, 0)])
    assert level["p99_ms"] == 21.0


def test_a_smoke_run_reads_as_not_measured_never_as_met() -> None:
    """--quick sizes (no 10k batch), one database, no open loop, no core: no verdicts
    but the floor's, and every figure still shown."""
    quick = {"floor": None, "batch": [_batch(1_000, 0.9)], "unary_open": []}
    found = targets.evaluate({"databases": {"sqlite": quick}})
    assert all(target.met is None for target in found)
    (batch,) = [t for t in found if t.name.startswith("BatchVerify") and t.database == "sqlite"]
    assert batch.measured.startswith("x1,000 only: 90.0%")
    printed = "\n".join(targets.table(found))
    assert "MISSED" not in printed and "[   met]" not in printed
    assert printed.count("not measured") >= 5


def test_a_core_target_missed_misses_the_core() -> None:
    core = {
        "targets": [
            {"alg": "SHA1", "rate_valid": 12e6, "rate_target": 5e6, "met": True},
            {"alg": "SHA512", "rate_valid": 0.4e6, "rate_target": 0.6e6, "met": False},
        ]
    }
    (target,) = [t for t in targets.evaluate({}, core) if t.database == "core"]
    assert target.met is False
    assert "SHA512 0.40M/s (target 0.6M)" in target.measured
    assert target.measured.endswith(" on an unnamed CPU")


def _regression(sha256_ratio: float) -> dict[str, object]:
    ratios = {"SHA1": 1.01, "SHA256": sha256_ratio, "SHA512": 0.99}
    return {
        "algorithms": {name: {"ratio": ratio} for name, ratio in ratios.items()},
        "tolerance": 0.05,
        "met": all(ratio >= 0.95 for ratio in ratios.values()),
        "baseline": {"commit": "9af974fe59dd71e47b8fdcf8b73b5e487e5f2c7b"},
    }


def test_the_core_comparison_decides_the_core_over_targets_set_on_another_cpu() -> None:
    """A slower CPU misses the suite's own rates; the same-run comparison with the
    baseline commit's core is what says whether the core regressed."""
    core = {
        "targets": [{"alg": "SHA256", "rate_valid": 1.5e6, "rate_target": 2e6, "met": False}],
        "meta": {"cpu": {"model": "Intel(R) Xeon(R) Processor"}},
    }
    (kept,) = [t for t in targets.evaluate({}, core, _regression(0.99)) if t.database == "core"]
    assert kept.met is True
    assert kept.measured.startswith("SHA1 1.01x, SHA256 0.99x, SHA512 0.99x of 9af974fe59's core")
    assert "SHA256 1.50M/s (target 2M) on Intel(R) Xeon(R) Processor" in kept.measured
    assert "within 5%" in kept.goal
    (slower,) = [t for t in targets.evaluate({}, None, _regression(0.90)) if t.database == "core"]
    assert slower.met is False
    assert slower.measured == "SHA1 1.01x, SHA256 0.90x, SHA512 0.99x of 9af974fe59's core"


def test_the_table_is_printed_again_from_saved_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = {"databases": {"postgresql": _database(0.26, 0.38, [])}}
    service, core = tmp_path / "service.json", tmp_path / "core.json"
    service.write_text(json.dumps(results))
    core.write_text(json.dumps({"targets": []}))
    assert targets.main([str(service), "--core", str(core)]) == 0
    printed = capsys.readouterr().out
    assert "[MISSED] postgresql unary Verify vs the gRPC floor: 0.26" in printed
    assert "[     -] core       C core: no targets" in printed
    regression = tmp_path / "core_regression.json"
    regression.write_text(json.dumps(_regression(1.0)))
    assert targets.main([str(service), "--core-regression", str(regression)]) == 0
    assert "[   met] core       C core: SHA1 1.01x" in capsys.readouterr().out


def _threads(loop_s: float, round_s: float) -> dict[str, float]:
    return {"totpd-loop": loop_s, "totpd-round": round_s, "event_engine": 0.5}


def _busy_open_level(**extra: Any) -> dict[str, Any]:
    """A missed open-loop level whose loop and round threads spent 300 + 100 µs a call."""
    return {
        **_open(2000.0, 2000.0, 31.0, 0),
        "requests": 16_000,
        "server_threads_cpu_s": _threads(4.8, 1.6),
        **extra,
    }


def test_a_missed_target_says_what_meeting_it_needs_and_a_met_one_does_not() -> None:
    floor = _floor(0.25)
    servers = floor["servers"]
    servers["noop"].update(requests=4_000, server_threads_cpu_s=_threads(0.5, 0.0))
    servers["totpd"].update(requests=1_000, server_threads_cpu_s=_threads(0.3, 0.2))
    batch = {**_batch(10_000, 0.25), "db_service_sql": {"rate": 5_000.0}}
    level = _busy_open_level()
    postgres = {**_database(0.9, 0.9, [level]), "floor": floor, "batch": [batch]}
    evaluated = targets.evaluate({"databases": {"postgresql": postgres}})
    found = {t.name: t for t in evaluated if t.database == "postgresql"}
    # 60% of 1,000 req/s leaves 1,667 µs a call; totpd's loop and round spent 500.
    assert found["unary Verify vs the gRPC floor"].needs == (
        "600 req/s: at most 1,667 µs a call on the CPU the loop and round threads share;"
        " totpd spent 500 (loop 300, round 200), the no-op's loop alone 125"
    )
    # 70% of the bulk UPDATE's 10,000 rows/s: 1,428.6 ms; the SQL alone took 2,000.
    assert found["BatchVerify x10,000 vs the bulk UPDATE"].needs == (
        "7,000 items/s: a x10,000 call in 1,428.6 ms; it took 4,000.0, the service's own"
        " statements alone (no Python) 2,000.0 (50.0% of the bulk UPDATE)"
    )
    assert found["open loop at 2,000 req/s"].needs.endswith(
        "they spent 400 µs a call (loop 300, round 100), that CPU 80% busy at 2,000 req/s"
    )
    printed = "\n".join(targets.table(list(found.values())))
    assert printed.count("needs: ") == 3
    met = targets.evaluate({"databases": {"postgresql": _database(0.9, 0.9, [])}})
    assert all(t.needs == "" for t in met)


def test_a_missed_open_loop_names_the_no_ops_tail_at_the_same_rate() -> None:
    level = _busy_open_level(noop_turns=[_turn(3.4, 0), _turn(9.0, 0), _turn(2.8, 0)])
    evaluated = targets.evaluate({"databases": {"postgresql": _database(0.9, 0.9, [level])}})
    (target,) = [t for t in evaluated if t.name.startswith("open loop")]
    assert target.met is False
    assert target.needs.endswith(
        "that CPU 80% busy at 2,000 req/s; the no-op behind the interceptors at the same"
        " rate, in the same minutes: p99 3.4 ms (the median of 3 turns)"
    )


def test_a_missed_target_without_per_thread_figures_states_no_budget() -> None:
    found = targets.evaluate({"databases": {"sqlite": _database(0.3, 0.9, [])}})
    (floor,) = [t for t in found if t.name.startswith("unary") and t.database == "sqlite"]
    assert floor.met is False and floor.needs == ""
