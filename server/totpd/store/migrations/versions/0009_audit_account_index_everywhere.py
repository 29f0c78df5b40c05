"""PostgreSQL's account lookups through the bucket index too.

Revision ID: 0009
Revises: 0008 (each audit event's account bucket)

PostgreSQL swaps its index on audit_events.account_id, which takes each event's
entry on a leaf page at random, for the (account_bucket, id) index SQLite has
had since 0008, which appends (store/models.py; the measurement is in
benchmarks/NOTES.md). SQLite is already there.

The index is built in the migration's transaction: audit writes (so every
verification) wait while it builds, which on a large trail takes a while, as
0008's fill does; migrate in a quiet hour (docs/deploy.md).
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_audit_events_account_bucket_id", "audit_events", ["account_bucket", "id"]
        )
        op.drop_index("ix_audit_events_account_id", "audit_events")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_audit_events_account_id", "audit_events", ["account_id"])
        op.drop_index("ix_audit_events_account_bucket_id", "audit_events")
