"""The only place with SQL: factor rows and the transactions that guard them.

Several server processes sharing a database stay correct without any state in
memory, because every verification round is one database transaction
(`FactorStore.attempt_transaction`):

- `AttemptTransaction.lock` reads the candidate factors and locks them (row
  locks on PostgreSQL, the write lock on SQLite): a concurrent attempt on the
  same factors waits for this round's commit, so attempts are counted in order
  and parallel guesses cannot outrun the limit.
- `AttemptTransaction.write` stores every outcome in one conditional UPDATE; a
  step is accepted only if greater than the factor's `last_used_step`, in the
  same statement that records it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
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
    literal_column,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import sessionmaker
from sqlalchemy.sql.selectable import CTE
from sqlalchemy.types import TypeEngine

from totpd.crypto import SealedSecret
from totpd.store.database import WRITE_TRANSACTION, writer_queue
from totpd.store.models import LIVE_STATES, FactorRow

_T = TypeVar("_T")


class LabelTaken(Exception):
    """Another live factor of the account already has this label."""


class AttemptRequest(NamedTuple):
    """One code to check against an account's factors with `digits` digits."""

    account_id: str
    digits: int
    factor_id: str | None


class LockedFactor(NamedTuple):
    """A factor read, and locked, by an attempt transaction.

    A flat named tuple in the column order of the locking SELECT, so a row
    becomes one with a single `_make`: 10,000 of them are built per large
    batch, and keyword construction or nested tuples cost 3x more.
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

    @property
    def sealed(self) -> SealedSecret:
        return SealedSecret(self.secret_key_id, self.secret_nonce, self.secret_ciphertext)


class FactorWrite(NamedTuple):
    """The new attempt state of one locked factor, in the JSON row order of the write.

    `consumed` is 1 for a won step: `last_used_step` is then the new, greater
    step (and a pending factor becomes active); 0 leaves it unchanged. An int,
    not a bool, because the row goes to the database as JSON as it is.
    """

    factor_id: str
    failed_attempts: int
    blocked_until: int
    last_used_step: int
    consumed: int


class FactorStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._writer = writer_queue(engine)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- reads -------------------------------------------------------------

    def get(self, factor_id: str) -> FactorRow | None:
        with self._sessions() as session:
            return session.get(FactorRow, factor_id)

    def list_for_account(
        self, account_id: str, states: Iterable[str], *, now: int
    ) -> list[FactorRow]:
        """The account's factors in `states`, newest first.

        Pending factors past their deadline are first marked EXPIRED, their
        secrets erased, in the same transaction: expiry is lazy, per account.
        """
        expire = (
            update(FactorRow)
            .where(
                FactorRow.account_id == account_id,
                FactorRow.state == "pending",
                FactorRow.expires_at <= now,
            )
            .values(state="expired", **_ERASED_SECRET)
            .execution_options(synchronize_session=False)
        )
        query = (
            select(FactorRow)
            .where(FactorRow.account_id == account_id, FactorRow.state.in_(tuple(states)))
            .order_by(FactorRow.created_at.desc(), FactorRow.id)
        )
        with self._sessions.begin() as session:
            session.execute(expire)
            return list(session.scalars(query))

    def list_for_accounts(self, account_ids: Iterable[str], state: str) -> list[FactorRow]:
        rows: list[FactorRow] = []
        with self._sessions() as session:
            for chunk in _chunks(sorted(set(account_ids))):
                query = select(FactorRow).where(
                    FactorRow.account_id.in_(chunk), FactorRow.state == state
                )
                rows.extend(session.scalars(query))
        return rows

    def get_many(self, factor_ids: Iterable[str]) -> dict[str, FactorRow]:
        rows: dict[str, FactorRow] = {}
        with self._sessions() as session:
            for chunk in _chunks(sorted(set(factor_ids))):
                rows.update(
                    (row.id, row)
                    for row in session.scalars(select(FactorRow).where(FactorRow.id.in_(chunk)))
                )
        return rows

    # -- enrollment --------------------------------------------------------

    def insert(self, row: FactorRow) -> FactorRow:
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            raise LabelTaken from None
        return row

    # -- verification ------------------------------------------------------

    @contextmanager
    def attempt_transaction(self) -> Iterator[AttemptTransaction]:
        """One transaction for a round of codes: lock and read, then write once.

        PostgreSQL locks the rows (`SELECT ... FOR UPDATE`, in id order so
        concurrent rounds cannot deadlock); SQLite takes its write lock at
        BEGIN IMMEDIATE. Either way no other attempt on these factors reads
        them until this round commits, so counting before comparing holds and
        a step is consumed once.
        """
        with self._writer, self._engine.connect() as connection:
            connection.execution_options(**{WRITE_TRANSACTION: True})
            with connection.begin():
                yield AttemptTransaction(connection, self._dialect)

    # -- disable -----------------------------------------------------------

    def disable(self, factor_ids: Sequence[str]) -> list[FactorRow]:
        """Turn live factors DISABLED and erase their secrets; returns them."""
        statement = (
            update(FactorRow)
            .where(FactorRow.id.in_(factor_ids), FactorRow.state.in_(LIVE_STATES))
            .values(state="disabled", expires_at=None, **_ERASED_SECRET)
            .returning(FactorRow)
            .execution_options(synchronize_session=False)
        )
        with self._sessions.begin() as session:
            return list(session.scalars(statement))


class AttemptTransaction:
    """The reads and the one write of a verification round.

    Order of use: `lock` the candidate factors, decide (compare codes, count
    failures), `write` every changed factor in one statement.
    """

    def __init__(self, connection: Connection, dialect: str) -> None:
        self._connection = connection
        self._dialect = dialect

    def _run(
        self, statement: Select[Any] | Update, values: dict[str, object]
    ) -> Sequence[tuple[Any, ...]]:
        return run_compiled(self._connection, _compiled(statement, self._connection), values)

    def lock(
        self, requests: Sequence[AttemptRequest], *, state: str, now: int
    ) -> list[LockedFactor]:
        """Lock and read the factors each request may be checked against.

        A request matches the account's factors in `state` with its number of
        digits (only `factor_id` if given; pending factors only until they
        expire), blocked or not: the caller decides what a block means.
        """
        if len(requests) == 1:
            (request,) = requests
            statement = _lock_one(self._dialect, state, request.factor_id is not None)
            parameters: dict[str, object] = {
                "p_now": now,
                "p_account": request.account_id,
                "p_digits": request.digits,
                "p_factor": request.factor_id,
            }
        else:
            # Each request is its JSON row as it is: [account_id, digits, factor_id or null].
            statement = _lock_many(self._dialect, state)
            parameters = {"p_now": now, "p_rows": json.dumps(requests)}
        rows = self._run(statement, parameters)
        make = LockedFactor._make
        # A row without its secret was erased: nothing to compare against.
        return [make(row) for row in rows if row[_CIPHERTEXT_COLUMN] is not None]

    def write(self, writes: Sequence[FactorWrite], *, state: str, now: int) -> set[str]:
        """Store each factor's new attempt state in one conditional UPDATE.

        The condition `last_used_step <= new last_used_step` (strictly less for
        a consumed step) is the replay guard of design.md rule 4; the lock
        already makes it hold, it stays as a second line. Returns the factors
        written: a consumed step that is missing was not won.
        """
        if not writes:
            return set()
        if len(writes) == 1:
            (write,) = writes
            statement = _write_one(state)
            parameters: dict[str, object] = {
                "p_now": now,
                "p_factor": write.factor_id,
                "p_failed": write.failed_attempts,
                "p_blocked": write.blocked_until,
                "p_step": write.last_used_step,
                "p_consumed": write.consumed,
            }
        else:
            # Sorted by factor id: the order PostgreSQL takes the row locks in.
            payload = sorted(writes)
            statement = _write_many(self._dialect, state)
            parameters = {"p_now": now, "p_rows": json.dumps(payload)}
        return {factor_id for (factor_id,) in self._run(statement, parameters)}


_ERASED_SECRET: dict[str, None] = {
    "secret_key_id": None,
    "secret_nonce": None,
    "secret_ciphertext": None,
}


# Ids per IN list of the read and reset helpers: keeps every backend under its
# bound-parameter limit (SQLite: 32,766). The hot statements bind one JSON value.
_CHUNK = 4000

# The hot statements run on the Core table: the ORM adds nothing to a bulk
# UPDATE ... RETURNING but its per-statement bookkeeping.
_FACTORS: Table = FactorRow.__table__  # type: ignore[assignment]


# -- the hot statements' execution -------------------------------------------


class CompiledStatement(NamedTuple):
    """A statement's SQL for one dialect, and how to lay out its parameters."""

    sql: str
    defaults: dict[str, object]  # the values bound at build time (literals)
    order: tuple[str, ...] | None  # parameter names by position; None: by name


_COMPILED: dict[tuple[int, str], CompiledStatement] = {}


def _compiled(statement: Select[Any] | Update, connection: Connection) -> CompiledStatement:
    """Compile a cached statement once per dialect (the statements live forever)."""
    key = (id(statement), connection.dialect.name)
    found = _COMPILED.get(key)
    if found is None:
        compiled = statement.compile(dialect=connection.dialect)
        defaults = {name: bind.value for bind, name in compiled.bind_names.items()}
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        found = _COMPILED[key] = CompiledStatement(compiled.string, defaults, order)
    return found


def run_compiled(
    connection: Connection, statement: CompiledStatement, values: dict[str, object]
) -> Sequence[tuple[Any, ...]]:
    """Run the statement on the DB-API cursor of the connection's transaction.

    For a one-row verification SQLAlchemy's per-execution work (cache lookup,
    events, parameter and result processing) cost more than the statement;
    the hot statements skip it. Their parameters and columns are plain ints,
    strings and bytes, which need no processing. Driver errors are wrapped as
    SQLAlchemy's would be, so the status mapping sees the same exceptions.
    """
    merged = {**statement.defaults, **values}
    parameters: Sequence[object] | dict[str, object] = (
        merged if statement.order is None else [merged[name] for name in statement.order]
    )
    dbapi = connection.dialect.loaded_dbapi
    cursor = connection.connection.cursor()
    try:
        cursor.execute(statement.sql, parameters)
        return cursor.fetchall()
    except dbapi.Error as error:
        # A dropped database connection must leave the pool, as SQLAlchemy's
        # own execution would see to.
        lost = connection.dialect.is_disconnect(
            error, connection.connection.dbapi_connection, cursor
        )
        if lost:
            connection.invalidate()
        raise DBAPIError.instance(
            statement.sql,
            None,
            error,
            dbapi.Error,
            connection_invalidated=lost,
            dialect=connection.dialect,
        ) from error
    finally:
        cursor.close()


# -- statements, built once per shape (SQLAlchemy then caches their SQL) ------

_NOW = bindparam("p_now", type_=BigInteger)

_LOCKED_COLUMNS = (
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
)
# LockedFactor's fields are these columns in this order (a store test checks).
_CIPHERTEXT_COLUMN = LockedFactor._fields.index("secret_ciphertext")


def _lock_base(state: str) -> Select[Any]:
    statement = select(*_LOCKED_COLUMNS).where(_FACTORS.c.state == state)
    if state == "pending":
        statement = statement.where(_FACTORS.c.expires_at > _NOW)
    # Rows are locked in this order: the same in every round, so no deadlock.
    return statement.order_by(_FACTORS.c.id)


def _for_update(statement: Select[Any], dialect: str) -> Select[Any]:
    # SQLite has no row locks; its attempt transactions BEGIN IMMEDIATE instead.
    return statement.with_for_update(of=_FACTORS) if dialect == "postgresql" else statement


@functools.cache
def _lock_one(dialect: str, state: str, with_factor: bool) -> Select[Any]:
    """The unary shape: one account (and maybe one factor), no row list."""
    statement = _lock_base(state).where(
        _FACTORS.c.account_id == bindparam("p_account"),
        _FACTORS.c.digits == bindparam("p_digits"),
    )
    if with_factor:
        statement = statement.where(_FACTORS.c.id == bindparam("p_factor"))
    return _for_update(statement, dialect)


@functools.cache
def _lock_many(dialect: str, state: str) -> Select[Any]:
    """The bulk shape: every (account, digits, factor) of a round in one query."""
    wanted = _json_rows(
        dialect, "wanted", [("account_id", String), ("digits", Integer), ("factor_id", String)]
    )
    statement = (
        _lock_base(state)
        .add_cte(wanted)
        .join_from(
            _FACTORS,
            wanted,
            and_(
                _FACTORS.c.account_id == wanted.c.account_id,
                _FACTORS.c.digits == wanted.c.digits,
                or_(wanted.c.factor_id.is_(None), _FACTORS.c.id == wanted.c.factor_id),
            ),
        )
    )
    return _for_update(statement, dialect)


def _write_values(
    state: str,
    failed: ColumnElement[int],
    blocked: ColumnElement[int],
    step: ColumnElement[int],
    consumed: ColumnElement[bool],
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "failed_attempts": failed,
        "blocked_until": blocked,
        "last_used_step": step,
        "last_used_at": case((consumed, _NOW), else_=_FACTORS.c.last_used_at),
    }
    if state == "pending":
        values |= {
            "state": case((consumed, "active"), else_=_FACTORS.c.state),
            "confirmed_at": case((consumed, _NOW), else_=_FACTORS.c.confirmed_at),
            "expires_at": case((consumed, None), else_=_FACTORS.c.expires_at),
        }
    return values


def _write_guard(step: ColumnElement[int], consumed: ColumnElement[bool]) -> ColumnElement[bool]:
    """A consumed step must be newer than the last one; any other write keeps it."""
    return or_(
        and_(consumed, _FACTORS.c.last_used_step < step),
        and_(not_(consumed), _FACTORS.c.last_used_step == step),
    )


@functools.cache
def _write_one(state: str) -> Update:
    step = bindparam("p_step", type_=BigInteger)
    consumed = bindparam("p_consumed", type_=Integer) == 1
    return (
        update(_FACTORS)
        .where(
            _FACTORS.c.id == bindparam("p_factor"),
            _FACTORS.c.state == state,
            _write_guard(step, consumed),
        )
        .values(
            _write_values(
                state,
                bindparam("p_failed", type_=Integer),
                bindparam("p_blocked", type_=BigInteger),
                step,
                consumed,
            )
        )
        .returning(_FACTORS.c.id)
    )


@functools.cache
def _write_many(dialect: str, state: str) -> Update:
    new = _json_rows(
        dialect,
        "new",
        [
            ("factor_id", String),
            ("failed", Integer),
            ("blocked", BigInteger),
            ("step", BigInteger),
            ("consumed", Integer),
        ],
    )
    consumed = new.c.consumed == 1
    return (
        update(_FACTORS)
        .add_cte(new)
        .where(
            _FACTORS.c.id == new.c.factor_id,
            _FACTORS.c.state == state,
            _write_guard(new.c.step, consumed),
        )
        .values(_write_values(state, new.c.failed, new.c.blocked, new.c.step, consumed))
        .returning(_FACTORS.c.id)
    )


def _json_rows(
    dialect: str, name: str, columns: Sequence[tuple[str, type[TypeEngine[Any]]]]
) -> CTE:
    """`WITH name AS (SELECT ... FROM <JSON array of rows>)`, bound as one parameter.

    The SQL is the same for 1 or 10,000 rows, so SQLAlchemy compiles it once;
    a VALUES list is compiled anew for every batch (half a second for 10k
    rows). SQLite reads the JSON with json_each, PostgreSQL with
    json_array_elements; both name the element `value` and support `->>`.
    """
    rows = bindparam("p_rows", type_=String)
    if dialect == "postgresql":
        elements = func.json_array_elements(cast(rows, JSON)).table_valued("value")
    else:
        elements = func.json_each(rows).table_valued("value")
    fields = [
        cast(elements.c.value.op("->>")(literal_column(str(index))), kind()).label(column_name)
        for index, (column_name, kind) in enumerate(columns)
    ]
    return select(*fields).select_from(elements).cte(name)


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
