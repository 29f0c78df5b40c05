"""Migration 0006: recovery codes and a factor's drift match the models on both
databases; a database written by the previous release (0005) upgrades keeping its
factors (drift 0) and downgrades back."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect, text

from tests.store.upgrades import alembic, migrate_to, schema_differences
from totpd.store import migrate, open_engine


def test_the_migrated_schema_matches_the_models(engine: Engine) -> None:
    differences = schema_differences(engine)
    assert [d for d in differences if "recovery_codes" in repr(d) or "drift" in repr(d)] == []
    columns = {column["name"] for column in inspect(engine).get_columns("recovery_codes")}
    # A keyed hash only: no column could hold a code.
    assert columns == {"account_id", "tenant", "code_hash", "hash_key_id", "created_at", "used_at"}


def test_a_0005_database_upgrades_and_downgrades(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    migrate_to(engine, "0005")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO factors (id, tenant, account_id, label, issuer, algorithm, digits, "
                "period_seconds, state, last_used_step, failed_attempts, blocked_until, "
                "created_at) VALUES ('f1', 'default', 'alice', 'Phone', 'Example', 'SHA1', 6, "
                "30, 'active', 7, 0, 0, 1)"
            )
        )
    migrate(engine)
    assert "recovery_codes" in inspect(engine).get_table_names()
    with engine.connect() as connection:
        kept = connection.execute(text("SELECT last_used_step, drift_steps FROM factors")).one()
        assert tuple(kept) == (7, 0)
    alembic(engine, "downgrade", "0005")
    assert "recovery_codes" not in inspect(engine).get_table_names()
    columns = {column["name"] for column in inspect(engine).get_columns("factors")}
    assert "drift_steps" not in columns
    with engine.connect() as connection:
        assert connection.execute(text("SELECT last_used_step FROM factors")).scalar_one() == 7
    engine.dispose()
