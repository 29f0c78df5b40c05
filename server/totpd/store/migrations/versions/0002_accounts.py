"""Create the accounts table: per-account failure budget and consecutive-failure lock.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No rows to fill in: an account without a row has a full budget and no failures.
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("budget_tat", sa.BigInteger(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("locked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("account_id", name="pk_accounts"),
    )


def downgrade() -> None:
    op.drop_table("accounts")
