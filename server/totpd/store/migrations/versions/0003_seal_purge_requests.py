"""Account-bound secrets (secret_format), ended_at for the purge, request records.

Revision ID: 0003
Revises: 0002

Existing secrets keep format 1 (the server default) until the keyring step
(service/resealing.py) re-seals them as format 2; a migration cannot see the
keyring. Factors already disabled or expired get `ended_at` = the migration
time, so they are kept one full retention period from the upgrade.
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases: no table rebuild, existing rows get the default.
    op.add_column(
        "factors", sa.Column("secret_format", sa.SmallInteger(), nullable=False, server_default="1")
    )
    op.add_column("factors", sa.Column("ended_at", sa.BigInteger(), nullable=True))
    op.create_index("ix_factors_ended_at", "factors", ["ended_at"])
    op.create_index("ix_factors_expires_at", "factors", ["expires_at"])
    factors = sa.table(
        "factors", sa.column("state", sa.String), sa.column("ended_at", sa.BigInteger)
    )
    op.execute(
        factors.update()
        .where(factors.c.state.in_(("disabled", "expired")))
        .values(ended_at=int(time.time()))
    )
    op.create_table(
        "request_records",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("fingerprint_key_id", sa.String(32), nullable=False),
        sa.Column("claim_token", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("lease_until", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "scope", name="pk_request_records"),
    )
    op.create_index("ix_request_records_expires_at", "request_records", ["expires_at"])


def downgrade() -> None:
    op.drop_table("request_records")
    op.drop_index("ix_factors_expires_at", "factors")
    op.drop_index("ix_factors_ended_at", "factors")
    with op.batch_alter_table("factors") as batch:
        batch.drop_column("ended_at")
        batch.drop_column("secret_format")
