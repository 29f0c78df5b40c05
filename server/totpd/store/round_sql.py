"""The SQL of a verification round, built once per shape on the Core tables.

Each builder is cached: a statement object lives forever, so store/dbapi.py
compiles it once per dialect. Many rows go in as one JSON parameter, so the
SQL is the same for 1 or 10,000 rows. `bulk_round_sql` hands the bulk shapes,
compiled, to benchmarks that time the database's own work.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Dialect,
    Float,
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
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.selectable import CTE, FromClause, Subquery
from sqlalchemy.types import TypeEngine

from totpd.domain import FactorState
from totpd.store.dbapi import CompiledStatement, compiled
from totpd.store.models import AccountRow, FactorRow

# The hot statements run on the Core table: the ORM adds nothing to a bulk
# UPDATE ... RETURNING but its per-statement bookkeeping.
_FACTORS: Table = FactorRow.__table__  # type: ignore[assignment]
_ACCOUNTS: Table = AccountRow.__table__  # type: ignore[assignment]
_NOW = bindparam("p_now", type_=BigInteger)
# A round acts in one tenant: one more equality in every key it reads or writes.
_TENANT = bindparam("p_tenant", type_=String)

# CandidateFactor's fields (store/rounds.py) are these columns in this order (a store test checks).
READ_COLUMNS = (
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
    _FACTORS.c.drift_steps,
)


def _read_base(
    state: FactorState, *, ordered: bool = True, keys: FromClause | None = None
) -> Select[Any]:
    # The account's row comes with each factor (a primary-key lookup per
    # account): its budget is decided on in the same round. `keys`: a join
    # that picks the factors in `state` (the bulk read's key rows).
    with_account = (_FACTORS if keys is None else keys).outerjoin(
        _ACCOUNTS,
        and_(
            _ACCOUNTS.c.tenant == _FACTORS.c.tenant,
            _ACCOUNTS.c.account_id == _FACTORS.c.account_id,
        ),
    )
    statement = select(*READ_COLUMNS).select_from(with_account)
    if keys is None:
        statement = statement.where(_FACTORS.c.state == state)
    if state == FactorState.PENDING:
        statement = statement.where(_FACTORS.c.expires_at > _NOW)
    # Rows are locked in this order: the same in every round, so no deadlock.
    return statement.order_by(_FACTORS.c.id) if ordered else statement


def _locking(statement: Select[Any], dialect: str, lock: bool) -> Select[Any]:
    # SQLite has no row locks; its locked rounds BEGIN IMMEDIATE instead.
    return statement.with_for_update(of=_FACTORS) if lock and dialect == "postgresql" else statement


@functools.cache
def read_one(dialect: str, state: FactorState, with_factor: bool, lock: bool) -> Select[Any]:
    """The unary shape: one account (and maybe one factor), no row list."""
    statement = _read_base(state).where(
        _FACTORS.c.account_id == bindparam("p_account"),
        _FACTORS.c.tenant == _TENANT,
        _FACTORS.c.digits == bindparam("p_digits"),
    )
    if with_factor:
        statement = statement.where(_FACTORS.c.id == bindparam("p_factor"))
    return _locking(statement, dialect, lock)


def _round_keys(dialect: str) -> Select[Any]:
    """The accounts of a round as (account_id, tenant) rows, bound as one JSON
    array of pairs (``p_keys``).

    Pairs, not the ids and a separate `tenant = ?`: PostgreSQL without
    statistics took that for a selective index condition and looped over the
    JSON array for every factor of the tenant (a 1,000-account read 250x slower).
    """
    keys = bindparam("p_keys", type_=String)
    if dialect == "postgresql":
        elements = func.jsonb_array_elements(cast(keys, JSONB)).table_valued("value")
    else:
        elements = func.json_each(keys).table_valued("value")
    pair = elements.c.value.op("->>")
    columns: list[ColumnElement[Any]] = [
        cast(pair(literal_column(str(index))), String).label(name)
        for index, name in enumerate(("account_id", "tenant"))
    ]
    return select(*columns).select_from(elements)


def _round_key_rows(dialect: str, state: FactorState) -> FromClause:
    """The ``p_keys`` rows (`round_writes.round_keys`) joined to their factors in `state`: one
    index search on (account, tenant, state) per key.

    A join, not ``(account_id, tenant) IN (SELECT ...)``: SQLite searched
    that by account id alone and PostgreSQL built the list first, 25% and
    35-45% more for 10,000 pairs (benchmarks/NOTES.md). A round holds one
    key per account, so the join repeats no factor.

    On PostgreSQL the state, too, comes from each key: no condition is on
    `factors` alone, which the planner could take, without statistics, for a
    few rows to loop over, running the JSON array's function for each
    (benchmarks/NOTES.md, "the thirteenth session").
    """
    keys = bindparam("p_keys", type_=String)
    if dialect == "postgresql":
        elements = func.jsonb_array_elements(cast(keys, JSONB)).table_valued("value")
    else:
        elements = func.json_each(keys).table_valued("value")
    rows = elements.alias("round_keys")
    key = rows.c.value.op("->>", return_type=String)
    return rows.join(
        _FACTORS,
        and_(
            _FACTORS.c.account_id == key(literal_column("0")),
            _FACTORS.c.tenant == key(literal_column("1")),
            _FACTORS.c.state == (key(literal_column("2")) if dialect == "postgresql" else state),
        ),
    )


@functools.cache
def read_many(dialect: str, state: FactorState, lock: bool) -> Select[Any]:
    """The bulk shape: every factor in `state` of the accounts of a round, bound
    as keys (`_round_key_rows`), ordered by id only when locking."""
    statement = _read_base(state, ordered=lock, keys=_round_key_rows(dialect, state))
    return _locking(statement, dialect, lock)


# The read's binary columns (by position), which the one-row read carries as hex.
BLOB_COLUMNS = tuple(
    index
    for index, column in enumerate(READ_COLUMNS)
    if column.name in ("secret_nonce", "secret_ciphertext")
)


@functools.cache
def read_many_in_one_row(state: FactorState) -> Select[Any]:
    """SQLite: `read_many`'s rows as one row, a JSON array of arrays (the secret's
    parts as hex, '' for none), for a read under SQLite's write lock (store/rounds.py
    says why). Its order is not the rows': the reader sorts when it must."""
    rows = _read_base(state, ordered=False, keys=_round_key_rows("sqlite", state)).subquery()
    values = [  # SQLite's hex() of NULL is ''
        func.hex(rows.c[column.name]) if index in BLOB_COLUMNS else rows.c[column.name]
        for index, column in enumerate(READ_COLUMNS)
    ]
    return select(func.json_group_array(func.json_array(*values))).select_from(rows)


# -- factor writes -------------------------------------------------------------


class _WriteColumns(NamedTuple):
    factor_id: ColumnElement[str]
    failed: ColumnElement[int]
    blocked: ColumnElement[int]
    step: ColumnElement[int]
    consumed: ColumnElement[bool]
    seen_failed: ColumnElement[int]
    seen_blocked: ColumnElement[int]
    seen_step: ColumnElement[int]
    # PostgreSQL's bulk rows carry the round's tenant and state (`write_many`).
    tenant: ColumnElement[str] = _TENANT
    state: ColumnElement[str] | None = None


def _database_now(dialect: str) -> ColumnElement[Any]:
    """The database's clock, in seconds since the epoch, when the row is written."""
    if dialect == "postgresql":
        # clock_timestamp(), not now(): the time of this row's write, not of a
        # statement received before the server stopped.
        return func.extract("epoch", func.clock_timestamp())
    # SQLite's 'now' is read once per statement, in this process.
    return (func.julianday("now") - 2440587.5) * 86400.0


def _write(state: FactorState, new: _WriteColumns, activate: bool) -> Update:
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
    if state == FactorState.PENDING and activate:
        values |= {
            "state": case((new.consumed, FactorState.ACTIVE.value), else_=_FACTORS.c.state),
            "confirmed_at": case((new.consumed, _NOW), else_=_FACTORS.c.confirmed_at),
            "expires_at": case((new.consumed, None), else_=_FACTORS.c.expires_at),
        }
    return (
        update(_FACTORS)
        .where(
            _FACTORS.c.id == new.factor_id,
            _FACTORS.c.tenant == new.tenant,
            _FACTORS.c.state == (state if new.state is None else new.state),
            _FACTORS.c.failed_attempts == new.seen_failed,
            _FACTORS.c.blocked_until == new.seen_blocked,
            _FACTORS.c.last_used_step == new.seen_step,
            or_(
                and_(new.consumed, _FACTORS.c.last_used_step < new.step),
                and_(not_(new.consumed), _FACTORS.c.last_used_step == new.step),
            ),
        )
        .values(values)
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
def write_one(dialect: str, state: FactorState, activate: bool, alone: bool) -> Update:
    """One factor, bound as plain parameters; `alone`: only until ``p_deadline``
    (SQLite's; PostgreSQL checks it after the row lock, store/unary_sql.py)."""
    binds = {name: bindparam(f"p_{name}", type_=kind) for name, kind in _WRITE_FIELDS}
    binds["factor_id"] = bindparam("p_factor", type_=String)
    consumed = binds.pop("consumed") == 1
    statement = _write(state, _WriteColumns(consumed=consumed, **binds), activate)
    if alone:
        statement = statement.where(_database_now(dialect) < bindparam("p_deadline", type_=Float))
    return statement.returning(_FACTORS.c.id)


# PostgreSQL's bulk rows: `_WRITE_FIELDS`, then the round's tenant and state.
POSTGRES_WRITE_FIELDS: list[tuple[str, type[TypeEngine[Any]]]] = [
    *_WRITE_FIELDS,
    ("tenant", String),
    ("state", String),
]

# A step won on a factor with no failure on record, as read: its new failure
# count and block are 0, as were the ones read, so three values say it all.
_WON_FIELDS: list[tuple[str, type[TypeEngine[Any]]]] = [
    ("factor_id", String),
    ("step", BigInteger),
    ("seen_step", BigInteger),
]


@functools.cache
def write_many(dialect: str, state: FactorState, activate: bool, ids: bool = True) -> Update:
    """Many factors, their rows bound as JSON: `_WRITE_FIELDS` rows in ``p_rows``,
    and on SQLite the steps won on factors with no failure on record as
    `_WON_FIELDS` rows in ``p_won`` (the common batch: 3 values a row, not 8).

    PostgreSQL takes every row in ``p_rows``: one list, in the lock order the
    store sorts it in (rounds.py), each row with the round's tenant and state
    (`POSTGRES_WRITE_FIELDS`: no condition on `factors` alone, as in
    `_round_key_rows`); SQLite locks the whole database.
    `ids`: RETURNING the id of each factor written. Without, the driver counts
    the rows changed in one step, not a step a row: ARCHITECTURE.md, "Module
    notes", store/dbapi.py.
    """
    new: CTE | Subquery
    if dialect == "postgresql":
        new = _json_rows(dialect, "new", POSTGRES_WRITE_FIELDS)
    else:
        won = _json_select(dialect, "p_won", _WON_FIELDS).subquery("won")
        zero: ColumnElement[int] = literal_column("0")
        one: ColumnElement[int] = literal_column("1")
        as_rows = select(
            won.c.factor_id,
            zero.label("failed"),
            zero.label("blocked"),
            won.c.step,
            one.label("consumed"),
            zero.label("seen_failed"),
            zero.label("seen_blocked"),
            won.c.seen_step,
        )
        # A subquery, not a CTE: a statement that starts with WITH is no
        # UPDATE to SQLite's driver, which then counts no rows (`ids`).
        new = as_rows.union_all(_json_select(dialect, "p_rows", _WRITE_FIELDS)).subquery("new")
    columns = {column.name: column for column in new.c}
    consumed = columns.pop("consumed") == 1
    statement = _write(state, _WriteColumns(consumed=consumed, **columns), activate)
    if isinstance(new, CTE):
        statement = statement.add_cte(new)
    return statement.returning(_FACTORS.c.id) if ids else statement


def _json_rows(
    dialect: str, name: str, columns: Sequence[tuple[str, type[TypeEngine[Any]]]]
) -> CTE:
    """`WITH name AS (SELECT ... FROM <JSON array of rows>)`, bound as ``p_rows``."""
    return _json_select(dialect, "p_rows", columns).cte(name)


def _json_select(
    dialect: str, parameter: str, columns: Sequence[tuple[str, type[TypeEngine[Any]]]]
) -> Select[Any]:
    """`SELECT ... FROM <JSON array of rows>`, the array bound as one parameter.

    The SQL is the same for 1 or 10,000 rows, so it is compiled once; a VALUES
    list is compiled anew for every batch (half a second for 10k rows).
    SQLite reads the JSON with json_each, PostgreSQL as JSONB with
    jsonb_array_elements (parsed once, not once per `->>`: a 10k-row write
    15% faster than with json); both name the element `value` and support `->>`.
    """
    rows = bindparam(parameter, type_=String)
    if dialect == "postgresql":
        elements = func.jsonb_array_elements(cast(rows, JSONB)).table_valued("value")
    else:
        elements = func.json_each(rows).table_valued("value")
    fields = [
        cast(elements.c.value.op("->>")(literal_column(str(index))), kind()).label(column_name)
        for index, (column_name, kind) in enumerate(columns)
    ]
    return select(*fields).select_from(elements)


# -- resync ----------------------------------------------------------------------


@functools.cache
def set_drift() -> Update:
    """Store a factor's measured drift, where the locked round that measured it
    just consumed ``p_step``."""
    return (
        update(_FACTORS)
        .where(
            _FACTORS.c.id == bindparam("p_factor", type_=String),
            _FACTORS.c.tenant == _TENANT,
            _FACTORS.c.state == FactorState.ACTIVE.value,
            _FACTORS.c.last_used_step == bindparam("p_step", type_=BigInteger),
        )
        .values(drift_steps=bindparam("p_drift", type_=Integer))
        .returning(_FACTORS.c.id)
    )


# -- for benchmarks ------------------------------------------------------------


class BulkRoundSql(NamedTuple):
    """The SQL of an optimistic bulk round, compiled for one database, as the store runs it.

    `read` takes `round_writes.bulk_read_values`; its rows are
    `round_records.CandidateFactor` fields in order.
    `write` takes `round_writes.bulk_write_values`; the cursor's row count says
    how many factors it wrote (PostgreSQL also returns their ids).
    `CompiledStatement.parameters` lays the values out for the driver.
    """

    read: CompiledStatement
    write: CompiledStatement


def bulk_round_sql(dialect: Dialect, state: FactorState) -> BulkRoundSql:
    """The optimistic bulk read and the conditional bulk write of factors in `state`.

    The seam for benchmarks that time the service's own SQL without the
    service (benchmarks/service/batch.py), run raw on the driver.
    """
    name = dialect.name
    return BulkRoundSql(
        compiled(read_many(name, state, False), dialect),
        compiled(write_many(name, state, True, name == "postgresql"), dialect),
    )
