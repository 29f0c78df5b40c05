"""Shapes the store's hot path relies on without checking at run time."""

from sqlalchemy.dialects import sqlite

from totpd.domain import FactorState
from totpd.store import CandidateFactor, round_writes
from totpd.store.dbapi import compiled
from totpd.store.round_records import AccountWrite, FactorWrite
from totpd.store.round_sql import READ_COLUMNS


def test_candidate_factor_fields_follow_the_read() -> None:
    # `Attempts.read` builds each CandidateFactor from a row by position.
    columns = [column.name for column in READ_COLUMNS]
    assert columns == ["id", *CandidateFactor._fields[1:]]


def test_sqlites_bulk_writes_are_counted_by_the_driver_not_returned() -> None:
    """A row count the driver can give: SQLite's driver counts only a statement
    that starts with INSERT or UPDATE (a WITH would read as -1, and every
    optimistic round would fall back to a locked one without any test noticing
    a wrong verdict), and one without RETURNING steps once, not once a row."""
    writes = [FactorWrite(f"f{n}", 0, 0, 10, 1, 0, 0, 9) for n in range(2)]
    accounts = [
        AccountWrite("a1", 5, 1, None, 4, 0),  # an update
        AccountWrite("a2", 5, 1, None, 4, 0),
        AccountWrite("a3", 5, 1, None, None, None),  # inserts
        AccountWrite("a4", 5, 1, None, None, None),
    ]
    steps = round_writes.round_statements(
        "sqlite", writes, FactorState.ACTIVE, 300, True, accounts, "default", []
    )
    assert isinstance(steps, list)
    counted = [step for step in steps if isinstance(step, round_writes.Counted)]
    assert [step.expected for step in counted] == [2, 2, 2]  # updates, inserts, factors
    dialect = sqlite.dialect()
    for step in counted:
        sql = compiled(step.statement, dialect).sql
        assert sql.split(None, 1)[0] in ("UPDATE", "INSERT")
        assert "RETURNING" not in sql
