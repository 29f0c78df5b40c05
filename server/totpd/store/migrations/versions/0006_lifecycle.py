"""The MFA lifecycle: recovery codes and a factor's measured clock drift.

Revision ID: 0006
Revises: 0005 (the audit trail)

Existing factors get a drift of 0 (the window centred on the server's clock,
as before); no account has recovery codes until it generates a set.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("factors") as batch:
        batch.add_column(
            sa.Column("drift_steps", sa.SmallInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "recovery_codes",
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(), nullable=False),
        sa.Column("hash_key_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("account_id", "tenant", "code_hash", name="pk_recovery_codes"),
    )


def downgrade() -> None:
    op.drop_table("recovery_codes")
    with op.batch_alter_table("factors") as batch:
        batch.drop_column("drift_steps")
