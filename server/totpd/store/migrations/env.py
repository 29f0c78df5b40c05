"""Alembic environment: runs on the connection handed over by `database.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from totpd.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    # `alembic` run by hand: use the URL from the ini file or -x url=...
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("pass the database URL: alembic -x url=... upgrade head")
    with create_engine(url).begin() as own_connection:
        context.configure(connection=own_connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
