"""The audit trail in two tables: what a call's events share, once per call.

Revision ID: 0007
Revises: 0006 (the MFA lifecycle)

`audit_calls` holds the time, caller, tenant, RPC, status, error reason,
request id and peer; `audit_events` keeps each event's own columns and its
call's id. Each existing event gets a call of its own, with the event's id:
event ids (what clients and page tokens see) do not change.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# What moves to the call's row, in audit_calls' column order.
_SHARED = (
    "time_us",
    "caller",
    "tenant",
    "method",
    "status_code",
    "error_reason",
    "request_id",
    "peer",
)


_OPTIONAL = ("error_reason", "request_id")


def _shared_columns(*, loose: bool = False) -> list[sa.Column[Any]]:
    """The shared columns; `loose`: all nullable (added to a table with rows)."""
    types: dict[str, sa.types.TypeEngine[Any]] = {
        "time_us": sa.BigInteger(),
        "caller": sa.String(256),
        "tenant": sa.String(128),
        "method": sa.String(32),
        "status_code": sa.String(32),
        "error_reason": sa.String(48),
        "request_id": sa.String(64),
        "peer": sa.String(256),
    }
    return [sa.Column(name, types[name], nullable=loose or name in _OPTIONAL) for name in _SHARED]


def _tables(*more: str) -> tuple[sa.TableClause, sa.TableClause]:
    """Lightweight audit_events and audit_calls, for the statements that move rows."""
    names = ("id", *_SHARED)
    return (
        sa.table("audit_events", *(sa.column(name) for name in (*names, *more))),
        sa.table("audit_calls", *(sa.column(name) for name in names)),
    )


def upgrade() -> None:
    op.create_table(
        "audit_calls",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        *_shared_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_audit_calls"),
    )
    events, calls = _tables("call_id")
    shared = [events.c[name] for name in _SHARED]
    op.execute(calls.insert().from_select(["id", *_SHARED], sa.select(events.c.id, *shared)))
    if op.get_bind().dialect.name == "postgresql":
        # The rows came with their ids: the sequence continues after them.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('audit_calls', 'id'), "
            "coalesce(max(id), 0) + 1, false) FROM audit_calls"
        )
    op.create_index("ix_audit_calls_tenant_time_us", "audit_calls", ["tenant", "time_us"])
    op.create_index("ix_audit_calls_time_us", "audit_calls", ["time_us"])

    op.drop_index("ix_audit_events_tenant_time_us", "audit_events")
    op.drop_index("ix_audit_events_time_us", "audit_events")
    op.add_column("audit_events", sa.Column("call_id", sa.BigInteger(), nullable=True))
    op.execute("UPDATE audit_events SET call_id = id")
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column("call_id", existing_type=sa.BigInteger(), nullable=False)
        for name in _SHARED:
            batch.drop_column(name)
    op.create_index("ix_audit_events_call_id", "audit_events", ["call_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_call_id", "audit_events")
    for column in _shared_columns(loose=True):
        op.add_column("audit_events", column)
    events, calls = _tables("call_id")
    of_call = sa.select(calls).where(calls.c.id == events.c.call_id)
    op.execute(
        sa.update(events).values(
            {name: of_call.with_only_columns(calls.c[name]).scalar_subquery() for name in _SHARED}
        )
    )
    with op.batch_alter_table("audit_events") as batch:
        for column in _shared_columns():
            if not column.nullable:
                batch.alter_column(column.name, existing_type=column.type, nullable=False)
        batch.drop_column("call_id")
    op.create_index("ix_audit_events_tenant_time_us", "audit_events", ["tenant", "time_us"])
    op.create_index("ix_audit_events_time_us", "audit_events", ["time_us"])
    op.drop_table("audit_calls")
