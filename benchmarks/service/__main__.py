"""Run the service benchmarks: ``python -m benchmarks.service [--quick] [--db sqlite] ...``.

Per database (SQLite file, throwaway PostgreSQL): seed the factors, start
`totpd serve` in its default configuration (one process; `--processes auto` for one
worker per core), then measure BatchVerify
against the database's own bulk UPDATE at each batch size, break one large call
down by stage, and load unary Verify at several concurrency levels (closed
loop), then at fixed rates (open loop, --open-loop-rate: each turn followed by one of
the floor's no-op at the same rate, the host's own tail). Then the wire-shape
figures. Last per database, the audit trail's cost: BatchVerify and unary
Verify with audit on and off (benchmarks/service/audit_cost.py), and the gRPC floor
(benchmarks/service/floor.py: totpd's unary Verify beside a no-op Verify on the same
grpc settings; last, as its wrong codes leave failures counted) with the stages of a
unary Verify call in-process (benchmarks/service/unary_stages.py). With --growth,
then the growth run per database (benchmarks/service/growth.py: 100k -> 1M ->
10M factors on PostgreSQL, to 1M on SQLite; tens of minutes), its figures in
service.json and its table printed with the rest. The report ends with issue 16's
targets, each met or missed (benchmarks/service/targets.py), the C core's too when
--core-json and --core-regression-json name the same run's core.json and
core_regression.json (benchmarks/run.sh does).

PostgreSQL is a throwaway server (tests/pg_server.py) with PostgreSQL's durable
defaults (fsync, synchronous_commit, full_page_writes on), or the disposable
database named by TOTPD_BENCH_POSTGRES_URL (its tables are dropped).
Writes <out>/service.json, <out>/service.png and <out>/service_profile_<db>.txt.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import totpd
from benchmarks.service import (
    audit_cost,
    batch,
    breakdown,
    bulk_seed,
    floor,
    growth,
    growth_report,
    report,
    targets,
    unary,
    unary_stages,
    wire,
)
from benchmarks.service.fixtures import (
    ROOT,
    Database,
    FactorPool,
    postgres_database,
    postgres_settings,
    seed_database,
    sqlite_database,
    sqlite_settings,
)
from benchmarks.service.process_memory import server_pids, status_kb
from benchmarks.service.servers import ServerProcess, database_cpu_seconds
from totpd import otp
from totpd.config import load_settings

FULL: dict[str, Any] = {
    "factors": 100_000,
    "batches": [100, 1_000, 10_000],
    "repeat": 5,
    "breakdown_repeat": 3,
    "levels": [1, 4, 16, 64],
    "seconds": 8.0,
    # Open-loop turns at each rate: a tail is one stall away from any figure on a
    # shared machine, so the level reports its median turn (and every turn).
    "open_turns": 3,
    "wire_items": 10_000,
    "floor": {"seconds": 4.0, "concurrency": 8, "turns": 5},
    "unary_breakdown_calls": 2_000,
}
# PostgreSQL's context row: the factors table rewritten with its pages this full.
HALF_FULL = 50
QUICK: dict[str, Any] = {
    "factors": 20_000,
    "batches": [100, 1_000],
    "repeat": 2,
    "breakdown_repeat": 1,
    "levels": [1, 8],
    "seconds": 2.0,
    "open_turns": 1,
    "wire_items": 10_000,
    "floor": {"seconds": 1.0, "concurrency": 8, "turns": 1},
    "unary_breakdown_calls": 40,
}


def _log(message: str) -> None:
    print(f"[service-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_database(
    name: str,
    config: dict[str, Any],
    out: Path,
    unary_on: bool,
    client: str = "go",
    open_rates: list[float] | None = None,
    max_outstanding: int = 1000,
    audit_on_off: bool = True,
    floor_on: bool = True,
) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"totpd-bench-{name}-"))
    opener = sqlite_database(data_dir) if name == "sqlite" else postgres_database()
    server: ServerProcess | None = None
    try:
        with opener as database:
            settings = _database_settings(database)
            _log(f"{name}: seeding {config['factors']:,} factors")
            seeded = seed_database(database, data_dir, config["factors"])
            pool = FactorPool(seeded)
            server = ServerProcess(data_dir, database.url, processes=config["processes"])
            server.start()
            _log(f"{name}: {report.processes(server.workers)} at {server.address}")
            rows = _batch_rows(database, server, pool, config)
            # Each process's high-water mark, with the largest batches run.
            peak_kb = max(status_kb(pid, "VmHWM") for pid in server_pids(server))
            n = max(config["batches"])
            _log(f"{name}: stage breakdown of a {n}-item call")
            parts = breakdown.run_breakdown(database, data_dir, pool, n, config["breakdown_repeat"])
            (out / f"service_profile_{name}.txt").write_text(parts.pop("profile_top"))
            closed, opened = [], []
            if unary_on:
                closed = _unary_levels(database, server, pool, config, client)
                if client == "go":
                    opened = _open_levels(
                        database, server, pool, config, open_rates or [], max_outstanding, data_dir
                    )
            audit = None
            if audit_on_off:
                _log(f"{name}: audit on vs off")
                audit = audit_cost.measure(database, data_dir, pool, config, client)
            floor_figures = unary_parts = None
            if floor_on and unary_on and client == "go":
                _log(f"{name}: the gRPC floor")
                floor_figures = floor.measure(database, data_dir, pool, config["floor"])
                _log(f"{name}: stage breakdown of unary Verify")
                unary_parts = unary_stages.run_unary_breakdown(
                    database, data_dir, pool, config["unary_breakdown_calls"]
                )
            # Last: it rewrites the table every measurement above ran on.
            half_full = _half_full_batch_row(database, server, pool, config)
            return {
                "audit_cost": audit,
                "batch_half_full": half_full,
                "settings": settings,
                "factors": config["factors"],
                "seed_s": seeded.seconds,
                "server_processes": server.workers,
                "batch": rows,
                "breakdown": parts,
                "unary": closed,
                "unary_open": opened,
                "floor": floor_figures,
                "unary_breakdown": unary_parts,
                "peak_process_kb": peak_kb,
                "pool_waited_s": pool.waited_seconds,
            }
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _database_settings(database: Database) -> dict[str, Any]:
    if database.name == "sqlite":
        return sqlite_settings(database)
    settings = postgres_settings(database)
    _log(
        f"{database.name}: {settings['source']} server {settings['server_version']}, "
        + " ".join(f"{k}={v}" for k, v in settings["settings"].items())
    )
    return settings


def _batch_rows(
    database: Database, server: ServerProcess, pool: FactorPool, config: dict[str, Any]
) -> list[dict[str, Any]]:
    """BatchVerify through the server against the database's own bulk UPDATE, per size."""
    rows = []
    repeat = config["repeat"]
    for n in config["batches"]:
        _log(f"{database.name}: BatchVerify x{n}")
        service = batch.run_service(server.address, pool, n, repeat, server.pid)
        forms = {
            form: batch.run_database(database, pool, n, repeat, form=form)
            for form in batch.forms(database)
        }
        consume = max(forms.values(), key=lambda figure: figure["rate"])
        own_sql = batch.run_service_sql(database, pool, n, repeat)
        rows.append(
            {
                "batch": n,
                "service": service,
                "db_consume": consume,
                "db_consume_by_form": forms,
                "db_service_sql": own_sql,
                "ratio_vs_consume": service["rate"] / consume["rate"],
                "ratio_vs_service_sql": service["rate"] / own_sql["rate"],
                "ratio_service_sql_vs_consume": own_sql["rate"] / consume["rate"],
            }
        )
    return rows


def _half_full_batch_row(
    database: Database, server: ServerProcess, pool: FactorPool, config: dict[str, Any]
) -> dict[str, Any] | None:
    """PostgreSQL: the largest batch again, on the factors table rewritten with its
    pages half full, as a served table's are once vacuumed. The bulk UPDATE is then
    HOT, without the packed table's index entry per row: context beside the target,
    which stays on the packed table so that runs compare (benchmarks/README.md)."""
    if database.name != "postgresql":
        return None
    n = max(config["batches"])
    _log(f"{database.name}: BatchVerify x{n}, the table's pages {HALF_FULL}% full")
    bulk_seed.refill(database, HALF_FULL)
    (row,) = _batch_rows(database, server, pool, {**config, "batches": [n]})
    return row


def _unary_levels(
    database: Database,
    server: ServerProcess,
    pool: FactorPool,
    config: dict[str, Any],
    client: str,
) -> list[dict[str, Any]]:
    levels = []
    for concurrency in config["levels"]:
        _log(f"{database.name}: unary Verify, {concurrency} in flight ({client} client)")
        levels.append(
            unary.run_level(
                server,
                pool,
                concurrency,
                config["seconds"],
                max_rate=6000.0,
                client=client,
                database_cpu=lambda: database_cpu_seconds(database),
            )
        )
    return levels


def _open_levels(
    database: Database,
    server: ServerProcess,
    pool: FactorPool,
    config: dict[str, Any],
    rates: list[float],
    max_outstanding: int,
    data_dir: Path,
) -> list[dict[str, Any]]:
    """Each rate in turns; after each of totpd's turns, the floor's no-op behind the
    interceptor chain at the same rate (`noop_turns`): the tail that the host, gRPC
    and the chain make on their own in the same minutes, beside totpd's."""
    if not rates:
        return []
    noop = floor.NoopServerProcess(data_dir, "open-noop", with_interceptors=True)
    noop.start()
    try:
        levels = []
        for rate in rates:
            turns, noop_turns = [], []
            for turn in range(1, config["open_turns"] + 1):
                _log(f"{database.name}: unary Verify, open loop at {rate:,.0f} req/s, turn {turn}")
                turns.append(
                    unary.run_open_level(
                        server,
                        pool,
                        rate,
                        config["seconds"],
                        max_outstanding,
                        database_cpu=lambda: database_cpu_seconds(database),
                    )
                )
                _log(
                    f"{database.name}: the no-op behind the interceptors at that rate, turn {turn}"
                )
                noop_turns.append(
                    unary.run_open_level(
                        noop, pool, rate, config["seconds"], max_outstanding, wrong_codes=True
                    )
                )
            level = unary.median_turn(turns)
            level["noop_turns"] = unary.turn_summaries(noop_turns)
            levels.append(level)
        return levels
    finally:
        noop.stop()


def _git_state() -> str:
    """The commit measured, and whether server/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "server"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + (" (server/ modified)" if dirty else "")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--db",
        action="append",
        choices=["sqlite", "postgresql"],
        help="database(s) to run (default: both)",
    )
    parser.add_argument("--factors", type=int, help="override the number of seeded factors")
    parser.add_argument("--no-unary", action="store_true", help="skip the unary load runs")
    parser.add_argument(
        "--python-client",
        action="store_true",
        help="drive the unary load with the Python grpc.aio client instead of the Go load"
        " generator (benchmarks/service/loadgen; needs `go`)",
    )
    parser.add_argument(
        "--open-loop-rate",
        action="append",
        type=float,
        metavar="REQ_PER_S",
        help="after the closed-loop levels, offer unary Verify at this fixed rate (open loop,"
        " Go client only; repeat for several rates; default: 2000, the issue's target;"
        " 0: none)",
    )
    parser.add_argument(
        "--open-loop-max-outstanding",
        type=int,
        default=1000,
        metavar="N",
        help="open loop: at most N calls in flight; a request due beyond that is dropped"
        " and counted (default: 1000)",
    )
    parser.add_argument(
        "--processes",
        metavar="N|auto",
        default="1",
        help="`totpd serve --processes` for the suite's server (default 1: totpd's default"
        " configuration, which issue 16's targets name)",
    )
    parser.add_argument("--no-wire", action="store_true", help="skip the wire-shape figures")
    parser.add_argument(
        "--no-audit-cost", action="store_true", help="skip the audit on/off comparison"
    )
    parser.add_argument(
        "--growth",
        action="store_true",
        help="also the growth run per database (100k -> 1M -> 10M factors on PostgreSQL; with"
        " --quick 20k -> 60k), its open loop at the --open-loop-rate levels",
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the unary Verify against the no-op floor"
    )
    parser.add_argument(
        "--core-json",
        type=Path,
        help="the same run's core.json (benchmarks/run.sh): its targets join the targets table",
    )
    parser.add_argument(
        "--core-regression-json",
        type=Path,
        help="the same run's core_regression.json (benchmarks/run.sh): the core's verdict",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    return parser


def _meta(args: argparse.Namespace, config: dict[str, Any], client: str) -> dict[str, Any]:
    """What the run measured with: sizes, machine, code, clients."""
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "config": config,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_path": otp.cpu_path(),
        "totpd": str(Path(totpd.__file__).parent),
        "git": _git_state(),
        "unary_client": None if args.no_unary else client,
        "unary_open_rates": [] if args.no_unary else args.open_loop_rate,
        "unary_open_max_outstanding": args.open_loop_max_outstanding,
    }


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # The in-process figures run on the path the `totpd serve` processes use.
    otp.use_cpu_path(load_settings().cpu_path)
    config = dict(QUICK if args.quick else FULL)
    if args.factors:
        config["factors"] = args.factors
    config["processes"] = args.processes
    args.out.mkdir(parents=True, exist_ok=True)
    client = "python-aio" if args.python_client else "go"
    open_rates = [rate for rate in args.open_loop_rate or [2000.0] if rate != 0]
    if any(not 0 < rate < float("inf") for rate in open_rates):
        parser.error("--open-loop-rate must be a positive number of requests per second (0: none)")
    if args.open_loop_max_outstanding < 1:
        parser.error("--open-loop-max-outstanding must be >= 1")
    if open_rates and client != "go" and not args.no_unary:
        _log("the open-loop levels need the Go load generator: skipped with --python-client")
        open_rates = []
    if client == "go" and not args.no_unary:
        _log("building the Go load generator (benchmarks/service/loadgen)")
        try:
            unary.build_loadgen()  # fail before the seeding if `go` is missing or the build breaks
        except RuntimeError as error:
            print(f"python -m benchmarks.service: {error}", file=sys.stderr)
            return 2
    args.open_loop_rate = open_rates
    results: dict[str, Any] = {"meta": _meta(args, config, client), "databases": {}}
    for name in args.db or ["sqlite", "postgresql"]:
        figures = run_database(
            name,
            config,
            args.out,
            not args.no_unary,
            client,
            open_rates,
            args.open_loop_max_outstanding,
            not args.no_audit_cost,
            not args.no_floor,
        )
        # What the database's figures were measured with (PostgreSQL: durability settings).
        results["meta"][name] = figures.pop("settings")
        results["databases"][name] = figures
    if not args.no_wire:
        _log("wire shape")
        results["wire"] = wire.measure(config["wire_items"], 3 if args.quick else 7)
    if args.growth:
        results["growth"] = {
            name: _growth(
                name, args.quick, open_rates if client == "go" else [], args.out, args.processes
            )
            for name in args.db or ["sqlite", "postgresql"]
        }
    core = targets.read_json(args.core_json)
    evaluated = targets.evaluate(results, core, targets.read_json(args.core_regression_json))
    results["targets"] = [target._asdict() for target in evaluated]
    return _write(results, args.out)


# --quick's growth: two small sizes, short levels, 1,000-item batches.
_QUICK_GROWTH = {"turns": 1, "seconds": 2.0, "batch": 1_000, "repeat": 1}
_QUICK_GROWTH_SIZES = [20_000, 60_000]


def _growth(
    name: str, quick: bool, open_rates: list[float], out: Path, processes: str
) -> dict[str, Any]:
    """One database grown through the growth benchmark's sizes (growth.run), served
    as the suite's server is (`processes`)."""
    _log(f"{name}: growth")
    config = {
        **growth.DEFAULTS,
        **(_QUICK_GROWTH if quick else {}),
        "open_rates": open_rates,
        "processes": processes,
    }
    sizes = _QUICK_GROWTH_SIZES if quick else growth.SIZES[name]
    partial = out / f"service_growth_{name}.partial.json"
    return growth.run(name, sizes, config, os.cpu_count() or 2, partial=partial)


def _write(results: dict[str, Any], out: Path) -> int:
    print(report.table(results))
    for name, figures in results["databases"].items():
        if figures.get("audit_cost"):
            print("\n".join(audit_cost.table(name, figures["audit_cost"])))
        if figures.get("floor"):
            print("\n".join(floor.table(name, figures["floor"])))
        if figures.get("unary_breakdown"):
            parts = figures["unary_breakdown"]
            print("\n".join(unary_stages.table(name, parts, figures.get("floor"))))
    for figures in results.get("growth", {}).values():
        print("\n".join(growth_report.table(figures)))
    print("\n".join(targets.table([targets.Target(**t) for t in results.get("targets", [])])))
    json_path = out / "service.json"
    report.write_json(results, json_path)
    png_path = out / "service.png"
    plotted = report.plot(results, png_path)
    print(f"\nwrote {json_path}" + (f" and {png_path}" if plotted else " (no matplotlib: no PNG)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
