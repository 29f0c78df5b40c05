"""Growth: what a verification costs as the factors table grows (issue 16).

One database is grown in place, 100k -> 1M -> 10M factors on PostgreSQL (SQLite up to
1M; `bulk_seed.grow` adds only the new rows, sealed by the server's keyring), and at
each size a fresh `totpd serve` in the default configuration (one process, audit on)
is measured in turns, each turn a closed-loop unary `Verify` level, a few
`BatchVerify` calls of 10k items, and as many of the database's own bulk UPDATEs of
10k rows (`batch.run_database`: what the database's per-row cost does as it grows,
context for the batch's figure, not a goal). Every code is fresh and valid for a factor drawn
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
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

import grpc
from sqlalchemy import make_url

from benchmarks.service import batch, bulk_seed, db_counters, report, unary
from benchmarks.service.bulk_seed import DerivedFactors, GrowthPool
from benchmarks.service.fixtures import (
    Database,
    make_keyring,
    postgres_database,
    postgres_settings,
    sqlite_database,
    sqlite_settings,
)
from benchmarks.service.growth_report import BASELINES, GOAL, ratios, table
from benchmarks.service.process_memory import RssSampler, server_pids, status_kb
from benchmarks.service.servers import ServerProcess, cpu_seconds, database_cpu_seconds
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

SIZES = {"postgresql": [100_000, 1_000_000, 10_000_000], "sqlite": [100_000, 1_000_000]}
DEFAULTS: dict[str, Any] = {
    "turns": 3,
    "seconds": 6.0,  # per unary level
    "concurrency": 16,  # unary calls in flight
    "batch": 10_000,
    "repeat": 3,  # batch calls per turn (after one uncounted warm-up in the first)
    "processes": "1",  # `totpd serve`'s default (the default configuration)
    "open_rates": [],
    "load_fillfactor": None,  # PostgreSQL: pages filled to this % by the load (None: 100)
    "max_outstanding": 1000,
}


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
        wal = db_counters.wal_bytes(database)
        started = time.perf_counter()
        try:
            response, error = stub.BatchVerify(request, timeout=600), None
        except grpc.RpcError as failed:  # e.g. DEADLINE_EXCEEDED: a figure, not a crash
            response, error = pb.BatchVerifyResponse(), failed.code().name
        elapsed = time.perf_counter() - started
        database_after = database_cpu_seconds(database)
        wal_after = db_counters.wal_bytes(database)
        figures.append(
            {
                "seconds": elapsed,
                "server_cpu_s": cpu_seconds(server.pid) - server_cpu,
                "database_cpu_s": None
                if database_cpu is None or database_after is None
                else database_after - database_cpu,
                "valid": _valid(response),
                "error": error,
                "wal_bytes": None if wal is None or wal_after is None else wal_after - wal,
            }
        )
    return figures


def _bulk_updates(
    database: Database, pool: GrowthPool, n: int, calls: int, warm_up: bool
) -> dict[str, Any]:
    """The database's own bulk UPDATE of n fresh rows, `calls` times (`batch.run_database`,
    rows as one JSON parameter), with the database's CPU over them (a warm-up's
    included: the /proc clock's ticks are too coarse for one statement's)."""
    cpu = database_cpu_seconds(database)
    figure = batch.run_database(database, pool, n, calls, form="json", warmup=int(warm_up))
    after = database_cpu_seconds(database)
    figure["database_cpu_s"] = None if cpu is None or after is None else after - cpu
    figure["rows_with_warm_up"] = n * (calls + int(warm_up))
    return figure


def _valid(response: Any) -> int:
    return sum(
        1
        for result in response.results
        if result.WhichOneof("result") == "outcome"
        and result.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    )


class Target(NamedTuple):
    """A database to measure, and the pool of its factors' codes."""

    name: str  # "grown", or "reference": the smallest size, measured beside every size
    database: Database
    pool: GrowthPool


def measure_size(
    targets: list[Target], data_dir: Path, config: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """A fresh server per target, measured in alternating turns (a noisy neighbour hits
    all alike): a unary level and batch calls per target and turn, every server's
    memory sampled throughout; then the open-loop levels on the first target."""
    n = config["batch"]
    servers = {
        target.name: ServerProcess(
            data_dir,
            target.database.url,
            name=f"totpd-growth-{target.name}-{len(target.pool)}",
            processes=config["processes"],
        )
        for target in targets
    }
    levels: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
    calls: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
    bulk: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
    first = targets[0]
    counters = {target.name: db_counters.table_counters(target.database) for target in targets}
    try:
        for server in servers.values():
            server.start()
        pids = {name: server_pids(server) for name, server in servers.items()}
        idle_kb = {name: {pid: status_kb(pid, "VmRSS") for pid in pids[name]} for name in pids}
        samplers = {name: RssSampler(pids[name]) for name in pids}
        with ExitStack() as stack:
            for sampler in samplers.values():
                stack.enter_context(sampler.running())
            for turn in range(config["turns"]):
                for target in targets:
                    server = servers[target.name]
                    wal = db_counters.wal_bytes(target.database)
                    level = unary.run_level(
                        server,
                        target.pool,
                        config["concurrency"],
                        config["seconds"],
                        max_rate=6000.0,
                        database_cpu=functools.partial(database_cpu_seconds, target.database),
                    )
                    wal_after = db_counters.wal_bytes(target.database)
                    level["wal_bytes"] = None if wal is None else (wal_after or 0) - wal
                    levels[target.name].append(level)
                    count = config["repeat"] + (turn == 0)
                    figures = _batch_calls(server, target.database, target.pool, n, count)
                    calls[target.name] += figures[1:] if turn == 0 else figures  # warm-up
                    bulk[target.name].append(
                        _bulk_updates(target.database, target.pool, n, config["repeat"], turn == 0)
                    )
        opened = [
            unary.run_open_level(
                servers[first.name],
                first.pool,
                rate,
                config["seconds"],
                config["max_outstanding"],
                database_cpu=functools.partial(database_cpu_seconds, first.database),
            )
            for rate in config["open_rates"]
        ]
        hwm_kb = {name: {pid: status_kb(pid, "VmHWM") for pid in pids[name]} for name in pids}
    finally:
        for server in servers.values():
            server.stop()
    time.sleep(1.5)  # the stopped servers' backends have flushed their statistics
    tables = {
        target.name: db_counters.table_delta(
            counters[target.name], db_counters.table_counters(target.database)
        )
        for target in targets
    }
    out: dict[str, dict[str, Any]] = {
        name: {
            "unary": _unary_summary(levels[name]),
            "batch": _batch_summary(calls[name], n),
            "bulk": _bulk_summary(bulk[name]),
            "memory": {
                "idle_rss_kb": idle_kb[name],
                "peak_rss_kb": samplers[name].peak_kb,
                "hwm_kb": hwm_kb[name],
            },
            "unary_open": [],
            "table": tables[name],
        }
        for name in servers
    }
    out[first.name]["unary_open"] = opened
    return out


def _unary_summary(levels: list[dict[str, Any]]) -> dict[str, Any]:
    def per_call(level: dict[str, Any], total: float | None, scale: float = 1e6) -> float | None:
        return None if total is None else scale * total / max(1, level["requests"])

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
        "wal_bytes_per_call": _median_or_none(
            [
                None if lv["wal_bytes"] is None else lv["wal_bytes"] / max(1, lv["requests"])
                for lv in levels
            ]
        ),
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
        "errors": [call["error"] for call in calls if call["error"]],
        "wal_bytes_per_item": None
        if any(call["wal_bytes"] is None for call in calls)
        else sum(call["wal_bytes"] for call in calls) / items,
    }


def _bulk_summary(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """Rate from the median statement of all turns; the database's CPU per row."""
    times = [seconds for turn in turns for seconds in turn["times_s"]]
    cpu = [turn["database_cpu_s"] for turn in turns]
    rows = sum(turn["rows_with_warm_up"] for turn in turns)
    return {
        "call_ms": 1000 * statistics.median(times),
        "rate": turns[0]["batch"] / statistics.median(times),
        "database_cpu_us": None if None in cpu else 1e6 * sum(cpu) / rows,
        "updated_fraction": statistics.fmean(turn["updated_fraction"] for turn in turns),
    }


def _median_or_none(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


# --- the whole run -------------------------------------------------------------


def run(
    name: str,
    sizes: list[int],
    config: dict[str, Any],
    workers: int,
    reference: bool = True,
    partial: Path | None = None,
) -> dict[str, Any]:
    """Grow one throwaway database through `sizes`, measuring at each; with `reference`,
    beside a second database that stays at the smallest size."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"totpd-growth-{name}-"))
    opener = sqlite_database(data_dir) if name == "sqlite" else postgres_database()
    derived = DerivedFactors(os.urandom(32))
    keyring_path = data_dir / "totpd.key"
    sizes = sorted(sizes)
    fill = config.get("load_fillfactor")
    try:
        with opener as database:
            set_postgres(database, config.get("pg_settings") or [])
            keyring = make_keyring(data_dir)
            targets = [Target("grown", database, GrowthPool(derived, 0))]
            smallest = reference_database(database, data_dir) if reference else None
            if smallest is not None:
                _log(f"{name}: the reference database, {sizes[0]:,} factors")
                bulk_seed.grow(smallest, keyring_path, derived, sizes[0], workers, fill)
                bulk_seed.check_sample(smallest, keyring, derived, sizes[0])
                targets.append(Target("reference", smallest, GrowthPool(derived, sizes[0])))
            rows = []
            for size in sizes:
                _log(f"{name}: growing to {size:,} factors")
                seeded = bulk_seed.grow(database, keyring_path, derived, size, workers, fill)
                checked = bulk_seed.check_sample(database, keyring, derived, size)
                if config.get("prewarm"):
                    for target in targets:
                        prewarm(target.database)
                targets[0].pool.size = size
                _log(f"{name}: {size:,} factors (seeded in {seeded['seconds']:.0f} s); measuring")
                row: dict[str, Any] = {
                    "factors": size,
                    "seed": seeded,
                    "sample_opened": checked,
                    "table_bytes": table_bytes(database),
                    "loadavg_before": os.getloadavg(),
                    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                measured = measure_size(targets, data_dir, config)
                row.update(measured.pop("grown"))
                row["reference"] = measured.get("reference")
                row["vs_reference"] = None if smallest is None else ratios(row["reference"], row)
                row["bulk_vs_reference"] = (
                    None if smallest is None else ratios(row["reference"], row, BASELINES)
                )
                row["loadavg_after"] = os.getloadavg()
                rows.append(row)
                if partial is not None:  # a later size may fail: keep what is measured
                    report.write_json({"database": name, "config": config, "sizes": rows}, partial)
            settings = sqlite_settings if database.name == "sqlite" else postgres_settings
            return {
                "database": name,
                "settings": settings(database),
                "config": config,
                "reference_factors": None if smallest is None else sizes[0],
                "sizes": rows,
                "growth": ratios(rows[0], rows[-1]),
                "growth_vs_reference": rows[-1]["vs_reference"],
                "bulk_growth": ratios(rows[0], rows[-1], BASELINES),
                "bulk_growth_vs_reference": rows[-1]["bulk_vs_reference"],
                "calibration": rows[0]["vs_reference"],
                "goal": GOAL,
            }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def set_postgres(database: Database, settings: list[str]) -> None:
    """ALTER SYSTEM SET each `name=value` on the throwaway server, then reload, or restart
    it when a setting needs that (shared_buffers): `pg_ctl restart` keeps its options."""
    if not settings:
        return
    if database.source != "throwaway" or database.data_dir is None:
        raise ValueError("--pg-set changes only the benchmark's own throwaway server")
    with database.connect_raw() as connection:
        connection.autocommit = True
        restart = False
        for setting in settings:
            name, _, value = setting.partition("=")
            if not name.isidentifier() or not value:
                raise ValueError(f"--pg-set wants name=value, not {setting!r}")
            connection.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            context = connection.execute(
                "SELECT context FROM pg_settings WHERE name = %s", (name,)
            ).fetchone()
            restart = restart or (context is not None and context[0] == "postmaster")
        connection.execute("SELECT pg_reload_conf()")
    if restart:
        from tests.pg_server import _bin_dir

        runas = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        pg_ctl = [*runas, str(_bin_dir() / "pg_ctl"), "-D", str(database.data_dir)]
        log = str(database.data_dir.parent / "log")  # the server must not hold our pipes
        subprocess.run([*pg_ctl, "-l", log, "restart", "-m", "fast", "-w", "-t", "120"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=180)  # fmt: skip
        pid_file = database.data_dir / "postmaster.pid"
        database.pg_pid = int(pid_file.read_text().split("\n", 1)[0])
    time.sleep(1)  # the reload reaches every process


def prewarm(database: Database) -> None:
    """Load the factors table and its indexes into shared_buffers (pg_prewarm), as a
    long-running server would hold them when they fit."""
    with database.connect_raw() as connection:
        connection.autocommit = True
        connection.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        connection.execute(
            "SELECT pg_prewarm(c.oid) FROM pg_class c WHERE c.oid = 'factors'::regclass"
            " OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'factors'::regclass)"
        )


def reference_database(database: Database, data_dir: Path) -> Database | None:
    """A second, empty database beside `database`: a SQLite file of its own, or a
    database in the same throwaway PostgreSQL server (None for an external one)."""
    if database.sqlite_path is not None:
        path = data_dir / "reference" / "totpd.sqlite3"
        path.parent.mkdir()
        return Database("sqlite", f"sqlite:///{path}", sqlite_path=path)
    if database.source != "throwaway":
        return None
    with database.connect_raw() as connection:
        connection.autocommit = True
        connection.execute("CREATE DATABASE totpd_reference")
    url = make_url(database.url).set(database="totpd_reference")
    return Database(
        "postgresql",
        url.render_as_string(hide_password=False),
        pg_pid=database.pg_pid,
        source=database.source,
        data_dir=database.data_dir,
    )


def table_bytes(database: Database) -> int:
    """The factors table with its indexes (PostgreSQL), or the whole file (SQLite)."""
    if database.sqlite_path is not None:
        return sum(
            path.stat().st_size for path in database.sqlite_path.parent.glob("totpd.sqlite3*")
        )
    with database.connect_raw() as connection:
        return int(connection.execute("SELECT pg_total_relation_size('factors')").fetchone()[0])


def _log(message: str) -> None:
    print(f"[growth {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service.growth")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--sizes", help="comma-separated factor counts (default: per database)")
    for key in ("turns", "concurrency", "batch", "repeat", "max_outstanding"):
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=DEFAULTS[key])
    parser.add_argument("--seconds", type=float, default=DEFAULTS["seconds"])
    parser.add_argument("--processes", default=DEFAULTS["processes"])
    parser.add_argument("--open-loop-rate", type=float, action="append", default=[])
    parser.add_argument(
        "--pg-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="PostgreSQL: a reloadable server setting for this run (throwaway server only)",
    )
    parser.add_argument(
        "--prewarm",
        action="store_true",
        help="PostgreSQL: pg_prewarm the factors table and its indexes before each size",
    )
    parser.add_argument("--seed-workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--load-fillfactor",
        type=int,
        help="PostgreSQL: the loaded pages filled to this percentage (50: as if each row had"
        " been updated once and vacuumed); default: packed, as COPY leaves them",
    )
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else SIZES[args.db]
    config = {key: getattr(args, key) for key in DEFAULTS if key != "open_rates"}
    config["open_rates"] = args.open_loop_rate
    config["pg_settings"] = args.pg_set
    config["prewarm"] = args.prewarm
    partial = None if args.out is None else args.out.with_suffix(".partial.json")
    figures = run(args.db, sizes, config, args.seed_workers, partial=partial)
    return report.print_and_save(table(figures), figures, args.out)


if __name__ == "__main__":
    sys.exit(main())
