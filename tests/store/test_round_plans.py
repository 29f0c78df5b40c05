"""The plans of a small round's multi-row statements: a round of a few accounts
searches each account's key, not the whole table, in tables grown to where
PostgreSQL's default guess for a JSON array (100 rows) made a hash of every row
look cheaper (store/round_sql.py, `_json_rows` and `_key_elements`)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, Insert, Select, Update, insert, text

from totpd.calls import DEFAULT_TENANT
from totpd.domain import FactorState
from totpd.store import account_sql, round_sql
from totpd.store.dbapi import compiled
from totpd.store.models import FactorRow
from totpd.store.round_records import AccountWrite

ROWS = 12_000  # about 110 pages of accounts: under the size at which PostgreSQL searched anyway
ROUND = 8
ACCOUNTS = [f"user-{n * 997 % ROWS}" for n in range(ROUND)]


def _grow(engine: Engine) -> None:
    """ROWS accounts, each with an active factor, and the planner's statistics of them."""
    accounts = [{"a": f"user-{n}", "t": DEFAULT_TENANT} for n in range(ROWS)]
    factors = [
        {
            "id": f"factor-{n:08d}",
            "tenant": DEFAULT_TENANT,
            "account_id": f"user-{n}",
            "label": "phone",
            "issuer": "totpd",
            "algorithm": "SHA1",
            "digits": 6,
            "period_seconds": 30,
            "state": FactorState.ACTIVE.value,
            "created_at": 0,
        }
        for n in range(ROWS)
    ]
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO accounts (account_id, tenant, budget_tat, consecutive_failures) "
                "VALUES (:a, :t, 0, 0)"
            ),
            accounts,
        )
        connection.execute(insert(FactorRow), factors)
        connection.execute(text("ANALYZE"))


def _plan(engine: Engine, statement: Select[Any] | Update | Insert, values: dict[str, Any]) -> str:
    """`statement`'s plans as text: SQLite's, or PostgreSQL's custom and generic plans
    (the generic one is what psycopg's prepared statement settles on)."""
    sql = compiled(statement, engine.dialect)
    parameters = sql.parameters(values)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql.sql}", tuple(parameters))
            return " ".join(str(row[-1]) for row in plan)
        plans = []
        for mode in ("force_custom_plan", "force_generic_plan"):
            connection.exec_driver_sql(f"SET plan_cache_mode = {mode}")
            plan = connection.exec_driver_sql(f"EXPLAIN {sql.sql}", parameters)
            plans.append(" ".join(str(row[0]) for row in plan))
        connection.rollback()
        return " | ".join(plans)


def _searches(engine: Engine, plan: str, table: str) -> None:
    """`table` is searched by an index in every plan, never scanned whole."""
    if engine.dialect.name == "sqlite":
        assert f"SEARCH {table} USING" in plan, plan
        assert f"SCAN {table}" not in plan, plan
    else:
        for one in plan.split(" | "):  # custom and generic
            assert re.search(rf"Index (Only )?Scan using \w+ on {table}", one), one
            assert f"Seq Scan on {table}" not in one, one


def test_small_rounds_search_each_accounts_key(planning_engine: Engine) -> None:
    engine, dialect = planning_engine, planning_engine.dialect.name
    _grow(engine)
    read = round_sql.read_many(dialect, FactorState.ACTIVE, lock=False)
    keys = round_sql.key_values(ACCOUNTS, DEFAULT_TENANT)
    _searches(engine, _plan(engine, read, {"p_now": 0, **keys}), "factors")

    writes = [AccountWrite(account, 5, 1, None, 0, 0) for account in ACCOUNTS]
    update = account_sql.account_update_many(dialect)
    values = {"p_tenant": DEFAULT_TENANT, **round_sql.json_rows_values(writes)}
    _searches(engine, _plan(engine, update, values), "accounts")

    if dialect == "postgresql":  # a locked round locks its accounts first
        _searches(engine, _plan(engine, account_sql.lock_accounts(), keys), "accounts")
