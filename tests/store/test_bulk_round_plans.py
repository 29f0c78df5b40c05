"""PostgreSQL plans a round's bulk statements from their JSON rows whatever the
statistics say: never a loop over a table that parses the JSON array again for
each of its rows, or that compares every JSON row with every row of the table
(seconds for 1,000 rows on a table never analyzed;
benchmarks/NOTES.md, "the twelfth session" and "the thirteenth session").

Each test copies the shape of a young database: a table of a schema of its own,
its rows inserted a thousand at a time, maybe never analyzed, and only nested
loops left to the planner. With the table's estimate wrong, hashing it and
looping over it cost the planner about the same, and which it picks is a tie:
the loop it may pick must be the one driven by the JSON rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Dialect, Engine, text

from totpd.domain import NEVER_USED_STEP, FactorState
from totpd.store import account_sql, round_sql, round_writes
from totpd.store.dbapi import CompiledStatement, compiled, json_text
from totpd.store.round_records import AccountWrite, FactorWrite

pytestmark = pytest.mark.postgres  # SQLite's statements join as they are written

ROWS = 5_000
IN_ROUND = 1_000
TENANT = "default"
NOW = 1_700_000_000

# A thousand factors in %(state)s, one per account, numbered from %(start)s;
# pending ones expire after NOW.
_FACTORS = f"""
INSERT INTO factors (id, tenant, account_id, label, issuer, algorithm, digits,
    period_seconds, state, secret_key_id, secret_nonce, secret_ciphertext,
    last_used_step, failed_attempts, blocked_until, created_at, expires_at,
    secret_format, drift_steps)
SELECT 'factor-' || lpad(n::text, 5, '0'), '{TENANT}', 'user-' || lpad(n::text, 5, '0'),
    'phone', 'totpd', 'SHA1', 6, 30, %(state)s::text, 'key', '\\x00'::bytea, '\\x00'::bytea,
    {NEVER_USED_STEP}, 0, 0, 0, CASE WHEN %(state)s::text = 'pending' THEN {NOW + 600} END, 2, 0
FROM generate_series(%(start)s, %(start)s + 999) AS n
"""
STATES = [FactorState.ACTIVE, FactorState.PENDING]


def _loops_over_every_pair(plan: dict[str, Any]) -> Iterator[str]:
    """Each Nested Loop that tries every pair of its two sides: its inner side
    scans a function (run again per outer row), or it joins by a filter over
    the pairs, not by an index search driven by the outer row."""
    children = plan.get("Plans", [])
    if plan["Node Type"] == "Nested Loop" and (
        "Join Filter" in plan or children[1]["Node Type"] == "Function Scan"
    ):
        yield children[1]["Node Type"]
    for child in children:
        yield from _loops_over_every_pair(child)


@contextmanager
def _young_table(
    engine: Engine, table: str, analyzed: bool, fill: Callable[[Any, int], None]
) -> Iterator[Any]:
    """A cursor on which the round's tables are fresh copies in a schema of their
    own, `table` filled a thousand rows at a time (`fill(cursor, first row)`),
    planned with nested loops only; all of it rolled back afterwards."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("CREATE SCHEMA plan_check")
        for copied in ("factors", "accounts"):
            cursor.execute(f"CREATE TABLE plan_check.{copied} (LIKE public.{copied} INCLUDING ALL)")
        cursor.execute("SET search_path = plan_check")
        for start in range(0, ROWS, 1_000):
            fill(cursor, start)
        if analyzed:
            cursor.execute(f"ANALYZE plan_check.{table}")
        cursor.execute("SET enable_hashjoin = off")
        cursor.execute("SET enable_mergejoin = off")
        yield cursor
    finally:
        raw.rollback()
        raw.close()
    with engine.connect() as connection:  # nothing of it stayed
        assert (
            connection.execute(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = 'plan_check'")
            ).scalar_one()
            == 0
        )


def _loops_over_pairs(
    cursor: Any, statement: CompiledStatement, values: dict[str, object]
) -> list[str]:
    cursor.execute("EXPLAIN (FORMAT JSON) " + statement.sql, statement.parameters(values))
    (document,) = cursor.fetchone()
    plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
    return list(_loops_over_every_pair(plan))


def _factors_in(state: FactorState) -> Callable[[Any, int], None]:
    def fill(cursor: Any, start: int) -> None:
        cursor.execute(_FACTORS, {"start": start, "state": state.value})

    return fill


def _accounts(dialect: Dialect) -> Callable[[Any, int], None]:
    """A thousand accounts' rows, as the rounds insert them."""
    insert = compiled(account_sql.account_insert_many("postgresql"), dialect)

    def fill(cursor: Any, start: int) -> None:
        rows = [(f"user-{n:05d}", 0, 0, None, None, None) for n in range(start, start + 1_000)]
        values = {"p_rows": json_text(rows), "p_tenant": TENANT}
        cursor.execute(insert.sql, insert.parameters(values))

    return fill


@pytest.mark.parametrize("analyzed", [False, True])
def test_the_bulk_account_update_is_driven_by_its_rows(
    _postgres_engine: Engine, analyzed: bool
) -> None:
    writes = [AccountWrite(f"user-{n:05d}", 5, 1, None, 0, 0) for n in range(IN_ROUND)]
    (step,) = round_writes.account_statements("postgresql", writes, TENANT)
    assert isinstance(step, tuple)  # the JSON statement, not one row at a time
    statement, values, _ = step
    update = compiled(statement, _postgres_engine.dialect)
    with _young_table(
        _postgres_engine, "accounts", analyzed, _accounts(_postgres_engine.dialect)
    ) as cursor:
        assert _loops_over_pairs(cursor, update, values) == []
        cursor.execute(update.sql, update.parameters(values))
        assert len(cursor.fetchall()) == IN_ROUND  # and it writes exactly its rows


@pytest.mark.parametrize("lock", [False, True])
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("analyzed", [False, True])
def test_the_bulk_factor_read_is_driven_by_its_keys(
    _postgres_engine: Engine, analyzed: bool, state: FactorState, lock: bool
) -> None:
    read = compiled(round_sql.read_many("postgresql", state, lock), _postgres_engine.dialect)
    accounts = [f"user-{n:05d}" for n in range(IN_ROUND)]
    values = round_writes.bulk_read_values(
        "postgresql", accounts, now=NOW, tenant=TENANT, state=state
    )
    with _young_table(_postgres_engine, "factors", analyzed, _factors_in(state)) as cursor:
        assert _loops_over_pairs(cursor, read, values) == []
        cursor.execute(read.sql, read.parameters(values))
        assert len(cursor.fetchall()) == IN_ROUND  # and it reads exactly its factors


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("analyzed", [False, True])
def test_the_bulk_factor_write_is_driven_by_its_rows(
    _postgres_engine: Engine, analyzed: bool, state: FactorState
) -> None:
    failed = FactorWrite("", 1, 0, NEVER_USED_STEP, 0, 0, 0, NEVER_USED_STEP)
    writes = [failed._replace(factor_id=f"factor-{n:05d}") for n in range(IN_ROUND)]
    statement, values = round_writes.write_statement(
        "postgresql", writes, state, NOW, TENANT, activate=True
    )
    write = compiled(statement, _postgres_engine.dialect)
    with _young_table(_postgres_engine, "factors", analyzed, _factors_in(state)) as cursor:
        assert _loops_over_pairs(cursor, write, values) == []
        cursor.execute(write.sql, write.parameters(values))
        assert len(cursor.fetchall()) == IN_ROUND  # and it writes exactly its rows


@pytest.mark.parametrize("analyzed", [False, True])
def test_the_locked_rounds_account_lock_is_driven_by_its_keys(
    _postgres_engine: Engine, analyzed: bool
) -> None:
    values = {"p_keys": round_writes.round_keys([f"user-{n:05d}" for n in range(IN_ROUND)], TENANT)}
    with _young_table(
        _postgres_engine, "accounts", analyzed, _accounts(_postgres_engine.dialect)
    ) as cursor:
        for statement in (account_sql.insert_missing_accounts(), account_sql.lock_accounts()):
            sql = compiled(statement, _postgres_engine.dialect)
            assert _loops_over_pairs(cursor, sql, values) == []
        cursor.execute(sql.sql, sql.parameters(values))
        assert len(cursor.fetchall()) == IN_ROUND  # it locks exactly its accounts
