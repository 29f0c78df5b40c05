"""What the audit trail costs: BatchVerify and unary Verify with audit on and off, in the
same run, on the same seeded database.

Two single-process servers on the database, one with ``TOTPD_AUDIT_ENABLED=false``.
Batch calls alternate between them one by one, the unary level in short turns
(on, off, off, on, ...); either ratio is the median of adjacent pairs' ratios, so
a noisy neighbour hits both sides of a pair alike. CPU per item/call is the server
process's CPU time (user + system) over the calls it answered.

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
TURNS = 2  # batch calls: `repeat` per server and turn
# Unary turns per server: one-second turns in pairs, where two three-second turns
# each (the better one kept) moved the ratio 0.82-1.07 between runs.
UNARY_TURNS = 6
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
        turns = config.get("unary_turns", UNARY_TURNS)
        unary_row = _alternating(
            servers,
            turns,
            lambda server: unary.run_level(
                server,
                pool,
                level,
                config["seconds"] / turns * TURNS,
                max_rate=6000.0,
                client=client,
                database_cpu=database_cpu,
            ),
        )
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


def _alternating(
    servers: dict[str, ServerProcess],
    turns_per_server: int,
    run: Callable[[ServerProcess], dict[str, Any]],
) -> dict[str, Any]:
    """`run` on each server in alternating turns. Per mode the turn of
    median rate, with the CPU per call over all its turns; the ratio is the median
    over the turns' pairs of on's rate over off's."""
    turns: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for turn in range(turns_per_server):
        for mode in MODES if turn % 2 == 0 else MODES[::-1]:
            turns[mode].append(run(servers[mode]))
    row: dict[str, Any] = {}
    for mode in MODES:
        by_rate = sorted(turns[mode], key=lambda figure: figure["rps"])
        requests = sum(figure["requests"] for figure in by_rate)
        cpu = sum(sum(figure["server_cpu_s"]) for figure in by_rate)
        row[mode] = {
            **by_rate[len(by_rate) // 2],
            "turns_rps": [figure["rps"] for figure in turns[mode]],
            "server_cpu_us_per_call": 1e6 * cpu / requests if requests else None,
        }
    row["ratio"] = statistics.median(
        on["rps"] / off["rps"] for on, off in zip(turns["on"], turns["off"], strict=True)
    )
    return row


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
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="unary: seconds per server and pair of turns"
    )
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
