"""Issue 16's targets, each met or missed, from one run's figures.

`python -m benchmarks.service` ends its report with this table (and keeps it in
service.json as "targets"); `benchmarks/run.sh` hands it the core suite's core.json
and the core's comparison with an earlier commit (benchmarks/core/regression.py) of the
same run, so the core sits in the same report. From saved files:

``python -m benchmarks.service.targets results/service.json [--core results/core.json]
[--core-regression results/core_regression.json]``

A target that this run did not measure (a database left out, `--quick` sizes, no
`--growth`) says so instead of a verdict: a smoke run never reads as "met".
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.service import floor, growth_report, report

BATCH_ITEMS = 10_000  # the size the BatchVerify target names
OPEN_LOOP_RATE = 2000.0  # durable PostgreSQL, open loop


class Target(NamedTuple):
    """One target of one database ("core": the C core suite)."""

    name: str
    database: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run
    # A missed target's budget from the same run's figures, against what went where:
    # the "show where the time goes and what would be needed".
    needs: str = ""


def evaluate(
    results: dict[str, Any],
    core: dict[str, Any] | None = None,
    core_regression: dict[str, Any] | None = None,
) -> list[Target]:
    """Every target of the issue from a run's results (service.json's shape) and,
    if given, the same run's core.json and core_regression.json."""
    targets: list[Target] = []
    databases: dict[str, Any] = results.get("databases", {})
    for name in ("sqlite", "postgresql"):
        figures = databases.get(name)
        targets.append(_floor_target(name, None if figures is None else figures.get("floor")))
        targets.append(_batch_target(name, None if figures is None else figures["batch"]))
        half_full = None if figures is None else figures.get("batch_half_full")
        if half_full is not None:
            targets.append(_half_full_context(name, half_full))
    postgres = databases.get("postgresql")
    targets.append(_open_loop_target(None if postgres is None else postgres["unary_open"]))
    growth: dict[str, Any] = results.get("growth", {})
    for name in ("sqlite", "postgresql"):
        targets.append(_growth_target(name, growth.get(name)))
    targets.append(_memory_target(databases, growth))
    targets.append(_core_target(core, core_regression))
    if results.get("meta", {}).get("quick"):  # smoke sizes: figures, no verdicts
        targets = [
            t._replace(measured=f"--quick: {t.measured}", met=None, needs="") for t in targets
        ]
    return targets


def _floor_target(database: str, figures: dict[str, Any] | None) -> Target:
    goal = f"totpd >= {floor.GOAL:.0%} of the no-op Verify's rate, 8 in flight, one process"
    if figures is None:
        return Target("unary Verify vs the gRPC floor", database, goal, "not measured", None)
    servers = figures["servers"]
    measured = (
        f"{figures['ratio']:.2f} (totpd {servers['totpd']['rps']:,.0f} req/s,"
        f" no-op {servers['noop']['rps']:,.0f}; CPU µs/call"
        f" {_number(servers['totpd']['server_cpu_us_per_call'])}"
        f" vs {_number(servers['noop']['server_cpu_us_per_call'])})"
    )
    met = figures["ratio"] >= floor.GOAL
    needs = "" if met else _floor_needs(servers)
    return Target("unary Verify vs the gRPC floor", database, goal, measured, met, needs)


def _floor_needs(servers: dict[str, Any]) -> str:
    """The goal's rate as CPU a call of the interpreter's threads. With the loop and
    the round threads on one CPU (`pin_interpreter`, the default), their CPU a call
    bounds the rate whatever the database; empty if the run has no per-thread CPU."""
    totpd, noop = servers["totpd"], servers["noop"]
    spent = _interpreter_us(totpd)
    noop_loop = _thread_us(noop, "totpd-loop")
    chain_loop = _thread_us(servers.get("noop+interceptors", {}), "totpd-loop")
    if spent is None or noop_loop is None:
        return ""
    loop, rounds = spent
    rate = floor.GOAL * noop["rps"]
    chain = "" if chain_loop is None else f", with the interceptors {chain_loop:,.0f}"
    return (
        f"{rate:,.0f} req/s: at most {1e6 / rate:,.0f} µs a call on the CPU the loop and"
        f" round threads share; totpd spent {loop + rounds:,.0f} (loop {loop:,.0f},"
        f" round {rounds:,.0f}), the no-op's loop alone {noop_loop:,.0f}{chain}"
    )


def _interpreter_us(figure: dict[str, Any]) -> tuple[float, float] | None:
    """CPU µs a call of the event loop and of the round threads (None: not measured)."""
    loop, rounds = _thread_us(figure, "totpd-loop"), _thread_us(figure, "totpd-round")
    return None if loop is None or rounds is None else (loop, rounds)


def _thread_us(figure: dict[str, Any], prefix: str) -> float | None:
    """CPU µs a call of the threads whose names start with `prefix` (None: not measured)."""
    threads = figure.get("server_threads_cpu_s")
    if not threads or not figure.get("requests"):
        return None
    spent: float = sum(seconds for name, seconds in threads.items() if name.startswith(prefix))
    calls: int = figure["requests"]
    return 1e6 * spent / calls


def _batch_target(database: str, rows: list[dict[str, Any]] | None) -> Target:
    name = f"BatchVerify x{BATCH_ITEMS:,} vs the bulk UPDATE"
    goal = f">= {report.BATCH_TARGET:.0%} of the database's own bulk UPDATE of the rows"
    if not rows:
        return Target(name, database, goal, "not measured", None)
    row = max(rows, key=lambda r: r["batch"])
    measured = _batch_ratio(row)
    if row["batch"] < BATCH_ITEMS:  # a --quick run: the figure, no verdict
        return Target(name, database, goal, f"x{row['batch']:,} only: {measured}", None)
    met = row["ratio_vs_consume"] >= report.BATCH_TARGET
    return Target(name, database, goal, measured, met, "" if met else _batch_needs(row))


def _batch_needs(row: dict[str, Any]) -> str:
    """The goal's rate as one call's time, beside the call's and its own SQL's: SQL
    that alone takes longer than the goal allows cannot meet it with any Python."""
    items, bulk = row["batch"], row["db_consume"]["rate"]
    rate = report.BATCH_TARGET * bulk
    needs = (
        f"{rate:,.0f} items/s: a x{items:,} call in {1e3 * items / rate:,.1f} ms;"
        f" it took {1e3 * items / row['service']['rate']:,.1f}"
    )
    sql = row.get("db_service_sql")
    if sql is not None:
        needs += (
            f", the service's own statements alone (no Python) {1e3 * items / sql['rate']:,.1f}"
            f" ({_percent_down(sql['rate'] / bulk)} of the bulk UPDATE)"
        )
    return needs


def _half_full_context(database: str, row: dict[str, Any]) -> Target:
    """The batch target's ratio on the table rewritten half full (HOT updates for the
    bulk UPDATE): a figure beside the target, not a second goal."""
    return Target(
        "BatchVerify vs the bulk UPDATE, the table's pages half full",
        database,
        "none, context for the target above: a served, vacuumed table has room on its pages",
        _batch_ratio(row, size=True),
        None,
    )


def _batch_ratio(row: dict[str, Any], size: bool = False) -> str:
    """A batch row's ratio to the bulk UPDATE, with both rates (and its size)."""
    at = f" at x{row['batch']:,}" if size else ""
    return (
        f"{_percent_down(row['ratio_vs_consume'])}{at} ({row['service']['rate']:,.0f} items/s"
        f" vs {row['db_consume']['rate']:,.0f} rows/s)"
    )


def _percent_down(ratio: float) -> str:
    """One decimal, rounded down: a ratio just under its goal never prints as the goal."""
    return f"{math.floor(ratio * 1000) / 10:.1f}%"


def _open_loop_target(levels: list[dict[str, Any]] | None) -> Target:
    name = f"open loop at {OPEN_LOOP_RATE:,.0f} req/s"
    goal = f"p99 < {report.UNARY_P99_TARGET_MS:g} ms, nothing dropped"
    level = next((lv for lv in levels or [] if lv["rate"] == OPEN_LOOP_RATE), None)
    if level is None:
        return Target(name, "postgresql", goal, "not measured", None)
    measured = (
        f"{level['rps']:,.0f} req/s reached, p99 {level['p99_ms']:,.1f} ms,"
        f" {level['dropped']:,} dropped"
    )
    turns = level.get("turns") or []
    if len(turns) > 1:
        measured += f" (the median of {len(turns)} turns: {report.turns_line(turns)})"
    met = report.open_level_meets(level)
    return Target(name, "postgresql", goal, measured, met, "" if met else _open_loop_needs(level))


def _open_loop_needs(level: dict[str, Any]) -> str:
    """How busy the CPU the loop and round threads share was at the offered rate: a
    queue's tail grows steeply as that CPU fills (empty if not measured)."""
    spent = _interpreter_us(level)
    if spent is None:
        return ""
    loop, rounds = spent
    busy = (loop + rounds) * level["rps"] / 1e6
    needs = (
        f"a shorter queue on the CPU the loop and round threads share: they spent"
        f" {loop + rounds:,.0f} µs a call (loop {loop:,.0f}, round {rounds:,.0f}),"
        f" that CPU {busy:.0%} busy at {level['rps']:,.0f} req/s"
    )
    noop_turns = level.get("noop_turns")
    if noop_turns:  # the tail the host, gRPC and the chain make without totpd's work
        p99 = statistics.median(turn["p99_ms"] for turn in noop_turns)
        needs += (
            f"; the no-op behind the interceptors at the same rate, in the same minutes:"
            f" p99 {p99:,.1f} ms (the median of {len(noop_turns)} turns)"
        )
    return needs


def _growth_target(database: str, figures: dict[str, Any] | None) -> Target:
    goal = (
        f"every cost per verification <= {growth_report.GOAL}x from the smallest size"
        " to the largest (beside the reference in the same turns)"
    )
    largest = {"sqlite": "1M", "postgresql": "10M"}[database]
    name = f"growth to {largest} factors"
    ratios = None if figures is None else figures.get("growth_vs_reference")
    if not ratios:
        return Target(name, database, goal, "not measured (--growth)", None)
    known = {cost: ratio for cost, ratio in ratios.items() if ratio is not None}
    worst = max(known, key=lambda cost: known[cost])
    sizes = figures["sizes"] if figures else []
    measured = (
        f"{sizes[0]['factors']:,} -> {sizes[-1]['factors']:,}: worst {worst} {known[worst]:.2f}x"
    )
    return Target(name, database, goal, measured, known[worst] <= growth_report.GOAL)


def _memory_target(databases: dict[str, Any], growth: dict[str, Any]) -> Target:
    """The largest peak RSS of one server process while 10k-item batches ran: a
    figure to state (admission bounds it), not a goal to meet."""
    peaks: list[tuple[int, str]] = []
    for name, figures in databases.items():
        if figures.get("peak_process_kb"):
            largest = max(row["batch"] for row in figures["batch"])
            peaks.append((figures["peak_process_kb"], f"{name}, batches up to x{largest:,}"))
    for name, figures in growth.items():
        for row in figures["sizes"]:
            peaks.append((growth_report.peak_process_kb(row), f"{name} growth"))
    goal = "bounded per process while 10k-item batches run (the figure stated)"
    if not peaks:
        return Target("memory per server process", "all", goal, "not measured", None)
    peak_kb, where = max(peaks)
    measured = f"peak RSS {peak_kb / 1024:,.0f} MB ({where})"
    return Target("memory per server process", "all", goal, measured, None)


def _core_target(core: dict[str, Any] | None, regression: dict[str, Any] | None) -> Target:
    """No regression: the core against an earlier commit's on this machine in the same
    run, when measured; otherwise the core suite's own targets (rates set on the
    reference machine, so a slower CPU misses them without any regression)."""
    own = _core_rates(core)
    if regression is not None:
        goal = (
            f"no regression: each algorithm's 10k rate within {regression['tolerance']:.0%}"
            " of the baseline commit's core, same run"
        )
        ratios = ", ".join(
            f"{name} {row['ratio']:.2f}x" for name, row in regression["algorithms"].items()
        )
        measured = f"{ratios} of {regression['baseline']['commit'][:10]}'s core"
        if own:
            measured += f"; the suite's own targets: {own}"
        return Target("C core", "core", goal, measured, bool(regression["met"]))
    goal = "the C core's own targets met in the same run (no regression)"
    if core is None:
        return Target("C core", "core", goal, "not in this run (benchmarks/run.sh)", None)
    rows = core.get("targets", [])
    if not rows:
        return Target("C core", "core", goal, "no targets", None)
    return Target("C core", "core", goal, own, all(row["met"] for row in rows))


def _core_rates(core: dict[str, Any] | None) -> str:
    """The core suite's 10k rates against its targets, and the CPU they ran on."""
    if core is None or not core.get("targets"):
        return ""
    rows = core["targets"]
    rates = ", ".join(
        f"{row['alg']} {row['rate_valid'] / 1e6:.2f}M/s (target {row['rate_target'] / 1e6:g}M)"
        for row in rows
    )
    # The targets' rates depend on the CPU (SHA-NI differs between vendors): name it.
    cpu = core.get("meta", {}).get("cpu", {}).get("model", "an unnamed CPU")
    return f"{rates} on {cpu}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(targets: list[Target]) -> list[str]:
    """The targets as the report's closing table."""
    lines = ["\nissue 16's targets (medians within this run):"]
    for target in targets:
        verdict = {True: "met", False: "MISSED", None: "-"}[target.met]
        lines.append(f"  [{verdict:>6}] {target.database:<10} {target.name}: {target.measured}")
        lines.append(f"  {'':>8} {'':<10} goal: {target.goal}")
        if target.needs:
            lines.append(f"  {'':>8} {'':<10} needs: {target.needs}")
    return lines


def read_json(path: Path | None) -> dict[str, Any] | None:
    """A saved core.json or core_regression.json, if named."""
    return None if path is None else dict(json.loads(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service.targets")
    parser.add_argument("service_json", type=Path, help="a run's service.json")
    parser.add_argument("--core", type=Path, help="the same run's core.json")
    parser.add_argument("--core-regression", type=Path, help="the same run's core_regression.json")
    args = parser.parse_args(argv)
    results = json.loads(args.service_json.read_text())
    core, regression = read_json(args.core), read_json(args.core_regression)
    print("\n".join(table(evaluate(results, core, regression))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
