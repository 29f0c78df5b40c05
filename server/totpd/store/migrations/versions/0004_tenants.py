"""Tenants: every factor, account and request record lives in one; older rows in "default".

Revision ID: 0004
Revises: 0003

The tenant joins every key, after the account or request id (account_id,
tenant, ...), so `alice` of two tenants are two accounts. The id leads: no
statement filters on the tenant alone, and SQLite's planner, which has no
statistics, would scan a tenant's rows for each row of a bulk write.

The column is added with the server default "default", which fills the
existing rows, and the default is then dropped: from here on every write
names its tenant. SQLite rebuilds a table to change its primary key (batch
mode); PostgreSQL alters it in place.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_LIVE = sa.text("state IN ('pending', 'active')")
_DEFAULT_TENANT = "default"  # totpd.calls.DEFAULT_TENANT, as of this revision
_TABLES = ("factors", "accounts", "request_records")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(
            table,
            sa.Column("tenant", sa.String(64), nullable=False, server_default=_DEFAULT_TENANT),
        )
    # The old indexes go before SQLite rebuilds the table, the new ones come after
    # (a rebuild would reflect a partial index without its WHERE).
    op.drop_index("ix_factors_account_id_state", "factors")
    op.drop_index("uq_factors_account_id_label_live", "factors")
    with op.batch_alter_table("factors") as batch:
        batch.alter_column("tenant", existing_type=sa.String(64), server_default=None)
    op.create_index(
        "ix_factors_account_id_tenant_state", "factors", ["account_id", "tenant", "state"]
    )
    op.create_index(
        "uq_factors_account_id_tenant_label_live",
        "factors",
        ["account_id", "tenant", "label"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )
    _rekey("accounts", ["account_id", "tenant"])
    _rekey("request_records", ["request_id", "scope", "tenant"])


def _rekey(table: str, key: list[str]) -> None:
    """The table's primary key becomes `key`; its tenant column loses the default."""
    with op.batch_alter_table(table) as batch:
        batch.alter_column("tenant", existing_type=sa.String(64), server_default=None)
        batch.drop_constraint(f"pk_{table}", type_="primary")
        batch.create_primary_key(f"pk_{table}", key)


def downgrade() -> None:
    # Only a database holding nothing but the default tenant goes back losslessly;
    # rows of other tenants would collide on the old keys, so they are refused.
    bind = op.get_bind()
    for table in _TABLES:
        others = bind.execute(
            sa.text(f"SELECT 1 FROM {table} WHERE tenant != :tenant LIMIT 1"),  # noqa: S608
            {"tenant": _DEFAULT_TENANT},
        ).first()
        if others is not None:
            raise RuntimeError(f"{table} holds rows of tenants other than default")
    op.drop_index("uq_factors_account_id_tenant_label_live", "factors")
    op.drop_index("ix_factors_account_id_tenant_state", "factors")
    for table, key in (("accounts", ["account_id"]), ("request_records", ["request_id", "scope"])):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", key)
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tenant")
    op.create_index("ix_factors_account_id_state", "factors", ["account_id", "state"])
    op.create_index(
        "uq_factors_account_id_label_live",
        "factors",
        ["account_id", "label"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )
