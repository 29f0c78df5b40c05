"""The measurements behind docs/capacity.md, reproducible on one machine.

    .venv/bin/python -m benchmarks.capacity [--factors 100000] [--calls 3000]
                                            [--batch 1000] [--batches 10] [--json FILE]

A durable PostgreSQL (deploy/local-cluster's, PostgreSQL's own defaults: fsync,
synchronous_commit and full_page_writes on) with pg_stat_statements, seeded
with N active factors (benchmarks/service/fixtures.py), one `totpd serve`, and
three phases driven from 8 client threads over loopback: unary Verify with valid
codes, unary Verify with wrong codes, BatchVerify with valid codes. Per phase:

- CPU seconds per verification of the server process and of PostgreSQL (the
  postmaster and all its children), from /proc over the whole phase: CPU time is
  what the machine's other load disturbs least (wall-clock rates are not
  reported: this machine is shared);
- the statements PostgreSQL ran per verification (pg_stat_statements, by kind),
  the rows they wrote, the commits that had to reach the disk (write statements
  in autocommit and COMMITs), and the WAL bytes (the insert LSN's advance);
- and, once: bytes per factor on PostgreSQL (table, indexes, TOAST) and SQLite
  (file size), after seeding.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import Engine, text

from benchmarks.service.fixtures import Database, FactorPool, make_keyring, seed_factors
from benchmarks.service.servers import ServerProcess, cpu_seconds, database_cpu_seconds
from totpd.store import open_engine
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
CLIENT_THREADS = 8
WRITES = ("UPDATE", "INSERT", "DELETE")


def _local_cluster() -> Any:
    path = ROOT / "deploy" / "local-cluster"
    loader = importlib.machinery.SourceFileLoader("local_cluster", str(path))
    spec = importlib.util.spec_from_loader("local_cluster", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def statement_counts(engine: Engine) -> tuple[Counter[str], Counter[str]]:
    """Calls and rows of every statement since the last reset, by kind (first word)."""
    calls: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    with engine.connect() as connection:
        result = connection.execute(
            text(
                "SELECT query, calls, rows FROM pg_stat_statements"
                " WHERE query NOT ILIKE '%pg_stat_statements%'"
                " AND query NOT ILIKE '%pg_current_wal%'"
            )
        )
        for query, count, affected in result:
            words = query.upper().split()
            # A WITH ... UPDATE (the bulk write) counts as the write it is.
            kind = next((w for w in words if w in WRITES), words[0]) if words else "?"
            calls[kind] += count
            rows[kind] += affected
    return calls, rows


def wal_lsn(engine: Engine) -> int:
    with engine.connect() as connection:
        lsn = connection.execute(text("SELECT pg_current_wal_insert_lsn()")).scalar_one()
    high, low = str(lsn).split("/")
    return (int(high, 16) << 32) + int(low, 16)


def wal_stats(engine: Engine) -> dict[str, int]:
    """pg_stat_wal's counters and the database's commits (read after STATS_SETTLE)."""
    with engine.connect() as connection:
        wal = connection.execute(
            text("SELECT wal_records, wal_fpi, wal_sync FROM pg_stat_wal")
        ).one()
        commits = connection.execute(
            text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        ).scalar_one()
    return {"wal_records": wal[0], "wal_fpi": wal[1], "wal_sync": wal[2], "xact_commit": commits}


# Backends report their WAL and transaction counters at most every 10 s when idle.
STATS_SETTLE = 11.0


def run_phase(
    name: str,
    verifications: int,
    send: Callable[[], None],
    server_pid: int,
    database: Database,
    engine: Engine,
) -> dict[str, Any]:
    time.sleep(STATS_SETTLE)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_stat_statements_reset()"))
        connection.commit()
    counters_before = wal_stats(engine)
    wal_before = wal_lsn(engine)
    server_before = cpu_seconds(server_pid)
    db_before = database_cpu_seconds(database) or 0.0
    started = time.perf_counter()
    send()
    seconds = time.perf_counter() - started
    server_cpu = cpu_seconds(server_pid) - server_before
    db_cpu = (database_cpu_seconds(database) or 0.0) - db_before
    wal_bytes = wal_lsn(engine) - wal_before
    calls, rows = statement_counts(engine)
    time.sleep(STATS_SETTLE)
    counters = {k: v - counters_before[k] for k, v in wal_stats(engine).items()}
    per = 1 / verifications
    return {
        "phase": name,
        "verifications": verifications,
        "wall_seconds": round(seconds, 2),
        "server_cpu_us": round(server_cpu * per * 1e6, 1),
        "database_cpu_us": round(db_cpu * per * 1e6, 1),
        "statements": {kind: round(count * per, 3) for kind, count in sorted(calls.items())},
        "rows_written": round(sum(rows[k] for k in WRITES) * per, 3),
        "wal_bytes": round(wal_bytes * per, 1),
        # Counted over the phase and its settling time (health probes: read-only).
        **{name: round(value * per, 3) for name, value in counters.items()},
    }


def unary_sender(stub: Any, requests: list[pb.VerifyRequest]) -> Callable[[], None]:
    def send() -> None:
        with ThreadPoolExecutor(CLIENT_THREADS) as threads:
            for response in threads.map(lambda r: stub.Verify(r, timeout=30), requests):
                assert response.outcome.result != 0

    return send


def batch_sender(stub: Any, requests: list[pb.BatchVerifyRequest]) -> Callable[[], None]:
    def send() -> None:
        for request in requests:
            stub.BatchVerify(request, timeout=120)

    return send


def sizes(engine: Engine, factors: int) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT pg_total_relation_size('factors'), pg_relation_size('factors'),"
                " pg_indexes_size('factors'), pg_total_relation_size('accounts')"
            )
        ).one()
    total, heap, indexes, accounts = (int(v) for v in row)
    return {
        "factors": factors,
        "postgres_total_bytes_per_factor": round(total / factors, 1),
        "postgres_heap_bytes_per_factor": round(heap / factors, 1),
        "postgres_index_bytes_per_factor": round(indexes / factors, 1),
        "postgres_accounts_table_bytes": accounts,
    }


def sqlite_bytes_per_factor(directory: Path, factors: int) -> float:
    path = directory / "sizes.sqlite3"
    engine = open_engine(f"sqlite:///{path}")
    try:
        seed_factors(engine, make_keyring(directory), factors)
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return round(path.stat().st_size / factors, 1)


def wrong(code: str) -> str:
    return "".join(str((int(c) + 5) % 10) for c in code)


def measure(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    postgres = _local_cluster().Postgres(
        base, settings={"shared_preload_libraries": "pg_stat_statements"}
    )
    postgres.create()
    database = Database("postgresql", postgres.url, pg_pid=postgres.postmaster_pid)
    engine = open_engine(postgres.url)
    try:
        with engine.connect() as connection:
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
            connection.commit()
            version = connection.execute(text("SHOW server_version")).scalar_one()
        data = base / "data"
        data.mkdir()
        seeded = seed_factors(engine, make_keyring(data), args.factors)
        result: dict[str, Any] = {"sizes": sizes(engine, args.factors)}
        result["sizes"]["sqlite_bytes_per_factor"] = sqlite_bytes_per_factor(base, args.factors)
        server = ServerProcess(data, postgres.url)
        address = server.start()
        try:
            result["phases"] = phases(args, seeded, address, server.pid, database, engine)
        finally:
            server.stop()
        with engine.connect() as connection:
            accounts, size = connection.execute(
                text("SELECT count(*), pg_total_relation_size('accounts') FROM accounts")
            ).one()
        result["sizes"]["accounts_after_failures"] = accounts
        result["sizes"]["postgres_bytes_per_account_row"] = round(size / max(1, accounts), 1)
    finally:
        engine.dispose()
        postgres.stop()
    result["machine"] = {
        "cpus": os.cpu_count(),
        "processor": _cpu_model(),
        "python": platform.python_version(),
        "postgres": version,
        "load_average_at_end": os.getloadavg(),
    }
    return result


def phases(
    args: argparse.Namespace,
    seeded: Any,
    address: str,
    server_pid: int,
    database: Database,
    engine: Engine,
) -> list[dict[str, Any]]:
    pool = FactorPool(seeded)
    channel = grpc.insecure_channel(
        address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    )
    stub = pb_grpc.TotpServiceStub(channel)
    # Warm-up: connections in the pool, code paths loaded.
    unary_sender(stub, _valid(pool, 200))()

    def measure(name: str, verifications: int, send: Callable[[], None]) -> dict[str, Any]:
        return run_phase(name, verifications, send, server_pid, database, engine)

    out = []
    valid = _valid(pool, args.calls)
    out.append(measure("unary Verify, valid", len(valid), unary_sender(stub, valid)))
    invalid = _wrong_codes(pool, args.calls)
    out.append(measure("unary Verify, wrong code", len(invalid), unary_sender(stub, invalid)))
    batches = _batches(pool, args.batch, args.batches)
    out.append(
        measure(
            f"BatchVerify x{args.batch}, valid",
            args.batch * args.batches,
            batch_sender(stub, batches),
        )
    )
    channel.close()
    return out


def _wrong_codes(pool: FactorPool, n: int) -> list[pb.VerifyRequest]:
    return [pb.VerifyRequest(account_id=r.account_id, code=wrong(r.code)) for r in _valid(pool, n)]


def _batches(pool: FactorPool, size: int, count: int) -> list[pb.BatchVerifyRequest]:
    return [
        pb.BatchVerifyRequest(
            items=[
                pb.BatchVerifyItem(account_id=r.account_id, code=r.code) for r in _valid(pool, size)
            ]
        )
        for _ in range(count)
    ]


def _valid(pool: FactorPool, n: int) -> list[pb.VerifyRequest]:
    return [
        pb.VerifyRequest(account_id=pool.account(i), code=pool.code(i, step))
        for i, step in pool.take(n)
    ]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--factors", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="totpd-capacity-"))
    try:
        result = measure(args, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    rendered = json.dumps(result, indent=2)
    print(rendered)
    if args.json:
        args.json.write_text(rendered + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
