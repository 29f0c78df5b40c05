"""BatchVerify end to end, and the database's own bulk UPDATE for the same rows.

Three figures per (database, batch size), all from the same run:

- ``service``: `BatchVerify` through a real `totpd serve` process over loopback,
  every item a fresh valid code (replay protection and attempt accounting on:
  the server counts the attempt, compares, and consumes the step).
- ``db_consume``: the one conditional bulk UPDATE that replay protection cannot
  avoid, ``UPDATE factors ... FROM (VALUES (id, step), ...) WHERE id = ... AND
  state = 'active' AND last_used_step < step RETURNING id``, run directly with
  sqlite3 / psycopg on fresh rows, one statement and one transaction.
- ``db_reserve_consume``: the two statements the service's design issues (the
  attempt-counting UPDATE ... RETURNING the sealed secrets, then the consume
  UPDATE), raw SQL, as the service runs them (two transactions). The floor for
  the current design without any Python around it.

Rates are rows (verifications) per second from the median call time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import grpc

from benchmarks.service.fixtures import Database, FactorPool, cpu_seconds
from totpd.service.policy import Policy
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc as pb_grpc

MAX_MESSAGE = 64 * 1024 * 1024


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
        **extra,
    }


def run_service(
    address: str, pool: FactorPool, n: int, repeat: int, server_pid: int | None = None
) -> dict[str, Any]:
    """Median wall time of `repeat` BatchVerify calls of n fresh valid codes (after 1 warm-up)."""
    stub = pb_grpc.TotpServiceStub(channel(address))
    times: list[float] = []
    cpu: list[float] = []
    valid = 0
    other: dict[str, int] = {}
    for call in range(repeat + 1):
        request = batch_request(pool, pool.take(n))
        cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
        started = time.perf_counter()
        response = stub.BatchVerify(request, timeout=600)
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds(server_pid) if server_pid else 0.0
        if call == 0:
            continue  # warm-up: first-use costs (statement compilation, pool connect)
        times.append(elapsed)
        cpu.append(cpu_after - cpu_before)
        for result in response.results:
            if result.WhichOneof("result") == "outcome":
                if result.outcome.result == factor_pb2.VERIFY_RESULT_VALID:
                    valid += 1
                    continue
                key = factor_pb2.VerifyResult.Name(result.outcome.result)
            else:
                key = result.error.reason or "ERROR"
            other[key] = other.get(key, 0) + 1
    return summarize(
        n,
        times,
        valid_fraction=valid / (n * repeat),
        not_valid=other,
        server_cpu_median_s=statistics.median(cpu) if server_pid else None,
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


def consume_sql(database: Database, rows: int) -> str:
    p = _p(database)
    return (
        "WITH used(factor_id, step) AS (VALUES "
        + _placeholders(database, ("varchar", "bigint"), rows)
        + f") UPDATE factors SET last_used_step = used.step, failed_attempts = 0,"
        f" blocked_until = 0, last_used_at = {p} FROM used"
        f" WHERE factors.id = used.factor_id AND factors.state = {p}"
        " AND factors.last_used_step < used.step RETURNING factors.id"
    )


def reserve_sql(database: Database, rows: int, now: int, policy: Policy) -> str:
    """The attempt-counting UPDATE as the store issues it (default policy, literal times)."""
    p = _p(database)
    waits = [policy.wait_after(n) for n in range(policy.lock_after_failures + 1)]
    last = len(waits) - 1
    failures = "(factors.failed_attempts + 1)"
    cases = [f"WHEN {failures} >= {last} THEN {now + waits[last]}"]
    cases += [f"WHEN {failures} = {n} THEN {now + w}" for n, w in enumerate(waits[:last]) if w > 0]
    return (
        "WITH wanted(account_id, digits, factor_id) AS (VALUES "
        + _placeholders(database, ("varchar", "integer", "varchar"), rows)
        + f") UPDATE factors SET failed_attempts = {failures},"
        f" blocked_until = CASE {' '.join(cases)} ELSE factors.blocked_until END"
        " FROM wanted WHERE factors.account_id = wanted.account_id"
        " AND factors.digits = wanted.digits"
        " AND (wanted.factor_id = '' OR factors.id = wanted.factor_id)"
        f" AND factors.state = {p} AND factors.blocked_until <= {p}"
        " RETURNING factors.id, factors.account_id, factors.algorithm, factors.digits,"
        " factors.period_seconds, factors.secret_key_id, factors.secret_nonce,"
        " factors.secret_ciphertext, factors.last_used_step, factors.failed_attempts"
    )


def _transaction(connection: Any, database: Database, sql: str, params: list[Any]) -> int:
    cursor = connection.cursor()
    if database.name == "sqlite":
        cursor.execute("BEGIN")
    cursor.execute(sql, params)
    rows = len(cursor.fetchall())
    if database.name == "sqlite":
        cursor.execute("COMMIT")
    else:
        connection.commit()
    cursor.close()
    return rows


def run_database(
    database: Database, pool: FactorPool, n: int, repeat: int, *, with_reserve: bool
) -> dict[str, Any]:
    """Median time of the raw bulk UPDATE(s) for n fresh rows; statement text built untimed."""
    connection = database.connect_raw()
    policy = Policy()
    times: list[float] = []
    updated = 0
    try:
        for call in range(repeat + 1):
            pairs = pool.take(n)
            now = int(time.time())
            work: list[Callable[[], int]] = []
            if with_reserve:
                reserve_params: list[Any] = []
                for index, _ in pairs:
                    reserve_params += [pool.account(index), 6, ""]
                reserve_params += ["active", now]
                sql_r = reserve_sql(database, n, now, policy)
                work.append(
                    lambda s=sql_r, p=reserve_params: _transaction(connection, database, s, p)
                )
            consume_params: list[Any] = []
            for index, step in pairs:
                consume_params += [pool.factor(index), step]
            consume_params += [now, "active"]
            sql_c = consume_sql(database, n)
            work.append(lambda s=sql_c, p=consume_params: _transaction(connection, database, s, p))
            started = time.perf_counter()
            counts = [job() for job in work]
            elapsed = time.perf_counter() - started
            if call == 0:
                continue
            times.append(elapsed)
            updated += counts[-1]
    finally:
        connection.close()
    return summarize(n, times, updated_fraction=updated / (n * repeat))
