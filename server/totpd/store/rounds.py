"""Verification rounds in the database: read the candidate factors (with their
account's row), write the outcome under one all-or-nothing condition.

Optimistic first (no lock on the read; the conditional write applies to every
row or none), locked after a conflict; no write commits after the call's
deadline. ARCHITECTURE.md ("A round in the database") says why; the statements
are in round_sql.py, bound to a round's writes in round_writes.py, and run on the
DB-API cursor (dbapi.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

from sqlalchemy import Engine

from totpd.calls import DEFAULT_TENANT
from totpd.domain import FactorState
from totpd.store import account_sql, audit, audit_sql, deadline, round_sql, round_writes
from totpd.store.dbapi import (
    CompiledStatement,
    RawConnection,
    deadline_on_database_clock,
    forget_clock_offset,
)
from totpd.store.errors import RoundAbortedError
from totpd.store.requests import Completion, complete_statement, complete_values
from totpd.store.round_records import AccountWrite, AttemptRequest, CandidateFactor, FactorWrite

# A locked SQLite round's counted write, undone if it touched other than its rows.
_SAVEPOINT = CompiledStatement("SAVEPOINT locked_write", {}, ())
_RELEASE = CompiledStatement("RELEASE locked_write", {}, ())
_ROLLBACK_TO = CompiledStatement("ROLLBACK TO locked_write", {}, ())

# Positions in a read row (round_sql.READ_COLUMNS are CandidateFactor's fields).
_ID, _ACCOUNT, _DIGITS, _CIPHERTEXT = (
    CandidateFactor._fields.index(name)
    for name in ("factor_id", "account_id", "digits", "secret_ciphertext")
)


class Attempts:
    """The reads and writes of verification rounds on one engine."""

    def __init__(self, engine: Engine, writer: AbstractContextManager[object]) -> None:
        self._engine = engine
        self._dialect = engine.dialect
        self._writer = writer  # queues SQLite's writers (see database.writer_queue)
        self._shares = self._dialect.name == "postgresql"  # see one_connection

    @property
    def parallel_rounds(self) -> bool:
        """Whether a large round gains from running as parts, several at a time
        (service/lanes.py): on PostgreSQL, whose backends run each connection's
        statements in processes of their own. SQLite runs them in this
        process, one writer at a time: parts measured no faster there, for 14%
        more CPU (benchmarks/NOTES.md); and in memory its pool gives each
        thread a database of its own."""
        return self._dialect.name == "postgresql"

    @deadline.bounded
    def read(
        self,
        requests: Sequence[AttemptRequest],
        *,
        state: FactorState,
        now: int,
        tenant: str = DEFAULT_TENANT,
    ) -> list[CandidateFactor]:
        """Read, without locking, the factors each request may be checked against."""
        with self._connection(autocommit=True) as connection:
            return _read(connection, requests, state, now, tenant, lock=False)

    @deadline.bounded
    def write_if_unchanged(
        self,
        writes: Sequence[FactorWrite],
        *,
        state: FactorState,
        now: int,
        activate: bool = True,
        accounts: Sequence[AccountWrite] = (),
        tenant: str = DEFAULT_TENANT,
        events: Sequence[audit.RoundEvents] = (),
        completion: Completion | None = None,
    ) -> bool:
        """Store every write, each only where its factor (or account) is as it was read.

        All or nothing: False (nothing written) if any factor or account
        changed since the read. `activate`: a step won on a pending factor
        confirms it (see `_write`). Accounts are written before factors, the
        order a locked round locks them in. `events`: the audit events of the
        round's verdicts, one group per call the round decides for, appended in
        the same transaction (all or nothing too).
        `completion`: the request record of the call's result, completed in the
        same transaction (even when nothing else is written), so a verdict never
        commits without it. DeadlineExceededError if the deadline passed first:
        nothing was written.
        """
        write = round_writes.round_statements(
            self._dialect.name, writes, state, now, activate, accounts, tenant, events, completion
        )
        if not write:
            return True
        alone = isinstance(write, tuple)  # one statement: atomic on its own
        with self._writer, self._connection(autocommit=alone) as connection:
            if isinstance(write, tuple):
                return _write_alone(connection, write)
            return _write_in_transaction(connection, write)

    @contextmanager
    def one_connection(self) -> Iterator[None]:
        """Within the block, `read` and `write_if_unchanged` share one pooled
        connection, taken at the first statement and returned at the end.

        PostgreSQL only: a checkout and its return (the pool's events and
        reset) cost about as much client CPU as a statement. On SQLite a writer
        must not wait for the writer queue holding a connection (the queue's
        holder may be waiting for one): each takes its own there. Not around a
        locked round, which takes a connection of its own.
        """
        if not self._shares:
            yield
            return
        held = _Held(self._engine)
        token = _HELD.set(held)
        try:
            yield
        finally:
            _HELD.reset(token)
            if held.connection is not None:
                held.connection.__exit__(None, None, None)

    @contextmanager
    def _connection(self, *, autocommit: bool) -> Iterator[RawConnection]:
        """A pooled connection: the block's own, or the one `one_connection` keeps."""
        held = _HELD.get()
        if held is None or held.engine is not self._engine:
            with RawConnection(self._engine, autocommit=autocommit) as connection:
                yield connection
        elif held.connection is None:
            held.connection = RawConnection(self._engine, autocommit=autocommit).__enter__()
            yield held.connection
        else:
            held.connection.set_autocommit(autocommit)
            yield held.connection

    @contextmanager
    def locked(self) -> Iterator[LockedRound]:
        """One transaction that locks what it reads until it writes and commits.

        It commits only while the call's deadline holds (DeadlineExceededError).
        """
        with (
            deadline.CUT_AT_DEADLINE,
            self._writer,
            RawConnection(self._engine, autocommit=False) as connection,
        ):
            connection.begin()
            yield LockedRound(connection)
            connection.commit()


class _Held:
    """The connection a round's read and write share (`Attempts.one_connection`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.connection: RawConnection | None = None


_HELD: ContextVar[_Held | None] = ContextVar("totpd_store_held_connection", default=None)


class LockedRound:
    """A round under locks: `read` (locking), decide, `write` once."""

    def __init__(self, connection: RawConnection) -> None:
        self._connection = connection

    def read(
        self,
        requests: Sequence[AttemptRequest],
        *,
        state: FactorState,
        now: int,
        tenant: str = DEFAULT_TENANT,
    ) -> list[CandidateFactor]:
        """Lock and read the candidate factors (blocked or not: the caller decides).

        On PostgreSQL the accounts' rows are locked first, in account order,
        then the factors: every writer takes accounts before factors, so they
        cannot deadlock on each other. A missing row is inserted first, with a
        full budget (what a missing row means): a row that does not exist
        cannot be locked, and a round that held a factor while it inserted the
        account deadlocked with a failure inserting the same account first.
        """
        if self._connection.dialect.name == "postgresql":
            accounts = sorted({request.account_id for request in requests})
            values: dict[str, object] = {"p_keys": round_writes.round_keys(accounts, tenant)}
            self._connection.run(account_sql.insert_missing_accounts(), values)
            self._connection.run(account_sql.lock_accounts(), values)
        return _read(self._connection, requests, state, now, tenant, lock=True)

    def write(
        self,
        writes: Sequence[FactorWrite],
        *,
        state: FactorState,
        now: int,
        activate: bool = True,
        accounts: Sequence[AccountWrite] = (),
        tenant: str = DEFAULT_TENANT,
    ) -> set[str]:
        """Store every write in one conditional UPDATE; returns the factors written.

        Under the lock every write applies; the conditions stay as a second
        line, and a consumed step whose factor is missing was not won. An
        account write that does not apply (a missing row, which the read could
        not lock, inserted meanwhile) aborts the round (`RoundAbortedError`) to be
        decided again: its failures must not go uncounted.
        """
        dialect = self._connection.dialect.name
        for step in round_writes.account_statements(dialect, accounts, tenant):
            if not _run_step(self._connection, step):
                raise RoundAbortedError(
                    "an account row changed under the round's lock",
                    Exception("account changed under lock"),
                )
        if not writes:
            return set()
        if len(writes) > 1 and not self._connection.postgres:
            return self._counted_write(writes, state, now, activate, tenant)
        statement, values = round_writes.write_statement(
            dialect, writes, state, now, tenant, activate
        )
        return {factor_id for (factor_id,) in self._connection.run(statement, values)}

    def _counted_write(
        self,
        writes: Sequence[FactorWrite],
        state: FactorState,
        now: int,
        activate: bool,
        tenant: str,
    ) -> set[str]:
        """SQLite, many factors: the write counted, its rows not returned (as
        `_rows_in_one_step` reads them, for the same reason), in a savepoint.
        Should a condition not hold (under the lock none should), it is undone
        and run again returning the factors written."""
        counted, values = round_writes.write_statement(
            "sqlite", writes, state, now, tenant, activate, ids=False
        )
        self._connection.run_sql(_SAVEPOINT)
        if round_writes.Counted(counted, values, len(writes)).run(self._connection):
            self._connection.run_sql(_RELEASE)
            return {write.factor_id for write in writes}
        self._connection.run_sql(_ROLLBACK_TO)
        self._connection.run_sql(_RELEASE)
        returning, values = round_writes.write_statement(
            "sqlite", writes, state, now, tenant, activate
        )
        return {factor_id for (factor_id,) in self._connection.run(returning, values)}

    def complete(self, completion: Completion) -> None:
        """Complete the call's request record in this round's transaction (as
        `Attempts.write_if_unchanged` does); a claim taken over keeps its call's."""
        self._connection.run(complete_statement(), complete_values(completion))

    def set_drift(self, factor_id: str, *, step: int, drift: int, tenant: str) -> None:
        """Store a factor's drift (Resync), where this round consumed `step`; a
        factor not so aborts the round (`RoundAbortedError`): nothing is kept."""
        values: dict[str, object] = {
            "p_factor": factor_id,
            "p_tenant": tenant,
            "p_step": step,
            "p_drift": drift,
        }
        if len(self._connection.run(round_sql.set_drift(), values)) != 1:
            raise RoundAbortedError(
                "the factor changed under the round's lock", Exception("factor changed under lock")
            )

    def record(self, events: Sequence[audit.RoundEvents]) -> None:
        """Append the round's audit events (one group per call), committed with its
        writes or not at all."""
        for step in audit_sql.statements(self._connection.dialect.name, events):
            _run_step(self._connection, step)


def _read(
    connection: RawConnection,
    requests: Sequence[AttemptRequest],
    state: FactorState,
    now: int,
    tenant: str,
    *,
    lock: bool,
) -> list[CandidateFactor]:
    """The factors of each request's account in `state` with its number of digits
    (only `factor_id` if given; pending factors only until they expire).

    At most one request per account (a round holds one item per account).
    Each account's factors come in id order.
    """
    dialect = connection.dialect.name
    make = CandidateFactor._make
    if len(requests) == 1:
        (request,) = requests
        statement = round_sql.read_one(dialect, state, request.factor_id is not None, lock)
        values: dict[str, object] = {
            "p_now": now,
            "p_tenant": tenant,
            "p_account": request.account_id,
            "p_digits": request.digits,
            "p_factor": request.factor_id,
        }
        # A row without its secret was erased: nothing to compare against.
        return [
            make(row) for row in connection.run(statement, values) if row[_CIPHERTEXT] is not None
        ]
    # The bulk read selects by account only, one JSON array of ids, and the
    # digits and factor are matched here: joining a JSON list of (account,
    # digits, factor) rows in SQL and sorting the result cost SQLite 50% more
    # for 10,000 rows (PostgreSQL 15%).
    wanted = {request.account_id: request for request in requests}
    if len(wanted) != len(requests):
        raise ValueError("a round reads at most one request per account")
    values = round_writes.bulk_read_values(dialect, wanted, now=now, tenant=tenant, state=state)
    postgres = connection.postgres
    if lock and not postgres:
        rows: Sequence[Any] = _rows_in_one_step(connection, state, values)
    else:
        rows = connection.run(round_sql.read_many(dialect, state, lock), values)
    found: list[CandidateFactor] = []
    accounts: set[str] = set()
    for row in rows:
        request = wanted[row[_ACCOUNT]]
        if (
            row[_DIGITS] == request.digits
            and (request.factor_id is None or row[_ID] == request.factor_id)
            and row[_CIPHERTEXT] is not None
        ):
            found.append(make(row))
            accounts.add(row[_ACCOUNT])
    if len(accounts) < len(found) and not (lock and postgres):  # an account with several
        found.sort()  # factors: by id (PostgreSQL's locking read is ordered by the database)
    return found


def _rows_in_one_step(
    connection: RawConnection, state: FactorState, values: dict[str, object]
) -> list[list[Any]]:
    """SQLite under its write lock: the bulk read's rows from one row of JSON.

    SQLite's driver gives up the GIL for every row it steps to and must win it
    back; beside a busy thread of the process each can wait a switch interval,
    and under the write lock every writer of the database waits too. One row
    is one step. Unlocked reads keep the rows, which cost less alone
    (benchmarks/NOTES.md, "SQLite's driver and the GIL").
    """
    ((text,),) = connection.run(round_sql.read_many_in_one_row(state), values)
    rows: list[list[Any]] = json.loads(text)
    for row in rows:
        for index in round_sql.BLOB_COLUMNS:
            row[index] = bytes.fromhex(row[index]) if row[index] else None
    return rows


def _write_alone(connection: RawConnection, statement: round_writes.Statement) -> bool:
    """One statement's write outside a transaction, bounded by the deadline in its condition."""
    one, values, _ = statement
    values["p_deadline"] = deadline_on_database_clock(connection)
    if len(connection.run(one, values)) == 1:
        return True
    # Changed meanwhile, or too late by the database's clock: the
    # clock's offset is measured again before the next write.
    forget_clock_offset(connection)
    deadline.check()
    return False


def _run_step(connection: RawConnection, step: round_writes.Step) -> bool:
    """Run one step of a round's write; False if it touched other than its rows."""
    if isinstance(step, audit_sql.CopiedEvents | round_writes.EachRow | round_writes.Counted):
        return step.run(connection)
    statement, values, expected = step
    rows = connection.run(statement, values)
    return expected is None or len(rows) == expected


def _write_in_transaction(connection: RawConnection, steps: list[round_writes.Step]) -> bool:
    """Every step in one transaction, or none if one touches other than its rows."""
    connection.begin()
    try:
        if _pipelines(connection, steps):
            written = _run_pipelined(connection, steps)
        else:
            written = all(_run_step(connection, step) for step in steps)
    except RoundAbortedError:
        written = False
    if not written:
        connection.rollback()
        return False
    connection.commit()
    return True


def _pipelines(connection: RawConnection, steps: list[round_writes.Step]) -> bool:
    """Whether a write's steps go in one pipeline: on PostgreSQL, two or more
    (one alone, a round of successes, measured no faster: benchmarks/NOTES.md)
    and no COPY, which cannot ride a pipeline."""
    return (
        connection.postgres
        and len(steps) > 1
        and not any(isinstance(step, audit_sql.CopiedEvents) for step in steps)
    )


def _run_pipelined(connection: RawConnection, steps: list[round_writes.Step]) -> bool:
    """PostgreSQL: every step sent before any answer is read, one round trip for
    them all; False if one touched other than its rows. A step after one that
    touched too few still runs: the rollback undoes it."""
    sent: list[_Sent] = []
    with connection.pipeline() as pipeline:
        for step in steps:
            if isinstance(step, round_writes.EachRow):
                cursor = pipeline.send_each(step.statement, step.rows)
                sent.append(_Sent(cursor, len(step.rows), counted=True))
            else:
                assert not isinstance(step, audit_sql.CopiedEvents | round_writes.Counted)
                statement, values, expected = step
                sent.append(_Sent(pipeline.send(statement, values), expected, counted=False))
    return all(one.touched_its_rows() for one in sent)


class _Sent(NamedTuple):
    """A pipelined step's cursor, and the rows it must touch (None: any)."""

    cursor: Any
    expected: int | None
    counted: bool  # run once per row, each touching at most one: the driver's count

    def touched_its_rows(self) -> bool:
        if self.expected is None:
            return True
        if self.counted:
            return int(self.cursor.rowcount) == self.expected
        return len(self.cursor.fetchall()) == self.expected
