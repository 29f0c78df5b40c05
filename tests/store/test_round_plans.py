"""The plan of a round's multi-row account write: a round of a few accounts searches
the accounts' key once per row, not the whole table, on a table grown to where
PostgreSQL's default guess for a JSON array (100 rows) made a hash of every
account look cheaper (store/round_sql.py, `_json_rows`)."""

from __future__ import annotations

from sqlalchemy import Engine, text

from totpd.calls import DEFAULT_TENANT
from totpd.store import account_sql, round_sql
from totpd.store.dbapi import compiled
from totpd.store.round_records import AccountWrite

ACCOUNTS = 12_000  # about 110 pages: under the size at which PostgreSQL searched anyway
ROUND = 8


def _grow_accounts(engine: Engine) -> None:
    rows = [{"a": f"user-{n}", "t": DEFAULT_TENANT} for n in range(ACCOUNTS)]
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO accounts (account_id, tenant, budget_tat, consecutive_failures) "
                "VALUES (:a, :t, 0, 0)"
            ),
            rows,
        )
        connection.execute(text("ANALYZE"))


def _plan(engine: Engine, generic: bool) -> str:
    writes = [AccountWrite(f"user-{n * 997}", 5, 1, None, 0, 0) for n in range(ROUND)]
    statement = compiled(account_sql.account_update_many(engine.dialect.name), engine.dialect)
    values = {"p_tenant": DEFAULT_TENANT, **round_sql.json_rows_values(writes)}
    parameters = statement.parameters(values)
    if isinstance(parameters, list):  # positional (SQLite)
        parameters = tuple(parameters)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement.sql}", parameters)
            return " ".join(str(row[-1]) for row in plan)
        if generic:  # the plan psycopg's prepared statement settles on after five runs
            connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        plan = connection.exec_driver_sql(f"EXPLAIN {statement.sql}", parameters)
        return " ".join(str(row[0]) for row in plan)


def test_a_small_rounds_account_update_searches_each_accounts_key(
    planning_engine: Engine,
) -> None:
    _grow_accounts(planning_engine)
    for generic in (False, True):
        plan = _plan(planning_engine, generic)
        if planning_engine.dialect.name == "sqlite":
            assert "SEARCH accounts USING INDEX" in plan, plan
            assert "SCAN accounts" not in plan, plan
        else:
            assert "Index Scan using pk_accounts on accounts" in plan, plan
            assert "Seq Scan on accounts" not in plan, plan
