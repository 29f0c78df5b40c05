"""The SQL of a round's account rows: their conditional writes and, on PostgreSQL,
the inserts and locks of a locked round. Built once per shape, like round_sql.py's
factor statements, on the same JSON row binds."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Insert,
    Integer,
    Select,
    String,
    Update,
    bindparam,
    literal,
    null,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import TypeEngine

from totpd.store.round_sql import _ACCOUNTS, _TENANT, _json_rows, _json_select, _round_keys

_ACCOUNT_FIELDS: list[tuple[str, type[TypeEngine[Any]]]] = [
    ("account_id", String),
    ("budget_tat", BigInteger),
    ("consecutive_failures", Integer),
    ("locked_at", BigInteger),
    ("seen_budget_tat", BigInteger),
    ("seen_consecutive_failures", Integer),
]
_ACCOUNT_COLUMNS = ("account_id", "budget_tat", "consecutive_failures", "locked_at")
# An insert's columns: the round's tenant, then the account's.
_INSERT_COLUMNS = ("tenant", *_ACCOUNT_COLUMNS)
_ACCOUNT_KEY = [_ACCOUNTS.c.account_id, _ACCOUNTS.c.tenant]


def _account_update(new: dict[str, ColumnElement[Any]]) -> Update:
    """UPDATE the account only where it still holds the state read and is not locked
    (a locked account is never compared, so nothing is written for it)."""
    return _unreturned_account_update(new).returning(_ACCOUNTS.c.account_id)


def _unreturned_account_update(new: dict[str, ColumnElement[Any]]) -> Update:
    """`new` may carry its row's ``tenant`` and ``seen_locked_at`` (PostgreSQL's
    bulk rows, `account_update_many`); else the round's tenant, and not locked."""
    seen_locked = new.get("seen_locked_at")
    return (
        update(_ACCOUNTS)
        .where(
            _ACCOUNTS.c.tenant == new.get("tenant", _TENANT),
            _ACCOUNTS.c.account_id == new["account_id"],
            _ACCOUNTS.c.budget_tat == new["seen_budget_tat"],
            _ACCOUNTS.c.consecutive_failures == new["seen_consecutive_failures"],
            _ACCOUNTS.c.locked_at.is_(None)
            if seen_locked is None
            else _ACCOUNTS.c.locked_at.is_not_distinct_from(seen_locked),
        )
        .values({name: new[name] for name in _ACCOUNT_COLUMNS[1:]})
    )


@functools.cache
def account_update_one(dialect: str) -> Update:
    return _account_update(
        {name: bindparam(f"p_{name}", type_=kind) for name, kind in _ACCOUNT_FIELDS}
    )


# PostgreSQL's rows of `account_update_many` also carry their tenant and the lock
# state read (always none: a locked account is never compared).
POSTGRES_UPDATE_FIELDS: list[tuple[str, type[TypeEngine[Any]]]] = [
    *_ACCOUNT_FIELDS,
    ("tenant", String),
    ("seen_locked_at", BigInteger),
]


@functools.cache
def account_update_many(dialect: str) -> Update:
    """The accounts' rows bound as JSON (``p_rows``). On SQLite the rows changed
    are counted, not returned (round_sql.write_many says why).

    On PostgreSQL every condition on an account's row is a join condition with
    its JSON row, none a condition on `accounts` alone: without statistics the
    planner took `tenant = ? AND locked_at IS NULL` for one row of the table,
    looped over every account and parsed the whole JSON array for each, seconds
    for 1,000 rows (benchmarks/NOTES.md, "the twelfth session"). Now a wrong
    estimate can at worst make it hash the table.
    """
    if dialect == "sqlite":
        rows = _json_select(dialect, "p_rows", _ACCOUNT_FIELDS).subquery("new")
        return _unreturned_account_update({name: rows.c[name] for name, _ in _ACCOUNT_FIELDS})
    new = _json_rows(dialect, "new", POSTGRES_UPDATE_FIELDS)
    return _account_update({name: new.c[name] for name, _ in POSTGRES_UPDATE_FIELDS}).add_cte(new)


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


@functools.cache
def account_insert_one(dialect: str) -> Insert:
    """INSERT the account's first row, unless another round inserted it meanwhile."""
    values = {name: bindparam(f"p_{name}", type_=kind) for name, kind in _ACCOUNT_FIELDS[:4]}
    statement = _insert(dialect)(_ACCOUNTS).values(tenant=_TENANT, **values)
    inserted: Insert = statement.on_conflict_do_nothing(index_elements=_ACCOUNT_KEY).returning(
        _ACCOUNTS.c.account_id
    )
    return inserted


@functools.cache
def account_insert_many(dialect: str) -> Insert:
    """The accounts' first rows bound as JSON (``p_rows``). On SQLite the rows
    inserted are counted, not returned (round_sql.write_many says why)."""
    sqlite_rows = dialect == "sqlite"
    new = (
        _json_select(dialect, "p_rows", _ACCOUNT_FIELDS).subquery("new")
        if sqlite_rows
        else _json_rows(dialect, "new", _ACCOUNT_FIELDS)
    )
    # The WHERE resolves SQLite's parsing ambiguity of INSERT ... SELECT ... ON CONFLICT.
    rows = select(_TENANT, *(new.c[name] for name in _ACCOUNT_COLUMNS)).where(true())
    statement = _insert(dialect)(_ACCOUNTS).from_select(list(_INSERT_COLUMNS), rows)
    inserted: Insert = statement.on_conflict_do_nothing(index_elements=_ACCOUNT_KEY)
    return inserted if sqlite_rows else inserted.returning(_ACCOUNTS.c.account_id)


@functools.cache
def insert_missing_accounts() -> Insert:
    """PostgreSQL: give each account of a locked round its row, in account order,
    with a full budget and no failures, where it has none yet."""
    keys = _round_keys("postgresql").subquery()
    rows = select(
        keys.c.tenant, keys.c.account_id, literal(0, BigInteger), literal(0, Integer), null()
    ).order_by(keys.c.account_id)
    statement = postgresql.insert(_ACCOUNTS).from_select(list(_INSERT_COLUMNS), rows)
    inserted: Insert = statement.on_conflict_do_nothing(index_elements=_ACCOUNT_KEY).returning(
        _ACCOUNTS.c.account_id
    )
    return inserted


@functools.cache
def lock_accounts() -> Select[Any]:
    """PostgreSQL: lock the rows of a round's accounts (`_round_keys`), in
    account order, so that a locked round holds them to its commit."""
    return (
        select(_ACCOUNTS.c.account_id)
        .where(tuple_(_ACCOUNTS.c.account_id, _ACCOUNTS.c.tenant).in_(_round_keys("postgresql")))
        .order_by(_ACCOUNTS.c.account_id)
        .with_for_update()
    )
