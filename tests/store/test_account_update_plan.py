"""PostgreSQL plans a round's bulk account update from its JSON rows whatever the
statistics say: never a loop over the accounts that parses the JSON array again for
each of them (seconds for 1,000 rows on a table never analyzed; benchmarks/NOTES.md,
"the twelfth session")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from totpd.store import account_sql, round_writes
from totpd.store.dbapi import compiled, json_text
from totpd.store.round_records import AccountWrite

ACCOUNTS = 5_000
UPDATED = 1_000


def _nested_loops_over_a_function(plan: dict[str, Any]) -> Iterator[str]:
    """Each Nested Loop whose inner side scans a function (run again per outer row)."""
    children = plan.get("Plans", [])
    if plan["Node Type"] == "Nested Loop" and children[1]["Node Type"] == "Function Scan":
        yield children[0]["Node Type"]
    for child in children:
        yield from _nested_loops_over_a_function(child)


@pytest.mark.parametrize("analyzed", [False, True])
def test_the_bulk_account_update_is_driven_by_its_rows(engine: Engine, analyzed: bool) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's update joins as it is written")
    rows = [(f"user-{n:05d}", 0, 0, None, None, None) for n in range(ACCOUNTS)]
    insert = compiled(account_sql.account_insert_many("postgresql"), engine.dialect)
    writes = [AccountWrite(f"user-{n:05d}", 5, 1, None, 0, 0) for n in range(UPDATED)]
    (step,) = round_writes.account_statements("postgresql", writes, "default")
    assert isinstance(step, tuple)  # the JSON statement, not one row at a time
    statement, values, _ = step
    update = compiled(statement, engine.dialect)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        # A table of its own, as a young database holds it: never analyzed, its rows
        # inserted by rounds a thousand at a time.
        cursor.execute("CREATE SCHEMA plan_check")
        cursor.execute("CREATE TABLE plan_check.accounts (LIKE public.accounts INCLUDING ALL)")
        cursor.execute("SET search_path = plan_check")
        for start in range(0, ACCOUNTS, 1_000):
            chunk = json_text(rows[start : start + 1_000])
            cursor.execute(insert.sql, insert.parameters({"p_rows": chunk, "p_tenant": "default"}))
        if analyzed:
            cursor.execute("ANALYZE plan_check.accounts")
        # Only nested loops left: with the table's estimate wrong, hashing it and
        # looping over it cost the planner about the same, and which it picks is a
        # tie. The loop it may pick must be the one driven by the JSON rows.
        cursor.execute("SET enable_hashjoin = off")
        cursor.execute("SET enable_mergejoin = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + update.sql, update.parameters(values))
        (document,) = cursor.fetchone()
        plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
        assert list(_nested_loops_over_a_function(plan)) == []
        cursor.execute(update.sql, update.parameters(values))
        assert len(cursor.fetchall()) == UPDATED  # and it writes exactly its rows
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
