"""Old databases for the upgrade tests: an empty database of either kind, and
Alembic run on it to a given revision."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from totpd.store import open_engine
from totpd.store.database import _MIGRATIONS
from totpd.store.models import Base


def alembic(engine: Engine, action: str, revision: str) -> None:
    """`action` ("upgrade" or "downgrade") to `revision`, on `engine`'s database."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def migrate_to(engine: Engine, revision: str) -> None:
    alembic(engine, "upgrade", revision)


def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> str:
    """A new empty database: SQLite in `tmp_path`, or on the throwaway PostgreSQL
    server a database named `prefix` and a random suffix (request.param says which)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.sqlite3'}"
    base = make_url(request.getfixturevalue("postgres_url"))
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = open_engine(base.render_as_string(hide_password=False))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def schema_differences(engine: Engine) -> list[Any]:
    """What Alembic finds between `engine`'s schema and store/models.py."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        return list(compare_metadata(context, Base.metadata))
