"""What the audit trail costs: BatchVerify and unary Verify with audit on and off, in the
same run, on the same seeded database.

Two single-process servers on the database, one with ``TOTPD_AUDIT_ENABLED=false``.
Batch calls alternate between them one by one and the ratio is the median of
adjacent pairs' ratios; the unary level runs in turns (on, off, on, off ...) and
keeps the better of its turns. Either way a noisy neighbour hits both alike. CPU per
item/call is the server process's CPU time (user + system) over the calls it answered.

Standalone: ``python -m benchmarks.service.audit_cost [--db sqlite] [--quick]``;
``python -m benchmarks.service`` runs it per database too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.service import batch, report, unary
from benchmarks.service.fixtures import Database, FactorPool, measure_on_seeded
from benchmarks.service.servers import ServerProcess, database_cpu_seconds
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

MODES = ("on", "off")
TURNS = 2
GOAL = 0.85  # audit on keeps at least this share of audit off's throughput (issue 13)


def measure(
    database: Database,
    data_dir: Path,
    pool: FactorPool,
    config: dict[str, Any],
    client: str = "python-aio",
) -> dict[str, Any]:
    """Batch rows per size and one unary level, each for audit on and off."""
    if config.get("scattered", True):
        pool.scatter()
    servers = {
        "on": ServerProcess(data_dir, database.url, name="totpd-audit-on"),
        "off": ServerProcess(
            data_dir,
            database.url,
            name="totpd-audit-off",
            env={"TOTPD_AUDIT_ENABLED": "false"},
        ),
    }
    try:
        for server in servers.values():
            server.start()
        batches = [_batch_row(servers, pool, n, config["repeat"]) for n in config["batches"]]
        level = config.get("audit_unary_concurrency", 4)
        database_cpu: Callable[[], float | None] = lambda: database_cpu_seconds(database)  # noqa: E731
        unary_row = _best_of(
            servers,
            lambda server: unary.run_level(
                server,
                pool,
                level,
                config["seconds"],
                max_rate=6000.0,
                client=client,
                database_cpu=database_cpu,
            ),
            key="rps",
        )
        for mode in MODES:
            figure = unary_row[mode]
            figure["server_cpu_us_per_call"] = (
                1e6 * sum(figure["server_cpu_s"]) / figure["requests"]
                if figure["requests"]
                else None
            )
        unary_row["ratio"] = unary_row["on"]["rps"] / unary_row["off"]["rps"]
        return {"batch": batches, "unary": unary_row, "goal": GOAL}
    finally:
        for server in servers.values():
            server.stop()


def _batch_row(
    servers: dict[str, ServerProcess], pool: FactorPool, n: int, repeat: int
) -> dict[str, Any]:
    """Batch calls alternating one by one between the two servers (on, off, off, on,
    ...), `repeat` per server and turn: a slow phase of a shared machine then hits
    both servers' neighbouring calls alike (benchmarks/NOTES.md). The ratio is the
    median over adjacent pairs of off's time over on's; each side's rate is from
    its own median."""
    stubs = {mode: pb_grpc.TotpServiceStub(batch.channel(servers[mode].address)) for mode in MODES}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu = dict.fromkeys(MODES, 0.0)
    valid = dict.fromkeys(MODES, 0)
    other: dict[str, dict[str, int]] = {mode: {} for mode in MODES}
    for mode in MODES:  # first-use costs (statement compilation, pool connect)
        batch.timed_call(stubs[mode], pool, n, None)
    for call in range(repeat * TURNS):
        for mode in MODES if call % 2 == 0 else MODES[::-1]:
            elapsed, spent, response = batch.timed_call(stubs[mode], pool, n, servers[mode].pid)
            times[mode].append(elapsed)
            cpu[mode] += spent
            valid[mode] += batch.count_valid(response, other[mode])
    row: dict[str, Any] = {
        mode: batch.summarize(
            n,
            times[mode],
            valid_fraction=valid[mode] / (n * len(times[mode])),
            not_valid=other[mode],
            server_cpu_us_per_item=1e6 * cpu[mode] / (n * len(times[mode])),
        )
        for mode in MODES
    }
    row["batch"] = n
    row["ratio"] = statistics.median(
        off / on for on, off in zip(times["on"], times["off"], strict=True)
    )
    return row


def _best_of(
    servers: dict[str, ServerProcess],
    run: Callable[[ServerProcess], dict[str, Any]],
    key: str,
) -> dict[str, Any]:
    """`run` on each server in turns; per mode the turn with the highest `key`."""
    best: dict[str, Any] = {}
    for _ in range(TURNS):
        for mode in MODES:
            figure = run(servers[mode])
            if mode not in best or figure[key] > best[mode][key]:
                best[mode] = figure
    return best


def table(name: str, figures: dict[str, Any]) -> list[str]:
    lines = [
        f"\n{name}: audit on vs off (single server process; goal: on >= {GOAL:.0%} of off)",
        f"{'call':>18} {'on /s':>10} {'off /s':>10} {'on/off':>7} "
        f"{'CPU on µs':>10} {'CPU off µs':>11}",
    ]
    for row in figures["batch"]:
        lines.append(
            f"{'BatchVerify x' + str(row['batch']):>18} {row['on']['rate']:>10,.0f} "
            f"{row['off']['rate']:>10,.0f} {row['ratio']:>7.2f} "
            f"{_us(row['on']['server_cpu_us_per_item']):>10} "
            f"{_us(row['off']['server_cpu_us_per_item']):>11}   (per item)"
        )
    u = figures["unary"]
    lines.append(
        f"{'Verify, ' + str(u['on']['concurrency']) + ' in flight':>18} {u['on']['rps']:>10,.0f} "
        f"{u['off']['rps']:>10,.0f} {u['ratio']:>7.2f} "
        f"{_us(u['on']['server_cpu_us_per_call']):>10} "
        f"{_us(u['off']['server_cpu_us_per_call']):>11}   (per call)"
    )
    return lines


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service.audit_cost")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--factors", type=int, default=20_000)
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (default 100 1000)")
    # Calls per batch size and turn: at 3, a turn of 1,000-item batches lasted about a
    # quarter of a second and one noisy neighbour moved its ratio by 0.1.
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="take accounts in their id order (neighbours share index pages), not scattered",
    )
    args = parser.parse_args(argv)
    config = {
        "scattered": not args.sequential,
        "batches": args.batch or [100, 1000],
        "repeat": args.repeat,
        "seconds": args.seconds,
        "audit_unary_concurrency": args.concurrency,
    }
    figures = measure_on_seeded(
        args.db,
        args.factors,
        "audit",
        lambda database, data_dir, pool: measure(database, data_dir, pool, config),
    )
    return report.print_and_save(table(args.db, figures), figures, args.out)


if __name__ == "__main__":
    sys.exit(main())
