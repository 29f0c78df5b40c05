"""The only place with SQL: factor rows and the atomic updates that guard them.

Every write that decides security is one conditional UPDATE, so several
server processes sharing a database stay correct without locks in memory:

- `reserve_attempts` counts an attempt *before* any code is compared, and only
  on factors that are not blocked (backoff or lock). Parallel guesses therefore
  cannot outrun the attempt limit.
- `consume_step` accepts a time step only if it is greater than the factor's
  `last_used_step`, in the same statement that records it (rowcount 1 = won).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Row,
    String,
    Table,
    Update,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker
from sqlalchemy.sql.selectable import CTE
from sqlalchemy.types import TypeEngine

from totpd.crypto import SealedSecret
from totpd.store.models import LIVE_STATES, FactorRow

_T = TypeVar("_T")


class LabelTaken(Exception):
    """Another live factor of the account already has this label."""


@dataclass(frozen=True, slots=True)
class AttemptSchedule:
    """How failures turn into waiting time, decided by the service's policy.

    `waits[n]` is the number of seconds no attempt is compared after the n-th
    consecutive failure; the last entry applies to every count beyond it (the lock).
    """

    waits: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AttemptRequest:
    """One code to count against an account's factors with `digits` digits."""

    account_id: str
    digits: int
    factor_id: str | None


@dataclass(frozen=True, slots=True)
class ReservedFactor:
    """A factor whose attempt was counted and may now be compared."""

    factor_id: str
    account_id: str
    algorithm: str
    digits: int
    period_seconds: int
    sealed: SealedSecret
    last_used_step: int
    failed_attempts: int


class FactorStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        # SQLite has one writer at a time. Threads of this process queue on a
        # lock instead of in SQLite's busy handler, which sleeps 1, 2, 5, 10...
        # ms between retries and turned 2 ms verifications into 100 ms ones.
        self._writer: AbstractContextManager[object] = (
            threading.Lock() if self._dialect == "sqlite" else nullcontext()
        )
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- reads -------------------------------------------------------------

    def get(self, factor_id: str) -> FactorRow | None:
        with self._sessions() as session:
            return session.get(FactorRow, factor_id)

    def list_for_account(self, account_id: str, states: Iterable[str]) -> list[FactorRow]:
        query = (
            select(FactorRow)
            .where(FactorRow.account_id == account_id, FactorRow.state.in_(tuple(states)))
            .order_by(FactorRow.created_at.desc(), FactorRow.id)
        )
        with self._sessions() as session:
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

    def expire_stale_enrollments(self, now: int, account_id: str | None = None) -> int:
        """Mark pending factors past their deadline EXPIRED and erase their secrets."""
        statement = (
            update(FactorRow)
            .where(FactorRow.state == "pending", FactorRow.expires_at <= now)
            .values(state="expired", **_ERASED_SECRET)
            .execution_options(synchronize_session=False)
        )
        if account_id is not None:
            statement = statement.where(FactorRow.account_id == account_id)
        with self._sessions.begin() as session:
            return _rowcount(session.execute(statement))

    # -- verification ------------------------------------------------------

    @contextmanager
    def attempt_transaction(self) -> Iterator[AttemptTransaction]:
        """One transaction for counting, consuming and resetting a round of codes.

        The rows that `reserve` counts stay locked (PostgreSQL) or the database
        stays write-locked (SQLite) until the round commits, and a verify costs
        one commit instead of two or three.
        """
        with self._writer, self._engine.begin() as connection:
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
    """The writes of one verification round, inside `FactorStore.attempt_transaction`.

    Order of use: `reserve`, compare the codes, `consume` the matched steps,
    `reset_failures` of accounts that proved possession.
    """

    def __init__(self, connection: Connection, dialect: str) -> None:
        self._connection = connection
        self._dialect = dialect

    def reserve(
        self,
        requests: Sequence[AttemptRequest],
        *,
        state: str,
        now: int,
        schedule: AttemptSchedule,
    ) -> list[ReservedFactor]:
        """Count one attempt on every matching factor that is not blocked.

        A request matches the account's factors in `state` with its number of
        digits (only `factor_id` if given; pending factors only until they
        expire). The requests must name distinct accounts, so no factor is
        counted twice. Returns the counted factors with their sealed secrets.
        """
        if len(requests) == 1:
            (request,) = requests
            statement = _reserve_one(state, schedule, request.factor_id is not None)
            parameters: dict[str, object] = {
                "p_now": now,
                "p_account": request.account_id,
                "p_digits": request.digits,
                "p_factor": request.factor_id,
            }
        else:
            # Sorted, so concurrent batches lock shared rows in the same order.
            payload = sorted((r.account_id, r.digits, r.factor_id or "") for r in requests)
            statement = _reserve_many(self._dialect, state, schedule)
            parameters = {"p_now": now, "p_rows": json.dumps(payload)}
        rows = self._connection.execute(statement, parameters)
        return [factor for factor in map(_reserved, rows) if factor is not None]

    def consume(self, steps: Sequence[tuple[str, int]], *, state: str, now: int) -> set[str]:
        """Record each (factor, step) as used if the step is newer than the last one.

        Also resets the factor's failures; confirming a pending factor activates
        it in the same statement. Returns the factors whose step this call won.
        """
        if not steps:
            return set()
        if len(steps) == 1:
            ((factor_id, step),) = steps
            statement = _consume_one(state)
            parameters: dict[str, object] = {"p_now": now, "p_factor": factor_id, "p_step": step}
        else:
            statement = _consume_many(self._dialect, state)
            parameters = {"p_now": now, "p_rows": json.dumps(sorted(steps))}
        return {row.id for row in self._connection.execute(statement, parameters)}

    def reset_failures(self, factor_ids: Sequence[str]) -> None:
        """Clear the consecutive-failure count: the account proved possession."""
        for chunk in _chunks(sorted(factor_ids)):
            self._connection.execute(
                update(_FACTORS)
                .where(_FACTORS.c.id.in_(chunk))
                .values(failed_attempts=0, blocked_until=0)
            )


_ERASED_SECRET: dict[str, None] = {
    "secret_key_id": None,
    "secret_nonce": None,
    "secret_ciphertext": None,
}


def _blocked_until(
    failures: ColumnElement[int], now: ColumnElement[int], schedule: AttemptSchedule
) -> ColumnElement[int]:
    """SQL for the new `blocked_until` after the `failures`-th consecutive failure."""
    last = len(schedule.waits) - 1
    waits = [
        (failures == n, now + wait) for n, wait in enumerate(schedule.waits[:last]) if wait > 0
    ]
    return case(
        (failures >= last, now + schedule.waits[last]),
        *waits,
        else_=_FACTORS.c.blocked_until,
    )


# Rows per statement: keeps every backend under its bound-parameter limit
# (SQLite: 32,766) with three parameters a row.
_CHUNK = 4000

# The hot statements run on the Core table: the ORM adds nothing to a bulk
# UPDATE ... RETURNING but its per-statement bookkeeping.
_FACTORS: Table = FactorRow.__table__  # type: ignore[assignment]

_RESERVED_COLUMNS = (
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
)


# -- statements, built once per shape (SQLAlchemy then caches their SQL) ------

_NOW = bindparam("p_now", type_=BigInteger)


@functools.cache
def _reserve_base(state: str, schedule: AttemptSchedule) -> Update:
    counted = _FACTORS.c.failed_attempts + 1
    statement = (
        update(_FACTORS)
        .where(_FACTORS.c.state == state, _FACTORS.c.blocked_until <= _NOW)
        .values(failed_attempts=counted, blocked_until=_blocked_until(counted, _NOW, schedule))
        .returning(*_RESERVED_COLUMNS)
    )
    if state == "pending":
        statement = statement.where(_FACTORS.c.expires_at > _NOW)
    return statement


@functools.cache
def _reserve_one(state: str, schedule: AttemptSchedule, with_factor: bool) -> Update:
    """The unary shape: one account (and maybe one factor), no VALUES list."""
    statement = _reserve_base(state, schedule).where(
        _FACTORS.c.account_id == bindparam("p_account"),
        _FACTORS.c.digits == bindparam("p_digits"),
    )
    if with_factor:
        statement = statement.where(_FACTORS.c.id == bindparam("p_factor"))
    return statement


@functools.cache
def _consume_base(state: str) -> Update:
    statement = (
        update(_FACTORS)
        .where(_FACTORS.c.state == state)
        .values(last_used_at=_NOW, failed_attempts=0, blocked_until=0)
        .returning(_FACTORS.c.id)
    )
    if state == "pending":
        statement = statement.where(_FACTORS.c.expires_at > _NOW).values(
            state="active", confirmed_at=_NOW, expires_at=None
        )
    return statement


@functools.cache
def _consume_one(state: str) -> Update:
    step = bindparam("p_step", type_=BigInteger)
    return (
        _consume_base(state)
        .where(_FACTORS.c.id == bindparam("p_factor"), _FACTORS.c.last_used_step < step)
        .values(last_used_step=step)
    )


@functools.cache
def _reserve_many(dialect: str, state: str, schedule: AttemptSchedule) -> Update:
    """The bulk shape: every (account, digits, factor) of a round in one UPDATE."""
    wanted = _json_rows(
        dialect, "wanted", [("account_id", String), ("digits", Integer), ("factor_id", String)]
    )
    return (
        _reserve_base(state, schedule)
        .add_cte(wanted)
        .where(
            _FACTORS.c.account_id == wanted.c.account_id,
            _FACTORS.c.digits == wanted.c.digits,
            or_(wanted.c.factor_id == "", _FACTORS.c.id == wanted.c.factor_id),
        )
    )


@functools.cache
def _consume_many(dialect: str, state: str) -> Update:
    used = _json_rows(dialect, "used", [("factor_id", String), ("step", BigInteger)])
    return (
        _consume_base(state)
        .add_cte(used)
        .where(_FACTORS.c.id == used.c.factor_id, _FACTORS.c.last_used_step < used.c.step)
        .values(last_used_step=used.c.step)
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


def _reserved(row: Row[Any, *tuple[Any, ...]]) -> ReservedFactor | None:
    if row.secret_key_id is None or row.secret_nonce is None or row.secret_ciphertext is None:
        return None  # erased concurrently: nothing to compare against
    return ReservedFactor(
        factor_id=row.id,
        account_id=row.account_id,
        algorithm=row.algorithm,
        digits=row.digits,
        period_seconds=row.period_seconds,
        sealed=SealedSecret(row.secret_key_id, row.secret_nonce, row.secret_ciphertext),
        last_used_step=row.last_used_step,
        failed_attempts=row.failed_attempts,
    )


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0))
