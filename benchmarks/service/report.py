"""Terminal table, JSON file and PNG plot for the service benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BATCH_TARGET = 0.70  # BatchVerify >= 70% of the database's own bulk-update throughput
UNARY_RPS_TARGET = 2000.0
UNARY_P99_TARGET_MS = 20.0


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:,.1f}"


def _forms(row: dict[str, Any]) -> str:
    """Which form of the bulk UPDATE was the database's figure, and the other's rate."""
    by_form = row.get("db_consume_by_form", {})
    best = row["db_consume"].get("form", "values")
    others = ", ".join(
        f"{form} {_rate(figure['rate'])}/s" for form, figure in by_form.items() if form != best
    )
    return f"{best} (vs {others})" if others else best


def _settings_header(meta: dict[str, Any]) -> list[str]:
    """What each database ran with: PostgreSQL's durability settings, SQLite's pragmas."""
    lines: list[str] = []
    pg = meta.get("postgresql")
    if pg:
        source = {
            "throwaway": "throwaway server (tests/pg_server.py, durable=True)",
            "external": f"external database {pg.get('url', '')}",
        }.get(pg.get("source", ""), pg.get("source", ""))
        settings = " ".join(f"{k}={v}" for k, v in pg.get("settings", {}).items())
        where = pg.get("data_dir_filesystem")
        lines.append(
            f"postgresql: {source}, PostgreSQL {pg.get('server_version', '?')},"
            f" {'durable' if pg.get('durable') else 'NOT DURABLE'}: {settings}"
            + (f", data dir on {where}" if where else "")
        )
    lite = meta.get("sqlite")
    if lite:
        where = lite.get("file_filesystem")
        lines.append(
            f"sqlite: journal_mode={lite.get('journal_mode')} synchronous={lite.get('synchronous')}"
            " (the server's own pragmas)" + (f", file on {where}" if where else "")
        )
    return lines


def open_level_meets(level: dict[str, Any]) -> bool:
    """An open-loop level kept its rate: nothing dropped, p99 under the target."""
    return bool(
        level["dropped"] == 0
        and level["rps"] >= 0.99 * level["rate"]
        and level["p99_ms"] < UNARY_P99_TARGET_MS
    )


def processes(count: int | str) -> str:
    """`count` server processes, in words."""
    return "1 server process" if str(count) == "1" else f"{count} server processes"


def open_loop_lines(levels: list[dict[str, Any]]) -> list[str]:
    """The open-loop (fixed-rate) levels of one database."""
    first = levels[0]
    lines = [
        "\n   unary Verify, open loop: requests due at a fixed rate,"
        f" {processes(first['servers'])}, at most {first['max_outstanding']:,} in flight",
        "   (p50/p99/max from each request's due time, `p99 sent` from its actual send;"
        f" late = sent > {first['late_after_ms']:g} ms after its due time;"
        " dropped = due while the in-flight bound was full: never sent; peak = most in flight)",
        f"   {'rate/s':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        f" {'sent':>9} {'late':>7} {'dropped':>7} {'peak':>5} {'p99 sent':>8} {'srv cpu':>8}"
        f" {'db cpu':>7} {'cli cpu':>8}  verdicts",
    ]
    for level in levels:
        cpu = "+".join(f"{c:.1f}" for c in level["server_cpu_s"])
        database = level.get("database_cpu_s")
        meets = open_level_meets(level)
        lines.append(
            f"   {level['rate']:>9,.0f} {level['rps']:>8,.0f} {level['p50_ms']:>8.1f}"
            f" {level['p99_ms']:>8.1f} {level['max_ms']:>8.1f} {level['sent']:>9,}"
            f" {level['late']:>7,} {level['dropped']:>7,} {level['peak_outstanding']:>5,}"
            f" {level['from_send_p99_ms']:>8.1f} {cpu:>8}"
            f" {'-' if database is None else f'{database:.1f}':>7}"
            f" {level['client_cpu_s']:>8.1f}  {level['verdicts']}"
        )
        if level["rate"] >= UNARY_RPS_TARGET:
            lines[-1] += "  target met" if meets else "  target MISSED"
        turns = level.get("turns") or []
        if len(turns) > 1:
            lines.append(f"   {'':>9} the median of {len(turns)} turns by p99: {turns_line(turns)}")
        noop_turns = level.get("noop_turns")
        if noop_turns:
            lines.append(
                f"   {'':>9} the no-op behind the interceptors, the same rate, a turn after each:"
                f" {turns_line(noop_turns)}"
            )
        shares = by_thread(level)
        if shares:
            lines.append(f"   {'':>9} server CPU µs/call by thread: {shares}")
    return lines


def turns_line(turns: list[dict[str, Any]]) -> str:
    """Every open-loop turn's p99 and drops, in the order they ran."""
    return ", ".join(f"p99 {t['p99_ms']:,.1f} ms {t['dropped']:,} dropped" for t in turns)


def by_thread(figure: dict[str, Any]) -> str:
    """A level's server CPU a call by kind of thread, the largest first (the warm-up's
    CPU in it); empty if not measured (`server_threads_cpu_s`, the Go client's)."""
    threads = figure.get("server_threads_cpu_s")
    if not threads or not figure["requests"]:
        return ""
    per_call = {name: 1e6 * seconds / figure["requests"] for name, seconds in threads.items()}
    shares = sorted(per_call.items(), key=lambda share: -share[1])
    return ", ".join(f"{name} {us:,.0f}" for name, us in shares if us >= 0.5)


def table(results: dict[str, Any]) -> str:
    lines: list[str] = _settings_header(results.get("meta", {}))
    for name, db in results["databases"].items():
        lines.extend(_batch_rows(name, db))
        breakdown = db.get("breakdown")
        if breakdown:
            lines.extend(_breakdown(breakdown))
        if db.get("unary"):
            lines.extend(_closed_loop(db["unary"]))
        if db.get("unary_open"):
            lines.extend(open_loop_lines(db["unary_open"]))
    wire = results.get("wire")
    if wire:
        lines.extend(_wire(wire, results["databases"]))
    return "\n".join(lines)


def _batch_rows(name: str, db: dict[str, Any]) -> list[str]:
    """BatchVerify against the database's own bulk UPDATE, per batch size."""
    lines = [
        f"\n== {name}: {db['factors']:,} active factors (seeded in {db['seed_s']:.1f} s) ==",
        f"{'batch':>7} {'service/s':>11} {'call ms':>8} {'db 1-UPDATE/s':>14}"
        f" {'svc SQL/s':>10} {'svc/db1':>8} {'SQL/db1':>8} {'svc/SQL':>8} {'valid':>6}  db form",
    ]
    for row in db["batch"]:
        service, one, own = row["service"], row["db_consume"], row["db_service_sql"]
        lines.append(
            f"{row['batch']:>7,} {_rate(service['rate']):>11} {_ms(service['median_s']):>8}"
            f" {_rate(one['rate']):>14} {_rate(own['rate']):>10}"
            f" {row['ratio_vs_consume']:>7.0%} {row['ratio_service_sql_vs_consume']:>7.0%}"
            f" {row['ratio_vs_service_sql']:>7.0%}"
            f" {service['valid_fraction']:>6.0%}  {_forms(row)}"
        )
    lines.append(
        f"   target: service >= {BATCH_TARGET:.0%} of db 1-UPDATE (svc/db1); SQL/db1 is the"
        " most the service's own SQL reaches with no Python around it"
    )
    return lines


def _breakdown(breakdown: dict[str, Any]) -> list[str]:
    """One in-process call's stages, each with its share of the call."""
    stages = breakdown["stages_median_s"]
    total = stages["total"]
    lines = [
        f"\n   one {breakdown['batch']:,}-item call, in-process, median of"
        f" {breakdown['calls']}: {_ms(total)} ms"
        f" (uninstrumented {_ms(breakdown['uninstrumented_median_s'])} ms)"
    ]
    for stage, seconds in stages.items():
        if stage == "locked_retries":
            lines.append(f"   {stage:<24} {seconds:>8.0f}    (rounds re-decided under locks)")
            continue
        if stage == "total":
            continue
        note = ""
        if stage.endswith("_sql_exec"):
            note = f"  (inside {stage[: -len('_sql_exec')]}: DB-API execute+fetch)"
        elif stage == "gc_pauses":
            note = "  (inside the stages above)"
        lines.append(f"   {stage:<24} {_ms(seconds):>8} ms {seconds / total:>5.0%}{note}")
    return lines


def _closed_loop(levels: list[dict[str, Any]]) -> list[str]:
    """The closed-loop (fixed calls in flight) levels of one database."""
    lines = [
        f"\n   unary Verify, {processes(levels[0]['servers'])},"
        f" {levels[0].get('client', 'python-aio')} client"
        f" (target >= {UNARY_RPS_TARGET:,.0f} req/s, p99 < {UNARY_P99_TARGET_MS:.0f} ms)",
        f"   {'in-flight':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        f" {'requests':>9} {'srv cpu':>8} {'db cpu':>7} {'cli cpu':>8} {'ms cpu/call':>11}"
        "  verdicts",
    ]
    for level in levels:
        cpu = "+".join(f"{c:.1f}" for c in level["server_cpu_s"])
        database = level.get("database_cpu_s")
        spent = sum(level["server_cpu_s"]) + (database or 0.0) + level["client_cpu_s"]
        per_call = 1000 * spent / level["requests"] if level["requests"] else float("nan")
        lines.append(
            f"   {level['concurrency']:>9} {level['rps']:>8,.0f} {level['p50_ms']:>8.1f}"
            f" {level['p99_ms']:>8.1f} {level['max_ms']:>8.1f} {level['requests']:>9,}"
            f" {cpu:>8} {'-' if database is None else f'{database:.1f}':>7}"
            f" {level['client_cpu_s']:>8.1f} {per_call:>11.2f}  {level['verdicts']}"
        )
    return lines


def _wire(wire: dict[str, Any], databases: dict[str, Any]) -> list[str]:
    """The two wire shapes, and the per-item one beside each database's figures."""
    lines = [
        f"\n== wire shape, {wire['items']:,} items, protobuf {wire['protobuf_backend']} (ms) ==",
        f"{'':<22} {'per-item':>9} {'columnar':>9}",
    ]
    for key in ("server_parse_s", "server_respond_s", "client_build_s", "client_read_s"):
        lines.append(
            f"{key[:-2]:<22} {_ms(wire['per_item'][key]):>9} {_ms(wire['columnar'][key]):>9}"
        )
    for key in ("request_bytes", "response_bytes"):
        lines.append(f"{key:<22} {wire['per_item'][key]:>9,} {wire['columnar'][key]:>9,}")
    lines.append(f"server parse+respond: per-item / columnar = {wire['server_side_ratio']:.1f}x")
    per_item = wire["per_item"]["server_parse_s"] + wire["per_item"]["server_respond_s"]
    for name, db in databases.items():
        big = [row for row in db["batch"] if row["batch"] == wire["items"]]
        if big:
            db_s = big[0]["db_consume"]["median_s"]
            lines.append(
                f"{name}: per-item server parse+respond {_ms(per_item)} ms vs db 1-UPDATE"
                f" {_ms(db_s)} ms and the whole call {_ms(big[0]['service']['median_s'])} ms"
            )
    return lines


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str))


def print_and_save(lines: list[str], figures: dict[str, Any], out: Path | None) -> int:
    """A standalone benchmark's ending: its table on stdout, its figures as JSON to
    `out` when given; the exit status."""
    print("\n".join(lines))
    if out is not None:
        write_json(figures, out)
    return 0


_STYLES = {"sqlite": "tab:blue", "postgresql": "tab:orange"}


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    has_unary = any(db.get("unary") for db in results["databases"].values())
    figure, axes = plt.subplots(1, 2 if has_unary else 1, figsize=(13 if has_unary else 7, 5))
    _plot_batch(axes[0] if has_unary else axes, results["databases"])
    if has_unary:
        _plot_unary(axes[1], results["databases"])
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _plot_batch(left: Any, databases: dict[str, Any]) -> None:
    """BatchVerify's rate against the database's own, per batch size."""
    for name, db in databases.items():
        sizes = [row["batch"] for row in db["batch"]]
        color = _STYLES.get(name, None)
        left.plot(sizes, [r["service"]["rate"] for r in db["batch"]], "o-", color=color,
                  label=f"{name}: BatchVerify end to end")  # fmt: skip
        left.plot(sizes, [r["db_consume"]["rate"] for r in db["batch"]], "s--", color=color,
                  label=f"{name}: db, 1 bulk UPDATE")  # fmt: skip
        left.plot(sizes, [r["db_service_sql"]["rate"] for r in db["batch"]], "^:",
                  color=color, label=f"{name}: db, the service's read + write SQL")  # fmt: skip
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("items per call")
    left.set_ylabel("verifications per second (median)")
    left.set_title("BatchVerify vs the database's own bulk UPDATE")
    left.grid(True, which="both", alpha=0.3)
    if databases:  # a growth-only run plots no batch line
        left.legend(fontsize=8)


def _plot_unary(right: Any, databases: dict[str, Any]) -> None:
    """Unary Verify's rate (left axis) and p99 (right axis) per calls in flight."""
    twin = right.twinx()
    for name, db in databases.items():
        levels = db.get("unary") or []
        if not levels:
            continue
        color = _STYLES.get(name, None)
        xs = [level["concurrency"] for level in levels]
        right.plot(xs, [level["rps"] for level in levels], "o-", color=color,
                   label=f"{name}: req/s")  # fmt: skip
        twin.plot(xs, [level["p99_ms"] for level in levels], "x:", color=color,
                  label=f"{name}: p99 ms (right axis)")  # fmt: skip
        for level in db.get("unary_open") or []:
            # Open loop has no calls-in-flight setting: a mark at its peak in flight.
            twin.plot([max(1, level["peak_outstanding"])], [level["p99_ms"]], "D",
                      color=color, markerfacecolor="none",
                      label=f"{name}: p99 ms, open loop {level['rate']:,.0f}/s"
                      f" ({level['dropped']:,} dropped)")  # fmt: skip
    twin.set_ylabel("p99 latency, ms (x, dotted)")
    twin.axhline(UNARY_P99_TARGET_MS, color="grey", linewidth=0.8, linestyle=":")
    right.axhline(UNARY_RPS_TARGET, color="grey", linewidth=0.8)
    right.set_xscale("log", base=2)
    right.set_xlabel("calls in flight")
    right.set_ylabel("unary Verify requests per second")
    right.set_title("unary Verify, closed loop")
    right.grid(True, alpha=0.3)
    handles = right.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    right.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize=8)
