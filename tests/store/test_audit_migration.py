"""Migration 0005: the audit table matches the models on both databases, and a database
with factors upgrades to it (through 0004, the tenants) and back keeping them."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from tests.store.upgrades import alembic, migrate_to
from totpd.store import migrate, open_engine
from totpd.store.models import Base


def test_the_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, Base.metadata)
    assert [d for d in differences if "audit_events" in repr(d)] == []
    indexes = {index["name"] for index in inspect(engine).get_indexes("audit_events")}
    assert indexes == {
        "ix_audit_events_tenant_time_us",
        "ix_audit_events_account_id",
        "ix_audit_events_time_us",
    }
    columns = {column["name"] for column in inspect(engine).get_columns("audit_events")}
    # Nothing that could hold a secret, a code, a URI or a token.
    assert not {"secret", "code", "uri", "token", "otpauth_uri"} & columns


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
