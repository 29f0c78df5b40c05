"""BatchVerify against the database's own bulk UPDATE, and where the call's time goes,
in one run: ``python -m benchmarks.service.batch_stages [--db sqlite] [--items 10000]``.

Per database: seed the factors, start one `totpd serve` process, then in turns
(service, the database's bulk UPDATE in each form, the service's own SQL raw) time
calls of `--items` fresh valid codes, so a noisy neighbour hits every figure
alike; then replay calls in-process, each stage timed (breakdown.py). Prints the
ratio (issue 16's target: >= 70%) and the per-stage table, µs per item and share
of the call. The figures: benchmarks/README.md, "BatchVerify against the database"
and "Where one call's time goes".
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.service import batch, breakdown, report
from benchmarks.service.fixtures import Database, FactorPool
from benchmarks.service.servers import ServerProcess

TARGET = report.BATCH_TARGET
SERVER_ENV = {"TOTPD_MAX_DATABASE_WAIT_SECONDS": "120"}


def measure(
    database: Database, data_dir: Path, pool: FactorPool, args: argparse.Namespace
) -> dict[str, Any]:
    """The turns through the server and on the database, then the breakdown."""
    n, calls = args.items, args.calls
    # The default configuration, but for the bound on a call's wait for the
    # database (5 s): a 10k-item call on a busy shared machine can outlast it.
    server = ServerProcess(data_dir, database.url, env=SERVER_ENV)
    server.start()
    service: list[dict[str, Any]] = []
    forms: dict[str, list[dict[str, Any]]] = {form: [] for form in batch.forms(database)}
    own_sql: list[dict[str, Any]] = []
    halves: list[dict[str, Any]] = []
    try:
        for turn in range(args.turns):
            warm = 1 if turn == 0 else 0  # first-use costs, once per side
            service.append(
                batch.run_service(server.address, pool, n, calls, server.pid, warmup=warm)
            )
            for form, figures in forms.items():
                figures.append(batch.run_database(database, pool, n, calls, form=form, warmup=warm))
            own_sql.append(batch.run_service_sql(database, pool, n, calls, warmup=warm))
            if database.name == "postgresql":  # SQLite's second writer would only queue
                halves.append(batch.run_database_halves(database, pool, n, calls, warmup=warm))
    finally:
        server.stop()
    parts = breakdown.run_breakdown(database, data_dir, pool, n, args.breakdown_calls)
    parts.pop("profile_top")
    by_form = {form: _pooled(n, figures) for form, figures in forms.items()}
    consume = max(by_form.values(), key=lambda figure: figure["rate"])
    pooled = _pooled(n, service)
    cpu = [c for figure in service for c in figure["server_cpu_s"] or []]
    pooled["server_cpu_median_s"] = statistics.median(cpu) if cpu else None
    own = _pooled(n, own_sql)
    measured: dict[str, Any] = {
        "items": n,
        "turns": args.turns,
        "calls_per_turn": calls,
        "service": pooled,
        "valid_fraction": pooled["valid_fraction"],
        "db_consume": consume,
        "db_consume_by_form": by_form,
        "db_service_sql": own,
        "ratio_vs_consume": pooled["rate"] / consume["rate"],
        "ratio_service_sql_vs_consume": own["rate"] / consume["rate"],
        "breakdown": parts,
    }
    if halves:
        halved = _pooled(n, halves)
        measured["db_consume_halves"] = halved
        measured["ratio_vs_consume_halves"] = pooled["rate"] / halved["rate"]
    return measured


def _pooled(n: int, turns: list[dict[str, Any]]) -> dict[str, Any]:
    """The calls of every turn as one figure (the median over all of them)."""
    times = [t for figure in turns for t in figure.get("times_s", [])]
    extra: dict[str, Any] = {key: turns[0][key] for key in ("form",) if key in turns[0]}
    for key in ("valid_fraction", "updated_fraction", "read_fraction"):
        if key in turns[0]:
            extra[key] = min(figure[key] for figure in turns)
    return batch.summarize(n, times, **extra)


def table(name: str, figures: dict[str, Any]) -> list[str]:
    n = figures["items"]
    service, consume, own = figures["service"], figures["db_consume"], figures["db_service_sql"]
    cpu = service.get("server_cpu_median_s")
    others = ", ".join(
        f"{form} {figure['rate']:,.0f}/s"
        for form, figure in figures["db_consume_by_form"].items()
        if figure is not consume and form != consume.get("form")
    )
    ratio = figures["ratio_vs_consume"]
    lines = [
        f"\n== {name}: BatchVerify x{n:,}, {figures['turns']} turns of"
        f" {figures['calls_per_turn']} calls per side (medians of every call) ==",
        f"   service (gRPC)      {service['rate']:>10,.0f} items/s  call"
        f" {1000 * service['median_s']:,.1f} ms"
        + (f", server CPU {1e6 * cpu / n:.1f} µs/item" if cpu else "")
        + f", valid {figures['valid_fraction']:.0%}",
        f"   db 1-UPDATE         {consume['rate']:>10,.0f} rows/s   ({consume.get('form')};"
        f" {others})",
        f"   service's own SQL   {own['rate']:>10,.0f} rows/s   (its read + write, raw)",
        f"   svc/db1 {ratio:.0%} (target >= {TARGET:.0%}: {_verdict(ratio)}),"
        f" SQL/db1 {figures['ratio_service_sql_vs_consume']:.0%}",
    ]
    if "db_consume_halves" in figures:  # context: not the target's baseline
        halved = figures["db_consume_halves"]
        lines.append(
            f"   db 1-UPDATE halved  {halved['rate']:>10,.0f} rows/s   (two connections at"
            f" once, as the service's parts run; svc/it {figures['ratio_vs_consume_halves']:.0%})"
        )
    lines += breakdown.stage_table(figures["breakdown"], service["median_s"])
    return lines


def _verdict(ratio: float) -> str:
    return "met" if ratio >= TARGET else "MISSED"


def _parser() -> argparse.ArgumentParser:
    parser = batch.tool_parser("benchmarks.service.batch_stages", __doc__)
    parser.add_argument("--turns", type=int, default=3, help="turns over every side")
    parser.add_argument("--calls", type=int, default=2, help="calls per side and turn")
    parser.add_argument("--breakdown-calls", type=int, default=3, help="in-process calls")
    return parser


def main(argv: list[str] | None = None) -> int:
    return batch.run_tool(_parser().parse_args(argv), measure, table, ["sqlite", "postgresql"])


if __name__ == "__main__":
    sys.exit(main())
