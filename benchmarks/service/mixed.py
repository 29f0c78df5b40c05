"""Unary `Verify` and `BatchVerify` in one `totpd serve` process, each alone and both at
once: what batches cost the unary calls beside them, and what those calls cost a batch;
and both at once on two processes, the remedy the docs give.

One single-process server on a seeded database, its limits raised as the floor's
(`floor.RAISED_LIMITS`: every call compares and writes), measured in alternating turns
of four phases, each `--seconds` long:

- ``unary``: `--concurrency` unary calls in flight (the Go load generator);
- ``batch``: `--items`-item `BatchVerify` calls, one after another;
- ``both``: the two at once, on the same factors, so a batch's optimistic round may
  meet a unary call's write and be decided again under locks (store/rounds.py);
- ``apart``: the two at once, the batches sent to a second single-process server on
  the same database (docs/deploy.md, "Bulk verification beside sign-ins"). Its cores
  are both processes'.

Every code is wrong (`unary.wrong_code`): no step is consumed, so a pool of factors
serves any number of calls, and every item reads, compares and counts a failure. No
goal: context for issue 16's targets, each measured alone, and for the SQLite
driver's GIL hand-offs (benchmarks/NOTES.md, "SQLite's driver and the GIL").

``python -m benchmarks.service.mixed [--db sqlite|postgresql] [--items 1000]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.service import batch, floor, report, unary
from benchmarks.service.fixtures import Database, FactorPool, measure_on_seeded
from benchmarks.service.servers import ServerProcess, cpu_seconds
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

PHASES = ("unary", "batch", "both", "apart")


class _WrongBatches:
    """`items`-item requests of wrong codes, each for distinct accounts, cycling
    over the pool (a round holds one item per account)."""

    def __init__(self, pool: FactorPool, items: int) -> None:
        if items > len(pool):
            raise ValueError(f"{items} items need as many factors; the pool has {len(pool)}")
        self._pool = pool
        self._items = items
        self._next = 0

    def request(self) -> pb.BatchVerifyRequest:
        pool, size = self._pool, len(self._pool)
        step = int(time.time()) // 30
        indices = [(self._next + offset) % size for offset in range(self._items)]
        self._next = (self._next + self._items) % size
        return pb.BatchVerifyRequest(
            items=[
                pb.BatchVerifyItem(
                    account_id=pool.account(index), code=unary.wrong_code(pool, index, step)
                )
                for index in indices
            ]
        )


def _batch_loop(address: str, requests: _WrongBatches, stop: threading.Event) -> dict[str, Any]:
    """Batch calls one after another until `stop` (at least one): their times and
    how many items were answered INVALID (every one should be)."""
    stub = pb_grpc.TotpServiceStub(batch.channel(address))
    times: list[float] = []
    items = invalid = 0
    while not stop.is_set() or not times:
        request = requests.request()  # built off the clock
        started = time.perf_counter()
        response = stub.BatchVerify(request, timeout=600)
        times.append(time.perf_counter() - started)
        other: dict[str, int] = {}
        batch.count_valid(response, other)
        items += len(response.results)
        invalid += other.get("VERIFY_RESULT_INVALID", 0)
    return {
        "calls": len(times),
        "median_ms": 1000 * statistics.median(times),
        "max_ms": 1000 * max(times),
        "invalid_fraction": invalid / items,
    }


def _phase(
    phase: str,
    servers: tuple[ServerProcess, ServerProcess],
    pool: FactorPool,
    requests: _WrongBatches,
    config: Any,
) -> dict[str, Any]:
    """One phase: the unary load for `config.seconds`, the batch loop as long, or both
    (`apart`: the batches on the second server)."""
    server = servers[0]
    # Where the batches go, and whose CPU the phase counts.
    batches, measured = (servers[1], servers) if phase == "apart" else (server, (server,))
    stop = threading.Event()
    result: dict[str, Any] = {}
    loop: threading.Thread | None = None
    if phase != "unary":

        def run_batches() -> None:
            result["batch"] = _batch_loop(batches.address, requests, stop)

        loop = threading.Thread(target=run_batches, name="mixed-batches")
    cpu_before, started = _cpu(measured), time.perf_counter()
    if loop is not None:
        loop.start()
    if phase == "batch":
        time.sleep(config.seconds)
    else:
        result["unary"] = unary.run_level(
            server,
            pool,
            config.concurrency,
            config.seconds,
            max_rate=20_000.0,
            wrong_codes=True,
        )
    stop.set()
    if loop is not None:
        loop.join()
    result["server_cores"] = (_cpu(measured) - cpu_before) / (time.perf_counter() - started)
    return result


def _cpu(servers: tuple[ServerProcess, ...]) -> float:
    return sum(cpu_seconds(server.pid) for server in servers)


def measure(database: Database, data_dir: Path, pool: FactorPool, config: Any) -> dict[str, Any]:
    """Every phase in `config.turns` alternating turns; the median of each figure."""
    servers = (
        _server(data_dir, database, "totpd-mixed"),
        _server(data_dir, database, "totpd-mixed-batches"),
    )
    requests = _WrongBatches(pool, config.items)
    turns: dict[str, list[dict[str, Any]]] = {phase: [] for phase in PHASES}
    try:
        once = threading.Event()
        once.set()
        for server in servers:
            server.start()
            _batch_loop(server.address, requests, once)  # warm-up: one call
        for _ in range(config.turns):
            for phase in PHASES:
                turns[phase].append(_phase(phase, servers, pool, requests, config))
    finally:
        for server in servers:
            server.stop()
    return {
        "db": database.name,
        "items": config.items,
        "concurrency": config.concurrency,
        "seconds": config.seconds,
        "turns": turns,
        "medians": {phase: _medians(figures) for phase, figures in turns.items()},
    }


def _server(data_dir: Path, database: Database, name: str) -> ServerProcess:
    """A single-process server with the floor's raised limits (not started)."""
    return ServerProcess(data_dir, database.url, name=name, env=dict(floor.RAISED_LIMITS))


def _medians(figures: list[dict[str, Any]]) -> dict[str, float]:
    """The median over the turns of each figure a phase gives."""
    values: dict[str, list[float]] = {}
    for figure in figures:
        values.setdefault("server_cores", []).append(figure["server_cores"])
        for part, keys in (("unary", ("rps", "p50_ms", "p99_ms")), ("batch", ("median_ms",))):
            if part in figure:
                for key in keys:
                    values.setdefault(f"{part}_{key}", []).append(figure[part][key])
    return {name: statistics.median(series) for name, series in values.items()}


def table(figures: dict[str, Any]) -> list[str]:
    medians = figures["medians"]

    def cell(phase: str, key: str, form: str) -> str:
        value = medians[phase].get(key)
        return "-" if value is None else format(value, form)

    lines = [
        f"\n{figures['db']}: unary Verify ({figures['concurrency']} in flight) and BatchVerify "
        f"x{figures['items']:,} in one server process, alone and at once "
        f"(wrong codes, medians of {len(figures['turns']['unary'])} turns of "
        f"{figures['seconds']:g} s)",
        f"{'phase':>6} {'unary req/s':>12} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'batch ms':>9} {'cores':>6}",
    ]
    for phase in PHASES:
        lines.append(
            f"{phase:>6} {cell(phase, 'unary_rps', ',.0f'):>12} "
            f"{cell(phase, 'unary_p50_ms', '.2f'):>7} {cell(phase, 'unary_p99_ms', '.2f'):>7} "
            f"{cell(phase, 'batch_median_ms', ',.1f'):>9} {cell(phase, 'server_cores', '.2f'):>6}"
        )
    unary_alone, batch_alone = medians["unary"], medians["batch"]
    for phase, name in (("both", "at once"), ("apart", "apart (batches on a second process)")):
        at_once = medians[phase]
        lines.append(
            f"{name}: unary {at_once['unary_rps'] / unary_alone['unary_rps']:.2f}x its rate "
            f"alone, p99 {at_once['unary_p99_ms'] / unary_alone['unary_p99_ms']:.2f}x; a batch "
            f"{at_once['batch_median_ms'] / batch_alone['batch_median_ms']:.2f}x its time alone"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service.mixed")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--factors", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=1_000, help="items per BatchVerify")
    parser.add_argument("--concurrency", type=int, default=4, help="unary calls in flight")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each phase")
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    figures = measure_on_seeded(
        args.db,
        args.factors,
        "mixed",
        lambda database, data_dir, pool: measure(database, data_dir, pool, args),
    )
    return report.print_and_save(table(figures), figures, args.out)


if __name__ == "__main__":
    sys.exit(main())
