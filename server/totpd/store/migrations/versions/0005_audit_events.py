"""The audit trail: one row per decided code, state change or denied call.

Revision ID: 0005
Revises: 0004 (the tenants)

A new table only: existing rows are untouched, and the trail starts at the upgrade.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("time_us", sa.BigInteger(), nullable=False),
        sa.Column("caller", sa.String(256), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("factor_id", sa.String(36), nullable=True),
        sa.Column("verify_result", sa.String(16), nullable=True),
        sa.Column("error_reason", sa.String(48), nullable=True),
        sa.Column("status_code", sa.String(32), nullable=False),
        sa.Column("step_offset", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("peer", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_tenant_time_us", "audit_events", ["tenant", "time_us"])
    op.create_index("ix_audit_events_account_id", "audit_events", ["account_id"])
    op.create_index("ix_audit_events_time_us", "audit_events", ["time_us"])


def downgrade() -> None:
    op.drop_table("audit_events")
