"""Verification rounds in the database: read the candidate factors, write the outcome.

Each factor is read with its account's row (`accounts`: failure budget,
consecutive failures, lock), and a round writes the accounts it counted on
with its factors, under the same condition: all as read, or nothing.

Several server processes share the database and keep no state in memory, so
every round is decided from a read and stored with one conditional write:

- **Optimistic** (`Attempts.read`, then `Attempts.write_if_unchanged`): the read
  takes no lock. The write is one UPDATE in which every row is conditioned on
  its factor still holding exactly the attempt state it was read with (state,
  failures, block, last used step). It applies to every row, or, if any factor
  changed in between, to none, and the caller decides again under locks. A
  factor whose state did not change gets the decision a locked round would
  have made, so counting before comparing holds and a step is won once.
- **Locked** (`Attempts.locked`): the read locks the factors (`SELECT ... FOR
  UPDATE` in id order on PostgreSQL; SQLite's write lock from `BEGIN
  IMMEDIATE`) until the write commits. Only taken after a conflict: every
  conflict means another attempt on the same factor was stored, and the locked
  retry cannot conflict, so a round finishes. (On PostgreSQL an optimistic
  multi-row write takes its row locks in the plan's order, so it can deadlock
  with a locked round; the database then aborts one of them, `RoundAborted`,
  and it is decided again.)

Why optimistic first: the write lock is then held only for the UPDATE, not
for the decryption and comparison in between, and on PostgreSQL a one-factor
Verify is two round trips (SELECT, UPDATE) instead of four (BEGIN, SELECT FOR
UPDATE, UPDATE, COMMIT).

These statements run compiled once per dialect on the DB-API cursor: for a
one-row verification, SQLAlchemy's per-execution work (cache lookup, events,
parameter and result processing) cost more than the statement itself.

Deadlines (store/deadline.py): no write commits after the call's deadline.
A transaction commits only while the deadline holds (a connection cut at the
deadline leaves it open, and PostgreSQL aborts it). The one-row optimistic
write runs alone, outside a transaction (one round trip, the hot path), so it
carries the deadline in its condition, read on the database's own clock: a
write a hung server executes after it wakes matches no row.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Dialect,
    Engine,
    Float,
    Insert,
    Integer,
    Select,
    String,
    Table,
    Update,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.selectable import CTE
from sqlalchemy.types import TypeEngine

from totpd import deadlines
from totpd.store import deadline
from totpd.store.errors import acquiring, ending
from totpd.store.models import AccountRow, FactorRow

# PostgreSQL's "deadlock detected": a multi-row write (whose row order is the
# plan's) met another round holding rows in the opposite order.
_DEADLOCK_SQLSTATE = "40P01"


class RoundAborted(OperationalError):
    """The database aborted the round's transaction to break a deadlock.

    Nothing of the round was written; it can be decided again. An
    OperationalError, so a caller that gives up answers UNAVAILABLE.
    """


class AttemptRequest(NamedTuple):
    """One code to check against an account's factors with `digits` digits."""

    account_id: str
    digits: int
    factor_id: str | None


class CandidateFactor(NamedTuple):
    """A factor a code may be checked against, as a round read it.

    A flat named tuple in the column order of the read, so a row becomes one
    with a single `_make`: 10,000 of them are built per large batch, and
    keyword construction or nested tuples cost 3x more.
    """

    factor_id: str
    account_id: str
    algorithm: str
    digits: int
    period_seconds: int
    secret_key_id: str
    secret_nonce: bytes
    secret_ciphertext: bytes
    last_used_step: int
    failed_attempts: int
    blocked_until: int
    # The account's row (accounts table), the same on each of its factors;
    # all None when the account has none yet (a full budget, no failures).
    budget_tat: int | None
    consecutive_failures: int | None
    locked_at: int | None


class FactorWrite(NamedTuple):
    """The new attempt state of one factor, and the state it was decided from.

    In the JSON row order of the write. `consumed` is 1 for a won step:
    `last_used_step` is then the new, greater step (and a pending factor
    becomes active); 0 leaves it unchanged. An int, not a bool, because the
    row goes to the database as JSON as it is. The `seen_*` fields are the
    values read: the write applies only where the factor still holds them.
    """

    factor_id: str
    failed_attempts: int
    blocked_until: int
    last_used_step: int
    consumed: int
    seen_failed_attempts: int
    seen_blocked_until: int
    seen_last_used_step: int


class AccountWrite(NamedTuple):
    """The new attempt state of one account, and the state it was decided from.

    In the JSON row order of the write. `seen_*` None: the account had no
    row; it is then inserted, only if still absent. Otherwise the row is
    updated only where it still holds the values read (and is not locked).
    """

    account_id: str
    budget_tat: int
    consecutive_failures: int
    locked_at: int | None
    seen_budget_tat: int | None
    seen_consecutive_failures: int | None


class Attempts:
    """The reads and writes of verification rounds on one engine."""

    def __init__(self, engine: Engine, writer: AbstractContextManager[object]) -> None:
        self._engine = engine
        self._dialect = engine.dialect
        self._writer = writer  # queues SQLite's writers (see database.writer_queue)

    @deadline.bounded
    def read(
        self, requests: Sequence[AttemptRequest], *, state: str, now: int
    ) -> list[CandidateFactor]:
        """Read, without locking, the factors each request may be checked against."""
        with _RawConnection(self._engine, autocommit=True) as connection:
            return _read(connection, requests, state, now, lock=False)

    @deadline.bounded
    def write_if_unchanged(
        self,
        writes: Sequence[FactorWrite],
        *,
        state: str,
        now: int,
        activate: bool = True,
        accounts: Sequence[AccountWrite] = (),
    ) -> bool:
        """Store every write, each only where its factor (or account) is as it was read.

        All or nothing: False (nothing written) if any factor or account
        changed since the read. `activate`: a step won on a pending factor
        confirms it (see `_write`). Accounts are written before factors, the
        order a locked round locks them in.
        DeadlineExceededError if the deadline passed first: nothing was written.
        """
        dialect = self._dialect.name
        statements = _account_statements(dialect, accounts)
        # One factor row and no account row: the statement alone is atomic, and
        # outside a transaction it carries the call's deadline in its condition.
        alone = not statements and len(writes) == 1
        if writes:
            factors = _write_statement(dialect, writes, state, now, activate, alone=alone)
            statements.append((*factors, len(writes)))
        if not statements:
            return True
        with self._writer, _RawConnection(self._engine, autocommit=alone) as connection:
            if alone:  # one row: the statement alone is atomic
                one, values, _ = statements[0]
                values["p_deadline"] = _deadline_on_database_clock(connection)
                if len(connection.run(one, values)) == 1:
                    return True
                # Changed meanwhile, or too late by the database's clock: the
                # clock's offset is measured again before the next write.
                connection.info.pop(_CLOCK_OFFSET, None)
                deadline.check()
                return False
            connection.begin()
            try:
                for statement, values, expected in statements:
                    if len(connection.run(statement, values)) != expected:
                        connection.rollback()
                        return False
            except RoundAborted:
                connection.rollback()
                return False
            connection.commit()
            return True

    @contextmanager
    def locked(self) -> Iterator[LockedRound]:
        """One transaction that locks what it reads until it writes and commits.

        It commits only while the call's deadline holds (DeadlineExceededError).
        """
        with (
            deadline.CUT_AT_DEADLINE,
            self._writer,
            _RawConnection(self._engine, autocommit=False) as connection,
        ):
            connection.begin()
            yield LockedRound(connection)
            connection.commit()


class LockedRound:
    """A round under locks: `read` (locking), decide, `write` once."""

    def __init__(self, connection: _RawConnection) -> None:
        self._connection = connection

    def read(
        self, requests: Sequence[AttemptRequest], *, state: str, now: int
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
            accounts = json.dumps(sorted({request.account_id for request in requests}))
            self._connection.run(_insert_missing_accounts(), {"p_accounts": accounts})
            self._connection.run(_lock_accounts(), {"p_accounts": accounts})
        return _read(self._connection, requests, state, now, lock=True)

    def write(
        self,
        writes: Sequence[FactorWrite],
        *,
        state: str,
        now: int,
        activate: bool = True,
        accounts: Sequence[AccountWrite] = (),
    ) -> set[str]:
        """Store every write in one conditional UPDATE; returns the factors written.

        Under the lock every write applies; the conditions stay as a second
        line, and a consumed step whose factor is missing was not won. An
        account write that does not apply (a missing row, which the read could
        not lock, inserted meanwhile) aborts the round (`RoundAborted`) to be
        decided again: its failures must not go uncounted.
        """
        dialect = self._connection.dialect.name
        for statement, values, expected in _account_statements(dialect, accounts):
            if len(self._connection.run(statement, values)) != expected:
                raise RoundAborted("account write", None, Exception("account changed under lock"))
        if not writes:
            return set()
        statement, values = _write_statement(dialect, writes, state, now, activate, alone=False)
        return {factor_id for (factor_id,) in self._connection.run(statement, values)}


def _read(
    connection: _RawConnection,
    requests: Sequence[AttemptRequest],
    state: str,
    now: int,
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
        statement = _read_one(dialect, state, request.factor_id is not None, lock)
        values: dict[str, object] = {
            "p_now": now,
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
    statement = _read_many(dialect, state, lock)
    rows = connection.run(statement, {"p_now": now, "p_accounts": json.dumps(list(wanted))})
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
    if len(accounts) < len(found) and not lock:  # an account with several factors
        found.sort()  # by id (the locking read is ordered by the database)
    return found


def _write_statement(
    dialect: str,
    writes: Sequence[FactorWrite],
    state: str,
    now: int,
    activate: bool,
    *,
    alone: bool,
) -> tuple[Update, dict[str, object]]:
    """`alone`: the one-row write runs outside a transaction, so it carries the
    call's deadline (``p_deadline``, to be bound by the caller)."""
    if len(writes) == 1:
        (write,) = writes
        return _write_one(dialect, state, activate, alone), {
            "p_now": now,
            "p_factor": write.factor_id,
            "p_failed": write.failed_attempts,
            "p_blocked": write.blocked_until,
            "p_step": write.last_used_step,
            "p_consumed": write.consumed,
            "p_seen_failed": write.seen_failed_attempts,
            "p_seen_blocked": write.seen_blocked_until,
            "p_seen_step": write.seen_last_used_step,
        }
    # On PostgreSQL, sorted by factor id: the order the locked read takes row
    # locks in, so a write planned as a loop over the rows locks in that order
    # too. SQLite locks the whole database (sorting 10k rows cost ~4 ms).
    rows = sorted(writes) if dialect == "postgresql" else writes
    return _write_many(dialect, state, activate), {"p_now": now, "p_rows": json.dumps(rows)}


# -- running the statements ----------------------------------------------------


class CompiledStatement(NamedTuple):
    """A statement's SQL for one dialect, and how to lay out its parameters."""

    sql: str
    defaults: dict[str, object]  # the values bound at build time (literals)
    order: tuple[str, ...] | None  # parameter names by position; None: by name

    def parameters(self, values: dict[str, object]) -> Sequence[object] | dict[str, object]:
        """The DB-API parameters: `values` and the literals, laid out for the driver."""
        merged = {**self.defaults, **values}
        return merged if self.order is None else [merged[name] for name in self.order]


_COMPILED: dict[tuple[int, str], CompiledStatement] = {}
_CURSOR = "totpd.attempts.cursor"  # key of the reusable cursor in a connection's info
_BEGIN_IMMEDIATE = CompiledStatement("BEGIN IMMEDIATE", {}, ())


def compiled(statement: Select[Any] | Update | Insert, dialect: Dialect) -> CompiledStatement:
    """Compile a cached statement once per dialect (the statements live forever)."""
    key = (id(statement), dialect.name)
    found = _COMPILED.get(key)
    if found is None:
        result = statement.compile(dialect=dialect)
        defaults = {name: bind.value for bind, name in result.bind_names.items()}
        order = tuple(result.positiontup or ()) if result.positional else None
        found = _COMPILED[key] = CompiledStatement(result.string, defaults, order)
    return found


def run_compiled(
    dialect: Dialect,
    connection: PoolProxiedConnection,
    statement: CompiledStatement,
    values: dict[str, object],
) -> Sequence[tuple[Any, ...]]:
    """Run the statement on a DB-API cursor of the pooled connection.

    The parameters and columns are plain ints, strings and bytes, which need
    no processing. Driver errors are wrapped as SQLAlchemy's own would be (a
    dropped connection is invalidated, so it leaves the pool), so the status
    mapping sees the same exceptions; the parameters are left out of them.
    """
    parameters = statement.parameters(values)
    dbapi = dialect.loaded_dbapi
    # One cursor per connection, kept with it (`info` lives as long as the
    # DB-API connection): a new psycopg cursor per statement cost ~12 µs.
    cursor = connection.info.get(_CURSOR)
    if cursor is None:
        cursor = connection.info[_CURSOR] = connection.cursor()
    try:
        cursor.execute(statement.sql, parameters)
        return cursor.fetchall()
    except dbapi.Error as error:
        if getattr(error, "sqlstate", None) == _DEADLOCK_SQLSTATE:
            raise RoundAborted(statement.sql, None, error) from error
        lost = dialect.is_disconnect(error, connection.dbapi_connection, cursor)
        if lost:
            connection.invalidate()
        raise DBAPIError.instance(
            statement.sql, None, error, dbapi.Error, connection_invalidated=lost, dialect=dialect
        ) from error


class _RawConnection:
    """A pooled DB-API connection for one round, in autocommit mode or not.

    SQLite's connections are in autocommit mode already (database.py); a
    transaction is an explicit `BEGIN IMMEDIATE`, the write lock up front.
    psycopg's autocommit flag is set for the round and restored before the
    connection goes back to the pool, where the ORM expects transactions.
    """

    def __init__(self, engine: Engine, *, autocommit: bool) -> None:
        self.dialect = engine.dialect
        self._engine = engine
        self._autocommit = autocommit
        self._postgres = engine.dialect.name == "postgresql"

    def __enter__(self) -> _RawConnection:
        # The pool raises the driver's own errors here (SQLAlchemy wraps only
        # statements): made the store's, so an outage is never taken for a bug.
        with acquiring(self.dialect):
            self._connection = self._engine.raw_connection()
        if self._postgres and self._autocommit:
            self._connection.dbapi_connection.autocommit = True  # type: ignore[union-attr]
        return self

    def __exit__(self, *exc_info: object) -> None:
        connection = self._connection
        try:
            dbapi = connection.dbapi_connection
            if self._postgres and self._autocommit and dbapi is not None and not dbapi.closed:
                dbapi.autocommit = False
        finally:
            connection.close()  # back to the pool, which rolls back what was left open

    def run(
        self, statement: Select[Any] | Update | Insert, values: dict[str, object]
    ) -> Sequence[Any]:
        return run_compiled(
            self.dialect, self._connection, compiled(statement, self.dialect), values
        )

    def begin(self) -> None:
        # psycopg begins on the first statement; SQLite needs it said.
        if not self._postgres:
            run_compiled(self.dialect, self._connection, _BEGIN_IMMEDIATE, {})

    @property
    def postgres(self) -> bool:
        return self._postgres

    @property
    def info(self) -> dict[Any, Any]:
        """Kept with the DB-API connection, as long as it lives."""
        return self._connection.info

    def run_sql(self, statement: CompiledStatement) -> Sequence[Any]:
        return run_compiled(self.dialect, self._connection, statement, {})

    def commit(self) -> None:
        deadline.check()  # after its deadline a transaction is rolled back instead
        with ending(self.dialect, self._connection, "COMMIT"):
            self._connection.commit()

    def rollback(self) -> None:
        with ending(self.dialect, self._connection, "ROLLBACK"):
            self._connection.rollback()


# -- statements, built once per shape ------------------------------------------

# The hot statements run on the Core table: the ORM adds nothing to a bulk
# UPDATE ... RETURNING but its per-statement bookkeeping.
_FACTORS: Table = FactorRow.__table__  # type: ignore[assignment]
_ACCOUNTS: Table = AccountRow.__table__  # type: ignore[assignment]
_NOW = bindparam("p_now", type_=BigInteger)

_READ_COLUMNS = (
    _FACTORS.c.id,
    _FACTORS.c.account_id,
    _FACTORS.c.algorithm,
    _FACTORS.c.digits,
    _FACTORS.c.period_seconds,
    _FACTORS.c.secret_key_id,
    _FACTORS.c.secret_nonce,
    _FACTORS.c.secret_ciphertext,
    _FACTORS.c.last_used_step,
    _FACTORS.c.failed_attempts,
    _FACTORS.c.blocked_until,
    _ACCOUNTS.c.budget_tat,
    _ACCOUNTS.c.consecutive_failures,
    _ACCOUNTS.c.locked_at,
)
# CandidateFactor's fields are these columns in this order (a store test checks).
_ID, _ACCOUNT, _DIGITS, _CIPHERTEXT = (
    CandidateFactor._fields.index(name)
    for name in ("factor_id", "account_id", "digits", "secret_ciphertext")
)


def _read_base(state: str, *, ordered: bool = True) -> Select[Any]:
    # The account's row comes with each factor (a primary-key lookup per
    # account): its budget is decided on in the same round.
    with_account = _FACTORS.outerjoin(_ACCOUNTS, _ACCOUNTS.c.account_id == _FACTORS.c.account_id)
    statement = select(*_READ_COLUMNS).select_from(with_account).where(_FACTORS.c.state == state)
    if state == "pending":
        statement = statement.where(_FACTORS.c.expires_at > _NOW)
    # Rows are locked in this order: the same in every round, so no deadlock.
    return statement.order_by(_FACTORS.c.id) if ordered else statement


def _locking(statement: Select[Any], dialect: str, lock: bool) -> Select[Any]:
    # SQLite has no row locks; its locked rounds BEGIN IMMEDIATE instead.
    return statement.with_for_update(of=_FACTORS) if lock and dialect == "postgresql" else statement


@functools.cache
def _read_one(dialect: str, state: str, with_factor: bool, lock: bool) -> Select[Any]:
    """The unary shape: one account (and maybe one factor), no row list."""
    statement = _read_base(state).where(
        _FACTORS.c.account_id == bindparam("p_account"),
        _FACTORS.c.digits == bindparam("p_digits"),
    )
    if with_factor:
        statement = statement.where(_FACTORS.c.id == bindparam("p_factor"))
    return _locking(statement, dialect, lock)


@functools.cache
def _read_many(dialect: str, state: str, lock: bool) -> Select[Any]:
    """The bulk shape: every factor in `state` of the accounts of a round, the
    account ids bound as one JSON array (ordered by id only when locking)."""
    accounts = bindparam("p_accounts", type_=String)
    if dialect == "postgresql":
        elements = func.jsonb_array_elements_text(cast(accounts, JSONB))
    else:
        elements = func.json_each(accounts)
    account_ids = select(elements.table_valued("value").c.value)
    statement = _read_base(state, ordered=lock).where(_FACTORS.c.account_id.in_(account_ids))
    return _locking(statement, dialect, lock)


def bulk_round_sql(dialect: Dialect, state: str) -> tuple[CompiledStatement, CompiledStatement]:
    """The optimistic bulk read and the conditional bulk write, as run.

    For the benchmarks, which time the service's own SQL without the service:
    the read takes ``p_accounts`` (a JSON array of account ids) and ``p_now``;
    the write ``p_rows`` (a JSON array of `FactorWrite` rows, sorted by factor
    id on PostgreSQL) and ``p_now``.
    """
    name = dialect.name
    return compiled(_read_many(name, state, False), dialect), compiled(
        _write_many(name, state, True), dialect
    )


class _WriteColumns(NamedTuple):
    factor_id: ColumnElement[str]
    failed: ColumnElement[int]
    blocked: ColumnElement[int]
    step: ColumnElement[int]
    consumed: ColumnElement[bool]
    seen_failed: ColumnElement[int]
    seen_blocked: ColumnElement[int]
    seen_step: ColumnElement[int]


# -- the deadline on the database's clock --------------------------------------

_CLOCK_OFFSET = "totpd.attempts.clock_offset"  # (offset, measured at), in a connection's info
_CLOCK_OFFSET_TTL = 60.0  # seconds before the offset is measured again
_POSTGRES_CLOCK = CompiledStatement(
    "SELECT extract(epoch FROM clock_timestamp())::float8", {}, None
)


def _deadline_on_database_clock(connection: _RawConnection) -> float:
    """The call's deadline as the database's clock reads it: seconds since the
    epoch (infinity without a deadline); DeadlineExceededError once it passed.

    SQLite runs in this process, on this clock. PostgreSQL's clock may be off
    ours: its offset is measured per connection, with the round trip counted
    against the deadline, so the deadline in SQL falls no later than ours.
    """
    left = deadline.wait_limit(math.inf)
    ends = deadlines.current()
    if ends is None:
        return math.inf
    if not connection.postgres:
        return time.time() + left
    measured = connection.info.get(_CLOCK_OFFSET)
    if measured is None or time.monotonic() - measured[1] > _CLOCK_OFFSET_TTL:
        ((database_now,),) = connection.run_sql(_POSTGRES_CLOCK)
        now = time.monotonic()
        # The database read its clock before we received it: `now` is late,
        # so the offset is low, never high.
        measured = connection.info[_CLOCK_OFFSET] = (float(database_now) - now, now)
    offset: float = measured[0]
    return ends + offset


def _database_now(dialect: str) -> ColumnElement[Any]:
    """The database's clock, in seconds since the epoch, when the row is written."""
    if dialect == "postgresql":
        # clock_timestamp(), not now(): the time of this row's write, not of a
        # statement received before the server stopped.
        return func.extract("epoch", func.clock_timestamp())
    # SQLite's 'now' is read once per statement, in this process.
    return (func.julianday("now") - 2440587.5) * 86400.0


def _write(state: str, new: _WriteColumns, activate: bool) -> Update:
    """UPDATE the factor only where it still holds the attempt state that was read.

    A consumed step must also be newer than the last one (design.md rule 4);
    any other write keeps it. Both follow from the decision; they stay as a
    second line.

    A step won on a pending factor confirms it (active) when `activate`; a
    Disable that proves possession with the pending factor's own code does not,
    so a disable that then fails cannot leave the enrollment it cancels active.
    """
    values: dict[str, Any] = {
        "failed_attempts": new.failed,
        "blocked_until": new.blocked,
        "last_used_step": new.step,
        "last_used_at": case((new.consumed, _NOW), else_=_FACTORS.c.last_used_at),
    }
    if state == "pending" and activate:
        values |= {
            "state": case((new.consumed, "active"), else_=_FACTORS.c.state),
            "confirmed_at": case((new.consumed, _NOW), else_=_FACTORS.c.confirmed_at),
            "expires_at": case((new.consumed, None), else_=_FACTORS.c.expires_at),
        }
    return (
        update(_FACTORS)
        .where(
            _FACTORS.c.id == new.factor_id,
            _FACTORS.c.state == state,
            _FACTORS.c.failed_attempts == new.seen_failed,
            _FACTORS.c.blocked_until == new.seen_blocked,
            _FACTORS.c.last_used_step == new.seen_step,
            or_(
                and_(new.consumed, _FACTORS.c.last_used_step < new.step),
                and_(not_(new.consumed), _FACTORS.c.last_used_step == new.step),
            ),
        )
        .values(values)
        .returning(_FACTORS.c.id)
    )


_WRITE_FIELDS: list[tuple[str, type[TypeEngine[Any]]]] = [
    ("factor_id", String),
    ("failed", Integer),
    ("blocked", BigInteger),
    ("step", BigInteger),
    ("consumed", Integer),
    ("seen_failed", Integer),
    ("seen_blocked", BigInteger),
    ("seen_step", BigInteger),
]


@functools.cache
def _write_one(dialect: str, state: str, activate: bool, alone: bool) -> Update:
    """One factor, bound as plain parameters; `alone`: only until ``p_deadline``."""
    binds = {name: bindparam(f"p_{name}", type_=kind) for name, kind in _WRITE_FIELDS}
    binds["factor_id"] = bindparam("p_factor", type_=String)
    consumed = binds.pop("consumed") == 1
    statement = _write(state, _WriteColumns(consumed=consumed, **binds), activate)
    if alone:
        statement = statement.where(_database_now(dialect) < bindparam("p_deadline", type_=Float))
    return statement


@functools.cache
def _write_many(dialect: str, state: str, activate: bool) -> Update:
    """Many factors, their rows bound as one JSON parameter."""
    new = _json_rows(dialect, "new", _WRITE_FIELDS)
    columns = {name: new.c[name] for name, _ in _WRITE_FIELDS}
    consumed = columns.pop("consumed") == 1
    return _write(state, _WriteColumns(consumed=consumed, **columns), activate).add_cte(new)


def _json_rows(
    dialect: str, name: str, columns: Sequence[tuple[str, type[TypeEngine[Any]]]]
) -> CTE:
    """`WITH name AS (SELECT ... FROM <JSON array of rows>)`, bound as one parameter.

    The SQL is the same for 1 or 10,000 rows, so it is compiled once; a VALUES
    list is compiled anew for every batch (half a second for 10k rows).
    SQLite reads the JSON with json_each, PostgreSQL as JSONB with
    jsonb_array_elements (parsed once, not once per `->>`: a 10k-row write
    15% faster than with json); both name the element `value` and support `->>`.
    """
    rows = bindparam("p_rows", type_=String)
    if dialect == "postgresql":
        elements = func.jsonb_array_elements(cast(rows, JSONB)).table_valued("value")
    else:
        elements = func.json_each(rows).table_valued("value")
    fields = [
        cast(elements.c.value.op("->>")(literal_column(str(index))), kind()).label(column_name)
        for index, (column_name, kind) in enumerate(columns)
    ]
    return select(*fields).select_from(elements).cte(name)


# -- account writes ------------------------------------------------------------

_ACCOUNT_FIELDS: list[tuple[str, type[TypeEngine[Any]]]] = [
    ("account_id", String),
    ("budget_tat", BigInteger),
    ("consecutive_failures", Integer),
    ("locked_at", BigInteger),
    ("seen_budget_tat", BigInteger),
    ("seen_consecutive_failures", Integer),
]
_ACCOUNT_COLUMNS = ("account_id", "budget_tat", "consecutive_failures", "locked_at")
_AccountStatement = tuple[Update | Insert, dict[str, object], int]


def _account_statements(dialect: str, accounts: Sequence[AccountWrite]) -> list[_AccountStatement]:
    """The statements storing `accounts`, each with the rows it must return.

    Rows read as present are updated where still as read; rows read as
    absent are inserted where still absent. On PostgreSQL sorted by account
    id, the order locked rounds lock them in.
    """
    if dialect == "postgresql":
        accounts = sorted(accounts)
    updates = [a for a in accounts if a.seen_budget_tat is not None]
    inserts = [a for a in accounts if a.seen_budget_tat is None]
    statements: list[_AccountStatement] = []
    for rows, many, one in (
        (updates, _account_update_many, _account_update_one),
        (inserts, _account_insert_many, _account_insert_one),
    ):
        if len(rows) == 1:
            values: dict[str, object] = {
                f"p_{name}": value for name, value in rows[0]._asdict().items()
            }
            statements.append((one(dialect), values, 1))
        elif rows:
            statements.append((many(dialect), {"p_rows": json.dumps(rows)}, len(rows)))
    return statements


def _account_update(new: dict[str, ColumnElement[Any]]) -> Update:
    """UPDATE the account only where it still holds the state read and is not locked
    (a locked account is never compared, so nothing is written for it)."""
    return (
        update(_ACCOUNTS)
        .where(
            _ACCOUNTS.c.account_id == new["account_id"],
            _ACCOUNTS.c.budget_tat == new["seen_budget_tat"],
            _ACCOUNTS.c.consecutive_failures == new["seen_consecutive_failures"],
            _ACCOUNTS.c.locked_at.is_(None),
        )
        .values({name: new[name] for name in _ACCOUNT_COLUMNS[1:]})
        .returning(_ACCOUNTS.c.account_id)
    )


@functools.cache
def _account_update_one(dialect: str) -> Update:
    return _account_update(
        {name: bindparam(f"p_{name}", type_=kind) for name, kind in _ACCOUNT_FIELDS}
    )


@functools.cache
def _account_update_many(dialect: str) -> Update:
    new = _json_rows(dialect, "new", _ACCOUNT_FIELDS)
    return _account_update({name: new.c[name] for name, _ in _ACCOUNT_FIELDS}).add_cte(new)


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


@functools.cache
def _account_insert_one(dialect: str) -> Insert:
    """INSERT the account's first row, unless another round inserted it meanwhile."""
    values = {name: bindparam(f"p_{name}", type_=kind) for name, kind in _ACCOUNT_FIELDS[:4]}
    statement = _insert(dialect)(_ACCOUNTS).values(values)
    inserted: Insert = statement.on_conflict_do_nothing(
        index_elements=[_ACCOUNTS.c.account_id]
    ).returning(_ACCOUNTS.c.account_id)
    return inserted


@functools.cache
def _account_insert_many(dialect: str) -> Insert:
    new = _json_rows(dialect, "new", _ACCOUNT_FIELDS)
    # The WHERE resolves SQLite's parsing ambiguity of INSERT ... SELECT ... ON CONFLICT.
    rows = select(*(new.c[name] for name in _ACCOUNT_COLUMNS)).where(true())
    statement = _insert(dialect)(_ACCOUNTS).from_select(list(_ACCOUNT_COLUMNS), rows)
    inserted: Insert = statement.on_conflict_do_nothing(
        index_elements=[_ACCOUNTS.c.account_id]
    ).returning(_ACCOUNTS.c.account_id)
    return inserted


def _round_account_ids() -> Select[Any]:
    """PostgreSQL: the account ids of a round, bound as one JSON array."""
    accounts = bindparam("p_accounts", type_=String)
    return select(
        func.jsonb_array_elements_text(cast(accounts, JSONB)).table_valued("value").c.value
    )


@functools.cache
def _insert_missing_accounts() -> Insert:
    """PostgreSQL: give each account of a locked round its row, in account order,
    with a full budget and no failures, where it has none yet."""
    ids = _round_account_ids().subquery()
    rows = select(ids.c.value, literal(0, BigInteger), literal(0, Integer), null()).order_by(
        ids.c.value
    )
    statement = postgresql.insert(_ACCOUNTS).from_select(list(_ACCOUNT_COLUMNS), rows)
    inserted: Insert = statement.on_conflict_do_nothing(
        index_elements=[_ACCOUNTS.c.account_id]
    ).returning(_ACCOUNTS.c.account_id)
    return inserted


@functools.cache
def _lock_accounts() -> Select[Any]:
    """PostgreSQL: lock the rows of a round's accounts (a JSON array), in
    account order, so that a locked round holds them to its commit."""
    ids = _round_account_ids()
    return (
        select(_ACCOUNTS.c.account_id)
        .where(_ACCOUNTS.c.account_id.in_(ids))
        .order_by(_ACCOUNTS.c.account_id)
        .with_for_update()
    )
