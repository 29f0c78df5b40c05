"""Migration 0005: a database with factors upgrades to the audit trail (through 0004,
the tenants) and back keeping them. Its schema today: test_audit_calls_migration.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from tests.store.upgrades import alembic, migrate_to
from totpd.store import migrate, open_engine


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Engine:
    return open_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")


def test_an_older_database_upgrades_and_downgrades(sqlite_engine: Engine) -> None:
    migrate_to(sqlite_engine, "0003")
    assert "audit_events" not in inspect(sqlite_engine).get_table_names()
    with sqlite_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO accounts (account_id, budget_tat, consecutive_failures) "
                "VALUES ('alice', 0, 2)"
            )
        )
    migrate(sqlite_engine)
    assert "audit_events" in inspect(sqlite_engine).get_table_names()
    with sqlite_engine.connect() as connection:
        kept = connection.execute(text("SELECT consecutive_failures, tenant FROM accounts")).one()
        assert tuple(kept) == (2, "default")  # 0004 ran on the way
        assert connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 0
    alembic(sqlite_engine, "downgrade", "0004")
    assert "audit_events" not in inspect(sqlite_engine).get_table_names()
    with sqlite_engine.connect() as connection:
        # Back to the tenants' revision: their column and the row stay.
        kept = connection.execute(text("SELECT consecutive_failures, tenant FROM accounts")).one()
        assert tuple(kept) == (2, "default")
    sqlite_engine.dispose()
