"""BatchVerify end to end, and the database's own bulk UPDATE and the service's own SQL
for the same rows; rates are rows per second from the median call time. Also the
command line and per-database run the BatchVerify tools share (`tool_parser`,
`run_tool`: batch_stages.py, critical_path.py).

The figures: benchmarks/README.md, "BatchVerify against the database".
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from benchmarks.service import bulk_seed, report
from benchmarks.service.fixtures import Database, FactorPool, measure_on_seeded
from benchmarks.service.servers import cpu_seconds
from totpd import otp
from totpd.calls import DEFAULT_TENANT
from totpd.config import load_settings
from totpd.domain import FactorState
from totpd.store import CandidateFactor, FactorWrite, open_engine
from totpd.store.round_sql import bulk_round_sql
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

MAX_MESSAGE = 64 * 1024 * 1024
# A tool's measurement of one seeded database, and the table it prints of the figures.
Measure = Callable[[Database, Path, FactorPool, argparse.Namespace], dict[str, Any]]
Table = Callable[[str, dict[str, Any]], list[str]]


def tool_parser(module: str, description: str | None) -> argparse.ArgumentParser:
    """A BatchVerify tool's command line: the databases, the items per call, the
    seeded factors, where to save the figures; the tool adds its own."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--items", type=int, default=10_000, help="items per call")
    parser.add_argument("--factors", type=int, default=100_000, help="seeded factors")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument(
        "--load-fillfactor",
        type=int,
        metavar="PERCENT",
        help="PostgreSQL: rewrite the seeded factors table with its pages this full (as"
        " a served, vacuumed table has room on them; default: packed)",
    )
    return parser


def run_tool(
    args: argparse.Namespace, measure: Measure, table: Table, databases: Sequence[str]
) -> int:
    """`measure` on a fresh seeded database for each --db (else `databases`), on the
    C core's path `totpd serve` runs; each table printed, the figures saved to --out."""
    otp.use_cpu_path(load_settings().cpu_path)
    figures: dict[str, Any] = {}
    lines: list[str] = []

    def measured(database: Database, data_dir: Path, pool: FactorPool) -> dict[str, Any]:
        fill = _table_fill(args, database.name)
        if fill is not None:
            bulk_seed.refill(database, fill)
        return measure(database, data_dir, pool, args)

    for name in args.db or databases:
        figures[name] = measure_on_seeded(name, args.factors, "batch", measured)
        fill = figures[name]["load_fillfactor"] = _table_fill(args, name)
        lines += table(name, figures[name])
        if fill is not None:
            lines.append(f"   the factors table's pages {fill}% full (--load-fillfactor)")
    return report.print_and_save(lines, figures, args.out)


def _table_fill(args: argparse.Namespace, database: str) -> int | None:
    """How full --load-fillfactor rewrites the seeded table (PostgreSQL only), or None."""
    return args.load_fillfactor if database == "postgresql" else None


def channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )


def batch_request(pool: FactorPool, pairs: list[tuple[int, int]]) -> pb.BatchVerifyRequest:
    return pb.BatchVerifyRequest(
        items=[
            pb.BatchVerifyItem(account_id=pool.account(index), code=pool.code(index, step))
            for index, step in pairs
        ]
    )


def summarize(n: int, times: list[float], **extra: Any) -> dict[str, Any]:
    median = statistics.median(times)
    return {
        "batch": n,
        "calls": len(times),
        "median_s": median,
        "min_s": min(times),
        "max_s": max(times),
        "rate": n / median,
        "times_s": times,
        **extra,
    }


def timed_call(
    stub: pb_grpc.TotpServiceStub, pool: FactorPool, n: int, server_pid: int | None
) -> tuple[float, float, pb.BatchVerifyResponse]:
    """One BatchVerify of n fresh valid codes: its wall time, the server's CPU
    seconds over it (0 without `server_pid`) and its response."""
    request = batch_request(pool, pool.take(n))
    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    started = time.perf_counter()
    response = stub.BatchVerify(request, timeout=600)
    elapsed = time.perf_counter() - started
    cpu_after = cpu_seconds(server_pid) if server_pid else 0.0
    return elapsed, cpu_after - cpu_before, response


def count_valid(response: pb.BatchVerifyResponse, other: dict[str, int]) -> int:
    """The response's VALID results; every other result or error counted in `other`."""
    valid = 0
    for result in response.results:
        key: str
        if result.WhichOneof("result") == "outcome":
            if result.outcome.result == factor_pb2.VERIFY_RESULT_VALID:
                valid += 1
                continue
            key = factor_pb2.VerifyResult.Name(result.outcome.result)
        else:
            key = str(result.error.reason or "ERROR")
        other[key] = other.get(key, 0) + 1
    return valid


def run_service(
    address: str,
    pool: FactorPool,
    n: int,
    repeat: int,
    server_pid: int | None = None,
    *,
    warmup: int = 1,
) -> dict[str, Any]:
    """Median wall time of `repeat` BatchVerify calls of n fresh valid codes (after
    `warmup` calls)."""
    stub = pb_grpc.TotpServiceStub(channel(address))
    times: list[float] = []
    cpu: list[float] = []
    valid = 0
    other: dict[str, int] = {}
    for call in range(repeat + warmup):
        elapsed, spent, response = timed_call(stub, pool, n, server_pid)
        if call < warmup:
            continue  # first-use costs (statement compilation, pool connect)
        times.append(elapsed)
        cpu.append(spent)
        valid += count_valid(response, other)
    return summarize(
        n,
        times,
        valid_fraction=valid / (n * repeat),
        not_valid=other,
        server_cpu_median_s=statistics.median(cpu) if server_pid else None,
        server_cpu_s=cpu if server_pid else None,
    )


# --- the database on its own -------------------------------------------------


def _placeholders(database: Database, casts: tuple[str, ...], rows: int) -> str:
    if database.name == "sqlite":
        one = "(" + ", ".join("?" for _ in casts) + ")"
    else:
        one = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    return ", ".join([one] * rows)


def _p(database: Database) -> str:
    return "?" if database.name == "sqlite" else "%s"


# SQLite: the JSON rows in a subquery and no RETURNING, the driver counting the
# rows changed (as the store's own SQLite writes do: round_sql.write_many).
COUNTED = "json-counted"


def forms(database: Database) -> tuple[str, ...]:
    """The ways to send the rows: a VALUES list, or one JSON array parameter
    (PostgreSQL reads it as json or as jsonb; SQLite 3.40 has no jsonb), and on
    SQLite the JSON form without RETURNING (`COUNTED`)."""
    if database.name == "sqlite":
        return ("values", "json", COUNTED)
    return ("values", "json", "jsonb")


def consume_sql(database: Database, rows: int, form: str = "values") -> str:
    """The bulk conditional UPDATE, its rows in one of `forms`."""
    p = _p(database)
    if form == COUNTED:
        # Numbered: the parameters stay in the other forms' order (rows, time, state).
        return (
            "UPDATE factors SET last_used_step = used.step, failed_attempts = 0,"
            " blocked_until = 0, last_used_at = ?2 FROM (SELECT value ->> 0 AS factor_id,"
            " CAST(value ->> 1 AS INTEGER) AS step FROM json_each(?1)) AS used"
            " WHERE factors.id = used.factor_id AND factors.state = ?3"
            " AND factors.last_used_step < used.step"
        )
    if form == "values":
        used = "used(factor_id, step) AS (VALUES " + _placeholders(
            database, ("varchar", "bigint"), rows
        )
    elif database.name == "sqlite":
        used = (
            "used AS (SELECT value ->> 0 AS factor_id, CAST(value ->> 1 AS INTEGER) AS step"
            " FROM json_each(?)"
        )
    else:
        used = (
            "used AS (SELECT value ->> 0 AS factor_id, (value ->> 1)::bigint AS step"
            f" FROM {form}_array_elements(%s::{form})"
        )
    return (
        f"WITH {used}) UPDATE factors SET last_used_step = used.step, failed_attempts = 0,"
        f" blocked_until = 0, last_used_at = {p} FROM used"
        f" WHERE factors.id = used.factor_id AND factors.state = {p}"
        " AND factors.last_used_step < used.step RETURNING factors.id"
    )


def _consume(
    database: Database, pool: FactorPool, pairs: list[tuple[int, int]], form: str
) -> tuple[str, list[Any]]:
    """The bulk UPDATE of `pairs`' rows (`consume_sql`) and its parameters."""
    params = [*_consume_params(pool, pairs, form), int(time.time()), "active"]
    return consume_sql(database, len(pairs), form), params


def _consume_params(pool: FactorPool, pairs: list[tuple[int, int]], form: str) -> list[Any]:
    if form != "values":
        return [json.dumps([[pool.factor(index), step] for index, step in pairs])]
    params: list[Any] = []
    for index, step in pairs:
        params += [pool.factor(index), step]
    return params


def _transaction(
    connection: Any, database: Database, statements: list[tuple[str, Any]]
) -> list[int]:
    """Run the statements in one transaction; rows returned (or changed) by each.

    SQLite begins IMMEDIATE (its write lock, taken up front as the service's
    writes do); psycopg begins implicitly on the first statement.
    """
    cursor = connection.cursor()
    if database.name == "sqlite":
        cursor.execute("BEGIN IMMEDIATE")
    counts = []
    for sql, params in statements:
        cursor.execute(sql, params)
        # Rows returned, or (a write that returns none) the rows it changed.
        counts.append(max(len(cursor.fetchall()), cursor.rowcount))
    if database.name == "sqlite":
        cursor.execute("COMMIT")
    else:
        connection.commit()
    cursor.close()
    return counts


def run_database(
    database: Database,
    pool: FactorPool,
    n: int,
    repeat: int,
    *,
    form: str = "values",
    warmup: int = 1,
) -> dict[str, Any]:
    """Median time for n fresh rows of the bulk UPDATE transaction, rows sent in `form`.

    Statement text and parameters are built before the timer.
    """
    connection = database.connect_raw()
    times: list[float] = []
    updated = 0
    try:
        for call in range(repeat + warmup):
            consume = _consume(database, pool, pool.take(n), form)
            started = time.perf_counter()
            (rows_updated,) = _transaction(connection, database, [consume])
            elapsed = time.perf_counter() - started
            if call < warmup:
                continue
            times.append(elapsed)
            updated += rows_updated
    finally:
        connection.close()
    return summarize(n, times, form=form, updated_fraction=updated / (n * repeat))


def run_database_halves(
    database: Database, pool: FactorPool, n: int, repeat: int, *, warmup: int = 1
) -> dict[str, Any]:
    """Median time for n fresh rows of the bulk UPDATE in two halves at once, each
    on a connection of its own, in a transaction of its own.

    The database's own work spread over two connections, as BatchVerify's
    parts spread theirs (server/totpd/service/lanes.py): context for the
    ratio, whose target is against the one-statement UPDATE (`run_database`).
    PostgreSQL only (SQLite's second writer would only queue), its rows as
    the store sends them (jsonb).
    """
    form = "jsonb"
    connections = [database.connect_raw() for _ in range(2)]
    times: list[float] = []
    updated = 0
    try:
        with ThreadPoolExecutor(2) as threads:
            for call in range(repeat + warmup):
                pairs = pool.take(n)
                halves = [pairs[: n // 2], pairs[n // 2 :]]
                statements = [_consume(database, pool, half, form) for half in halves]
                started = time.perf_counter()
                counts = list(
                    threads.map(
                        lambda connection, statement: _transaction(
                            connection, database, [statement]
                        )[0],
                        connections,
                        statements,
                    )
                )
                elapsed = time.perf_counter() - started
                if call < warmup:
                    continue
                times.append(elapsed)
                updated += sum(counts)
    finally:
        for connection in connections:
            connection.close()
    return summarize(n, times, form=form, updated_fraction=updated / (n * repeat))


def run_service_sql(
    database: Database, pool: FactorPool, n: int, repeat: int, *, warmup: int = 1
) -> dict[str, Any]:
    """Median time for n fresh rows of the service's own two statements, raw.

    The statements are the store's (`bulk_round_sql`): the bulk read of the
    accounts' active factors (no lock), then, in one transaction, the
    conditional bulk write of each consumed step on the state just read, and
    COMMIT. Only the database's work is timed: the read's and the write's
    wall times are added, and the write's JSON rows are built between them,
    off the clock.
    """
    # Here, not at the top: the breakdown's child imports this module, also
    # when it measures a server copy from before this seam (an A/B).
    from totpd.store.round_writes import bulk_read_values, bulk_write_values

    engine = open_engine(database.url)  # for its dialect only: nothing is run on it
    read, write = bulk_round_sql(engine.dialect, FactorState.ACTIVE)
    engine.dispose()
    connection = database.connect_raw()
    postgres = database.name == "postgresql"
    times: list[float] = []
    read_rows = 0
    updated = 0
    try:
        for call in range(repeat + warmup):
            pairs = pool.take(n)
            steps = {pool.factor(index): step for index, step in pairs}
            now = int(time.time())
            accounts = [pool.account(index) for index, _ in pairs]
            if postgres:
                connection.autocommit = True  # the service reads outside a transaction
            read_values = bulk_read_values(
                database.name, accounts, now=now, tenant=DEFAULT_TENANT, state=FactorState.ACTIVE
            )
            params = read.parameters(read_values)
            reading, rows = _timed_read(connection, read.sql, params)
            writes = _consumed_steps(rows, steps)
            if postgres:
                connection.autocommit = False  # the write's transaction, as the store's
            values = bulk_write_values(
                database.name, writes, now=now, tenant=DEFAULT_TENANT, state=FactorState.ACTIVE
            )
            write_sql = (write.sql, write.parameters(values))
            started = time.perf_counter()
            (written,) = _transaction(connection, database, [write_sql])
            elapsed = reading + time.perf_counter() - started
            if call < warmup:
                continue
            times.append(elapsed)
            read_rows += len(writes)
            updated += written
    finally:
        connection.close()
    return summarize(
        n, times, read_fraction=read_rows / (n * repeat), updated_fraction=updated / (n * repeat)
    )


def _timed_read(connection: Any, sql: str, params: Any) -> tuple[float, list[Any]]:
    """The read's wall time and its rows."""
    cursor = connection.cursor()
    started = time.perf_counter()
    cursor.execute(sql, params)
    rows = cursor.fetchall()
    reading = time.perf_counter() - started
    cursor.close()
    return reading, rows


def _consumed_steps(rows: Sequence[Any], steps: dict[str, int]) -> list[FactorWrite]:
    """The consumed step of each factor, on the state as read."""
    return list(
        FactorWrite(
            factor_id=f.factor_id,
            failed_attempts=0,
            blocked_until=0,
            last_used_step=steps[f.factor_id],
            consumed=1,
            seen_failed_attempts=f.failed_attempts,
            seen_blocked_until=f.blocked_until,
            seen_last_used_step=f.last_used_step,
        )
        for f in map(CandidateFactor._make, rows)
        if f.factor_id in steps
    )
