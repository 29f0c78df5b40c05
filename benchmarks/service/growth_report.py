"""The growth benchmark's costs, their ratios and its table (benchmarks/service/growth.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.service import report

GOAL = 1.5  # largest size's cost / smallest size's, per verification


COSTS: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "unary ms/call (1/req/s)": lambda row: 1000 / row["unary"]["rps"],
    "unary server CPU µs/call": lambda row: row["unary"]["server_cpu_us"],
    "unary server+db CPU µs/call": lambda row: _plus(row["unary"]),
    "batch µs/item (1/rate)": lambda row: 1e6 / row["batch"]["rate"],
    "batch server CPU µs/item": lambda row: row["batch"]["server_cpu_us"],
    "batch server+db CPU µs/item": lambda row: _plus(row["batch"]),
}

# The database's own bulk UPDATE of as many rows as a batch, at each size: how
# its per-row cost grows, beside the batch's. Context, not a goal.
BASELINES: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "bulk UPDATE µs/row (1/rate)": lambda row: 1e6 / row["bulk"]["rate"],
    "bulk UPDATE db CPU µs/row": lambda row: row["bulk"]["database_cpu_us"],
}


def _plus(figures: dict[str, Any]) -> float | None:
    database = figures["database_cpu_us"]
    return None if database is None else figures["server_cpu_us"] + database


def ratios(
    small: dict[str, Any],
    large: dict[str, Any],
    costs: dict[str, Callable[[dict[str, Any]], float | None]] = COSTS,
) -> dict[str, float | None]:
    """Each cost of `large` over that of `small` (the goal: at most 1.5)."""
    out: dict[str, float | None] = {}
    for name, cost in costs.items():
        low, high = cost(small), cost(large)
        out[name] = None if low is None or high is None or low == 0 else high / low
    return out


def peak_process_kb(row: dict[str, Any]) -> int:
    memory = row["memory"]
    return int(max([*memory["peak_rss_kb"].values(), *memory["hwm_kb"].values()]))


def table(figures: dict[str, Any]) -> list[str]:
    rows, config = figures["sizes"], figures["config"]
    lines = [
        f"\n{figures['database']}: growth, a fresh server per size"
        f" ({report.processes(config['processes'])}), unary Verify {config['concurrency']}"
        " in flight, BatchVerify"
        f" x{config['batch']}; medians of {config['turns']} turns; CPU per verification",
        f"{'factors':>11} {'seed s':>7} {'Verify/s':>9} {'p99 ms':>7} {'srv µs':>7}"
        f" {'db µs':>6} {'batch/s':>9} {'call ms':>8} {'srv µs':>7} {'db µs':>6}"
        f" {'valid':>6} {'bulk ms':>8} {'db µs':>6} {'peak RSS MB':>11}",
    ]
    for row in rows:
        lines.append(_size_line(f"{row['factors']:>11,} {row['seed']['seconds']:>7.0f}", row))
        if row["reference"] is not None:
            label = f"ref {figures['reference_factors']:,}"
            lines.append(_size_line(f"{label:>19}", row["reference"]))
    smallest, largest = f"{rows[0]['factors']:,}", f"{rows[-1]['factors']:,}"
    lines.append(
        f"   {'cost (goal: <= ' + str(GOAL) + 'x)':<30} {largest + ' / ' + smallest:>22}"
        f" {'side by side with ref':>22} {'ref vs ref (~1)':>16}"
    )
    reference = figures["growth_vs_reference"] or {}
    calibration = figures["calibration"] or {}
    for name, ratio in figures["growth"].items():
        lines.append(
            f"   {name:<30} {_ratio(ratio):>22} {_ratio(reference.get(name)):>22}"
            f" {_ratio(calibration.get(name), verdict=False):>16}"
        )
    bulk_reference = figures.get("bulk_growth_vs_reference") or {}
    for name, ratio in (figures.get("bulk_growth") or {}).items():
        lines.append(
            f"   {name:<30} {_ratio(ratio, verdict=False):>22}"
            f" {_ratio(bulk_reference.get(name), verdict=False):>22}   (the database alone)"
        )
    lines.extend(_database_lines(figures))
    for row in rows:
        if row["unary_open"]:
            lines.append(f"\n   open loop at {row['factors']:,} factors:")
            lines.extend(report.open_loop_lines(row["unary_open"]))
    return lines


def _database_lines(figures: dict[str, Any]) -> list[str]:
    """PostgreSQL's side per size: WAL per verification, HOT updates, pages read."""
    rows = figures["sizes"]
    if not rows[0]["table"]:
        return []
    lines = [
        "   PostgreSQL per size (unary and batch turns together for HOT and reads):",
        f"   {'':>19} {'WAL B/call':>10} {'WAL B/item':>10} {'HOT upd':>8}"
        f" {'reads/upd':>9} {'read share':>10} {'table+idx GB':>12}",
    ]
    for row in rows:
        for label, figures_of in ((f"{row['factors']:,}", row), ("ref", row["reference"])):
            if figures_of is None:
                continue
            table_stats = figures_of["table"]
            lines.append(
                f"   {label:>19} {_us(figures_of['unary']['wal_bytes_per_call']):>10}"
                f" {_us(figures_of['batch']['wal_bytes_per_item']):>10}"
                f" {_percent(table_stats.get('hot_fraction')):>8}"
                f" {_us(table_stats.get('reads_per_update'), 2):>9}"
                f" {_percent(table_stats.get('read_fraction')):>10}"
                + (f" {row['table_bytes'] / 1e9:>12.2f}" if figures_of is row else "")
            )
    return lines


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _size_line(start: str, row: dict[str, Any]) -> str:
    u, b, bulk = row["unary"], row["batch"], row["bulk"]
    return (
        f"{start} {u['rps']:>9,.0f} {u['p99_ms']:>7.1f} {u['server_cpu_us']:>7,.0f}"
        f" {_us(u['database_cpu_us']):>6} {b['rate']:>9,.0f} {b['call_ms']:>8.0f}"
        f" {b['server_cpu_us']:>7,.1f} {_us(b['database_cpu_us'], 1):>6}"
        f" {b['valid_fraction']:>6.0%} {bulk['call_ms']:>8.0f} {_us(bulk['database_cpu_us'], 1):>6}"
        f" {peak_process_kb(row) / 1024:>11,.0f}"
    )


def _ratio(value: float | None, verdict: bool = True) -> str:
    if value is None:
        return "-"
    if not verdict:
        return f"{value:.2f}x"
    return f"{value:.2f}x ({'met' if value <= GOAL else 'MISSED'})"


def _us(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"
