"""Each audit event's id names its call: no call_id column, no index on it.

Revision ID: 0010
Revises: 0009 (PostgreSQL's account lookups through the bucket index)

An event's id becomes `models.event_id(call_id, place)`: its call's id times
EVENT_IDS_PER_CALL plus its place among the call's events (in id order), so a
call's events are one range of the primary key and `ix_audit_events_call_id`,
one of three index entries every event cost, goes (benchmarks/NOTES.md).

Existing events are renumbered (their order is kept, and every id the new scheme
gives is above every id the old one gave, so a reader's page token from before
never skips an event written after). The table is rewritten in the migration's
transaction: audit writes (so every verification) wait while it runs; migrate
in a quiet hour (docs/deploy.md). The downgrade keeps the new ids and restores
the column, its index and the id sequence.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from totpd.store.models import EVENT_IDS_PER_CALL

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _own_columns() -> list[sa.Column[Any]]:
    """Every column but the id and call_id (new objects: a Column joins one table)."""
    return [
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("account_bucket", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("factor_id", sa.String(36), nullable=True),
        sa.Column("verify_result", sa.String(16), nullable=True),
        sa.Column("step_offset", sa.Integer(), nullable=True),
    ]


def _id(*, sequence: bool) -> sa.Column[Any]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=sequence,
    )


def _replace_events(*columns: sa.Column[Any], rows: str) -> None:
    """audit_events rebuilt as `columns` (the PK first) filled by the SELECT `rows`
    over the old table; then the account index, on the new table."""
    op.create_table(
        "audit_events_new",
        *columns,
        sa.PrimaryKeyConstraint("id", name="pk_audit_events_new"),
    )
    names = ", ".join(column.name for column in columns)
    op.execute(f"INSERT INTO audit_events_new ({names}) {rows}")
    op.drop_table("audit_events")
    op.rename_table("audit_events_new", "audit_events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE audit_events RENAME CONSTRAINT pk_audit_events_new TO pk_audit_events"
        )
    op.create_index("ix_audit_events_account_bucket_id", "audit_events", ["account_bucket", "id"])


def _own() -> str:
    return ", ".join(column.name for column in _own_columns())


def upgrade() -> None:
    own = _own()
    # The place among the call's events, counted from 0 in id order.
    place = "row_number() OVER (PARTITION BY call_id ORDER BY id) - 1"
    _replace_events(
        _id(sequence=False),
        *_own_columns(),
        rows=f"SELECT call_id * {EVENT_IDS_PER_CALL} + {place}, {own} FROM audit_events",  # noqa: S608
    )


def downgrade() -> None:
    own = _own()
    _replace_events(
        _id(sequence=True),
        sa.Column("call_id", sa.BigInteger(), nullable=False),
        *_own_columns(),
        rows=f"SELECT id, id / {EVENT_IDS_PER_CALL}, {own} FROM audit_events",  # noqa: S608
    )
    op.create_index("ix_audit_events_call_id", "audit_events", ["call_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER SEQUENCE audit_events_new_id_seq RENAME TO audit_events_id_seq")
        # The rows came with their ids: the sequence continues after them.
        op.execute(
            "SELECT setval('audit_events_id_seq', coalesce(max(id), 0) + 1, false)"
            " FROM audit_events"
        )
