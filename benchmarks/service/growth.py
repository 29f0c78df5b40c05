"""Growth: what a verification costs as the factors table grows (issue 16).

One database is grown in place, 100k -> 1M -> 10M factors on PostgreSQL (SQLite up to
1M; `bulk_seed.grow` adds only the new rows, sealed by the server's keyring), and at
each size a fresh `totpd serve --processes auto` (the default configuration, audit on)
is measured in turns, each turn a closed-loop unary `Verify` level and a few
`BatchVerify` calls of 10k items. Every code is fresh and valid for a factor drawn
uniformly at random from the whole table (`GrowthPool`), so the database's index and
heap pages are touched as a real population would touch them, not in seeding order.

Per size: req/s and server + database CPU per verification (medians of the turns),
the server processes' memory while 10k-item batches run (sampled VmRSS, and VmHWM
after several batches in flight at once), and optionally open-loop levels
(`--open-loop-rate`, issue 16's 2,000 req/s target). The growth figure of each
cost is largest size / smallest size: the goal is at most 1.5.

``python -m benchmarks.service.growth [--db postgresql] [--sizes 100000,1000000,10000000]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.service import batch, bulk_seed, report, unary
from benchmarks.service.bulk_seed import DerivedFactors, GrowthPool
from benchmarks.service.fixtures import (
    Database,
    make_keyring,
    postgres_database,
    postgres_settings,
    sqlite_database,
    sqlite_settings,
)
from benchmarks.service.servers import ServerProcess, children, cpu_seconds, database_cpu_seconds
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

GOAL = 1.5  # largest size's cost / smallest size's, per verification
SIZES = {"postgresql": [100_000, 1_000_000, 10_000_000], "sqlite": [100_000, 1_000_000]}
DEFAULTS: dict[str, Any] = {
    "turns": 3,
    "seconds": 6.0,  # per unary level
    "concurrency": 16,  # unary calls in flight
    "batch": 10_000,
    "repeat": 3,  # batch calls per turn (after one uncounted warm-up in the first)
    "parallel": 4,  # batches in flight at once for the memory figure (the worker threads)
    "processes": "auto",
    "open_rates": [],
    "max_outstanding": 1000,
}


# --- memory of the server processes ------------------------------------------


def _status_kb(pid: int, field: str) -> int:
    """A /proc/<pid>/status size field (VmRSS, VmHWM) in kB; 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def server_pids(server: ServerProcess) -> list[int]:
    return [server.pid, *children(server.pid)]


class RssSampler:
    """The largest VmRSS of each server process, sampled every `interval` seconds."""

    def __init__(self, pids: list[int], interval: float = 0.02) -> None:
        self.pids = pids
        self.interval = interval
        self.peak_kb = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                self.peak_kb[pid] = max(self.peak_kb[pid], _status_kb(pid, "VmRSS"))
            self._stop.wait(self.interval)

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=5)


# --- one size ----------------------------------------------------------------


def _batch_calls(
    server: ServerProcess, database: Database, pool: GrowthPool, n: int, calls: int
) -> list[dict[str, Any]]:
    """`calls` BatchVerify calls of n fresh valid codes, one at a time, each with its
    wall time, the server's and the database's CPU, and its VALID count."""
    stub = pb_grpc.TotpServiceStub(batch.channel(server.address))
    figures = []
    for _ in range(calls):
        request = batch.batch_request(pool, pool.take(n))
        server_cpu, database_cpu = cpu_seconds(server.pid), database_cpu_seconds(database)
        started = time.perf_counter()
        response = stub.BatchVerify(request, timeout=600)
        elapsed = time.perf_counter() - started
        database_after = database_cpu_seconds(database)
        figures.append(
            {
                "seconds": elapsed,
                "server_cpu_s": cpu_seconds(server.pid) - server_cpu,
                "database_cpu_s": None
                if database_cpu is None or database_after is None
                else database_after - database_cpu,
                "valid": _valid(response),
            }
        )
    return figures


def _valid(response: Any) -> int:
    return sum(
        1
        for result in response.results
        if result.WhichOneof("result") == "outcome"
        and result.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    )


def _parallel_batches(server: ServerProcess, pool: GrowthPool, n: int, parallel: int) -> int:
    """`parallel` BatchVerify calls of n items in flight at once (one connection: one
    server process takes them all); the VALID count. One `take` for all: a factor in
    two calls at once could have its later step committed first."""
    pairs = pool.take(n * parallel)
    requests = [batch.batch_request(pool, pairs[k * n : (k + 1) * n]) for k in range(parallel)]
    stub = pb_grpc.TotpServiceStub(batch.channel(server.address))
    with ThreadPoolExecutor(parallel) as threads:
        responses = list(threads.map(lambda r: stub.BatchVerify(r, timeout=600), requests))
    return sum(_valid(response) for response in responses)


def measure_size(
    database: Database, data_dir: Path, pool: GrowthPool, config: dict[str, Any]
) -> dict[str, Any]:
    """A fresh server on the database as it is: unary and batch turns, memory, open loop."""
    n = config["batch"]
    server = ServerProcess(
        data_dir, database.url, name=f"totpd-growth-{len(pool)}", processes=config["processes"]
    )
    server.start()
    database_cpu: Callable[[], float | None] = lambda: database_cpu_seconds(database)  # noqa: E731
    try:
        levels, calls = [], []
        pids = server_pids(server)
        idle_kb = {pid: _status_kb(pid, "VmRSS") for pid in pids}
        sampler = RssSampler(pids)
        with sampler.running():
            for turn in range(config["turns"]):
                levels.append(
                    unary.run_level(
                        server,
                        pool,
                        config["concurrency"],
                        config["seconds"],
                        max_rate=6000.0,
                        database_cpu=database_cpu,
                    )
                )
                figures = _batch_calls(server, database, pool, n, config["repeat"] + (turn == 0))
                calls += figures[1:] if turn == 0 else figures  # the first call warms up
            parallel_valid = _parallel_batches(server, pool, n, config["parallel"])
        memory = {
            "idle_rss_kb": idle_kb,
            "peak_rss_kb": sampler.peak_kb,
            "hwm_kb": {pid: _status_kb(pid, "VmHWM") for pid in pids},
            "parallel": config["parallel"],
            "parallel_valid_fraction": parallel_valid / (n * config["parallel"]),
        }
        opened = [
            unary.run_open_level(
                server,
                pool,
                rate,
                config["seconds"],
                config["max_outstanding"],
                database_cpu=database_cpu,
            )
            for rate in config["open_rates"]
        ]
    finally:
        server.stop()
    return {
        "unary": _unary_summary(levels),
        "batch": _batch_summary(calls, n),
        "memory": memory,
        "unary_open": opened,
        "pool_waited_s": pool.waited_seconds,
    }


def _unary_summary(levels: list[dict[str, Any]]) -> dict[str, Any]:
    def per_call(level: dict[str, Any], seconds: float | None) -> float | None:
        return None if seconds is None else 1e6 * seconds / max(1, level["requests"])

    server = [per_call(level, sum(level["server_cpu_s"])) for level in levels]
    database = [per_call(level, level["database_cpu_s"]) for level in levels]
    verdicts: dict[str, int] = {}
    for level in levels:
        for name, count in level["verdicts"].items():
            verdicts[name] = verdicts.get(name, 0) + count
    return {
        "turns": levels,
        "concurrency": levels[0]["concurrency"],
        "rps": statistics.median(level["rps"] for level in levels),
        "p50_ms": statistics.median(level["p50_ms"] for level in levels),
        "p99_ms": statistics.median(level["p99_ms"] for level in levels),
        "server_cpu_us": statistics.median(value or 0.0 for value in server),
        "database_cpu_us": _median_or_none(database),
        "verdicts": verdicts,
    }


def _batch_summary(calls: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Rate from the median call; CPU per item over all calls (one call's CPU is a few
    ticks of the 10 ms /proc clock at small sizes)."""
    items = n * len(calls)
    database = [call["database_cpu_s"] for call in calls]
    return {
        "calls": calls,
        "items": n,
        "call_ms": 1000 * statistics.median(call["seconds"] for call in calls),
        "rate": n / statistics.median(call["seconds"] for call in calls),
        "server_cpu_us": 1e6 * sum(call["server_cpu_s"] for call in calls) / items,
        "database_cpu_us": None if None in database else 1e6 * sum(database) / items,
        "valid_fraction": sum(call["valid"] for call in calls) / items,
    }


def _median_or_none(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


# --- the whole run -------------------------------------------------------------


def run(name: str, sizes: list[int], config: dict[str, Any], workers: int) -> dict[str, Any]:
    """Grow one throwaway database through `sizes`, measuring at each."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"totpd-growth-{name}-"))
    opener = sqlite_database(data_dir) if name == "sqlite" else postgres_database()
    derived = DerivedFactors(os.urandom(32))
    try:
        with opener as database:
            keyring = make_keyring(data_dir)
            settings = sqlite_settings if database.name == "sqlite" else postgres_settings
            pool = GrowthPool(derived, 0)
            rows = []
            for size in sorted(sizes):
                _log(f"{name}: growing to {size:,} factors")
                seeded = bulk_seed.grow(database, data_dir / "totpd.key", derived, size, workers)
                checked = bulk_seed.check_sample(database, keyring, derived, size)
                pool.size = size
                _log(f"{name}: {size:,} factors (seeded in {seeded['seconds']:.0f} s); measuring")
                row = {
                    "factors": size,
                    "seed": seeded,
                    "sample_opened": checked,
                    "table_bytes": table_bytes(database),
                    "loadavg_before": os.getloadavg(),
                    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                row.update(measure_size(database, data_dir, pool, config))
                row["loadavg_after"] = os.getloadavg()
                rows.append(row)
            return {
                "database": name,
                "settings": settings(database),
                "config": config,
                "sizes": rows,
                "growth": growth(rows),
                "goal": GOAL,
            }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def table_bytes(database: Database) -> int:
    """The factors table with its indexes (PostgreSQL), or the whole file (SQLite)."""
    if database.sqlite_path is not None:
        return sum(
            path.stat().st_size for path in database.sqlite_path.parent.glob("totpd.sqlite3*")
        )
    with database.connect_raw() as connection:
        return int(connection.execute("SELECT pg_total_relation_size('factors')").fetchone()[0])


COSTS: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "unary ms/call (1/req/s)": lambda row: 1000 / row["unary"]["rps"],
    "unary server CPU µs/call": lambda row: row["unary"]["server_cpu_us"],
    "unary server+db CPU µs/call": lambda row: _plus(row["unary"]),
    "batch µs/item (1/rate)": lambda row: 1e6 / row["batch"]["rate"],
    "batch server CPU µs/item": lambda row: row["batch"]["server_cpu_us"],
    "batch server+db CPU µs/item": lambda row: _plus(row["batch"]),
}


def _plus(figures: dict[str, Any]) -> float | None:
    database = figures["database_cpu_us"]
    return None if database is None else figures["server_cpu_us"] + database


def growth(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Each cost at the largest size over the smallest (the goal: at most 1.5)."""
    first, last = rows[0], rows[-1]
    ratios: dict[str, float | None] = {}
    for name, cost in COSTS.items():
        low, high = cost(first), cost(last)
        ratios[name] = None if low is None or high is None or low == 0 else high / low
    return ratios


def peak_process_kb(row: dict[str, Any]) -> int:
    memory = row["memory"]
    return int(max([*memory["peak_rss_kb"].values(), *memory["hwm_kb"].values()]))


def table(figures: dict[str, Any]) -> list[str]:
    rows = figures["sizes"]
    lines = [
        f"\n{figures['database']}: growth, one server per size"
        f" ({figures['config']['processes']} processes), unary"
        f" {figures['config']['concurrency']} in flight, BatchVerify x{figures['config']['batch']}"
        f" (medians of {figures['config']['turns']} turns; CPU per verification)",
        f"{'factors':>11} {'seed s':>7} {'Verify/s':>9} {'p99 ms':>7} {'srv µs':>7}"
        f" {'db µs':>6} {'batch/s':>9} {'call ms':>8} {'srv µs':>7} {'db µs':>6}"
        f" {'valid':>6} {'peak RSS MB':>11}",
    ]
    for row in rows:
        u, b = row["unary"], row["batch"]
        lines.append(
            f"{row['factors']:>11,} {row['seed']['seconds']:>7.0f} {u['rps']:>9,.0f}"
            f" {u['p99_ms']:>7.1f} {u['server_cpu_us']:>7,.0f} {_us(u['database_cpu_us']):>6}"
            f" {b['rate']:>9,.0f} {b['call_ms']:>8.0f} {b['server_cpu_us']:>7,.1f}"
            f" {_us(b['database_cpu_us'], 1):>6} {b['valid_fraction']:>6.0%}"
            f" {peak_process_kb(row) / 1024:>11,.0f}"
        )
    for name, ratio in figures["growth"].items():
        verdict = "-" if ratio is None else ("met" if ratio <= GOAL else "MISSED")
        shown = "-" if ratio is None else f"{ratio:.2f}x"
        lines.append(
            f"   {name:<30} {rows[-1]['factors']:,} / {rows[0]['factors']:,}: {shown} ({verdict})"
        )
    for row in rows:
        if row["unary_open"]:
            lines.append(f"   open loop at {row['factors']:,} factors:")
            lines.extend(report.open_loop_lines(row["unary_open"]))
    return lines


def _us(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _log(message: str) -> None:
    print(f"[growth {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service.growth")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--sizes", help="comma-separated factor counts (default: per database)")
    for key in ("turns", "concurrency", "batch", "repeat", "parallel", "max_outstanding"):
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=DEFAULTS[key])
    parser.add_argument("--seconds", type=float, default=DEFAULTS["seconds"])
    parser.add_argument("--processes", default=DEFAULTS["processes"])
    parser.add_argument("--open-loop-rate", type=float, action="append", default=[])
    parser.add_argument("--seed-workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else SIZES[args.db]
    config = {key: getattr(args, key) for key in DEFAULTS if key != "open_rates"}
    config["open_rates"] = args.open_loop_rate
    figures = run(args.db, sizes, config, args.seed_workers)
    return report.print_and_save(table(figures), figures, args.out)


if __name__ == "__main__":
    sys.exit(main())
