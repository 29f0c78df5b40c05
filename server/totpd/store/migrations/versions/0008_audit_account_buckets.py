"""Each audit event's account bucket, and SQLite's account index on it.

Revision ID: 0008
Revises: 0007 (the audit trail in two tables)

`audit_events.account_bucket` is `models.account_bucket(account_id)`, filled
for the rows already there. SQLite swaps its index on account_id (a random page
per event, written whole to the WAL at each commit) for one on
(account_bucket, id), which appends; PostgreSQL keeps its account_id index.
"""

import sqlalchemy as sa
from alembic import op

from totpd.store.models import account_bucket

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_EVENTS = sa.table("audit_events", sa.column("id"), sa.column("account_id"))
_BACKFILL_ROWS = 10_000  # rows read and updated per statement


def upgrade() -> None:
    op.add_column(
        "audit_events",
        sa.Column("account_bucket", sa.SmallInteger(), nullable=False, server_default="0"),
    )
    _fill_buckets()
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_audit_events_account_id", "audit_events")
        op.create_index(
            "ix_audit_events_account_bucket_id", "audit_events", ["account_bucket", "id"]
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_audit_events_account_bucket_id", "audit_events")
        op.create_index("ix_audit_events_account_id", "audit_events", ["account_id"])
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("account_bucket")


def _fill_buckets() -> None:
    """Every existing row's bucket, in id order, a bounded number of rows at a time."""
    connection = op.get_bind()
    update = sa.text("UPDATE audit_events SET account_bucket = :bucket WHERE id = :id")
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(_EVENTS.c.id, _EVENTS.c.account_id)
            .where(_EVENTS.c.id > last_id)
            .order_by(_EVENTS.c.id)
            .limit(_BACKFILL_ROWS)
        ).all()
        if not rows:
            return
        buckets = [{"id": row.id, "bucket": account_bucket(row.account_id)} for row in rows]
        changed = [values for values in buckets if values["bucket"] != 0]  # 0: the default
        if changed:
            connection.execute(update, changed)
        last_id = rows[-1].id
