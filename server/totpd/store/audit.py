"""The audit trail in the database: its rows, the statements that append them inside
the transaction of what they describe, the paged query and the retention prune.

Append-only for totpd's own paths: nothing here updates a row, and only
`AuditStore.prune_before` deletes (the retention). The rows hold names, ids,
verdicts and reasons: never a secret, code, otpauth URI or token.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Insert,
    Integer,
    String,
    Table,
    Update,
    bindparam,
    delete,
    insert,
    select,
)
from sqlalchemy.types import TypeEngine

from totpd.store import faults
from totpd.store.database import IMMEDIATE_TRANSACTION
from totpd.store.models import AuditEventRow
from totpd.store.round_sql import _json_rows

_TABLE: Table = AuditEventRow.__table__  # type: ignore[assignment]


class AuditRow(NamedTuple):
    """One event to append, in the table's column order (and the JSON row order)."""

    time_us: int
    caller: str
    tenant: str
    method: str
    account_id: str
    factor_id: str | None
    verify_result: str | None  # VerifyResult's name, e.g. "VALID"
    error_reason: str | None  # ErrorReason's name, e.g. "PERMISSION_DENIED"
    status_code: str  # the gRPC status code's name, e.g. "OK"
    step_offset: int | None
    request_id: str | None
    peer: str


class AuditRecord(NamedTuple):
    """A stored event: its id (increasing) and its row."""

    event_id: int
    row: AuditRow


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which events a query returns; None matches anything.

    `tenants`: the tenants the reader may see (None: all of them); `tenant`
    narrows further to one.
    """

    tenants: frozenset[str] | None = None
    tenant: str | None = None
    account_id: str | None = None
    caller: str | None = None
    method: str | None = None
    start_us: int | None = None  # at or after
    end_us: int | None = None  # before


_FIELDS: list[tuple[str, type[TypeEngine[Any]]]] = [
    ("time_us", BigInteger),
    ("caller", String),
    ("tenant", String),
    ("method", String),
    ("account_id", String),
    ("factor_id", String),
    ("verify_result", String),
    ("error_reason", String),
    ("status_code", String),
    ("step_offset", Integer),
    ("request_id", String),
    ("peer", String),
]
_COLUMNS = [name for name, _ in _FIELDS]


class AuditCall(NamedTuple):
    """What every event of one round shares: the call's time and identity."""

    time_us: int
    caller: str
    tenant: str
    method: str
    request_id: str | None
    peer: str


# One decided code of a round: account_id, factor_id, verify_result, step_offset.
RoundItem = tuple[str, str | None, str, int | None]


class RoundEvents(NamedTuple):
    """The events of one round's verdicts: the shared part once, the rest per item
    (the JSON rows of a batch's insert carry only what differs)."""

    call: AuditCall
    items: Sequence[RoundItem]

    def rows(self) -> list[AuditRow]:
        c = self.call
        return [
            AuditRow(
                c.time_us,
                c.caller,
                c.tenant,
                c.method,
                account_id,
                factor_id,
                result,
                None,
                OK_STATUS,
                offset,
                c.request_id,
                c.peer,
            )
            for account_id, factor_id, result, offset in self.items
        ]


OK_STATUS = "OK"

# -- appending inside a round (the DB-API path: store/rounds.py) ---------------
# Both return one row per event appended, so a round checks them like its writes.

_CALL_FIELDS: list[tuple[str, type[TypeEngine[Any]]]] = [
    ("time_us", BigInteger),
    ("caller", String),
    ("tenant", String),
    ("method", String),
    ("request_id", String),
    ("peer", String),
]
_ITEM_FIELDS: list[tuple[str, type[TypeEngine[Any]]]] = [
    ("account_id", String),
    ("factor_id", String),
    ("verify_result", String),
    ("step_offset", Integer),
]


@functools.cache
def insert_one(dialect: str) -> Insert:
    """One event, bound as plain parameters (``p_`` + column)."""
    values = {name: bindparam(f"p_{name}", type_=kind) for name, kind in _FIELDS}
    return insert(_TABLE).values(values).returning(_TABLE.c.id)


@functools.cache
def insert_many(dialect: str) -> Insert:
    """A round's events in one statement: the shared columns bound once, the items
    as one JSON array of rows (``p_rows``)."""
    new = _json_rows(dialect, "new", _ITEM_FIELDS)
    shared = [bindparam(f"p_{name}", type_=kind).label(name) for name, kind in _CALL_FIELDS]
    columns = [
        *(name for name, _ in _CALL_FIELDS),
        *(name for name, _ in _ITEM_FIELDS),
        "status_code",
    ]
    rows = select(
        *shared,
        *(new.c[name] for name, _ in _ITEM_FIELDS),
        bindparam("p_status_code", type_=String).label("status_code"),
    )
    return insert(_TABLE).from_select(columns, rows).returning(_TABLE.c.id)


def insert_values(dialect: str, events: RoundEvents) -> tuple[Insert, dict[str, object], int]:
    """The statement appending `events`, its values, and the rows it returns (to check)."""
    if len(events.items) == 1:
        return insert_one(dialect), one_event_values(events), 1
    values = {f"p_{name}": value for name, value in events.call._asdict().items()}
    values["p_status_code"] = OK_STATUS
    values["p_rows"] = json.dumps(events.items)
    return insert_many(dialect), values, len(events.items)


# -- appending inside an ORM transaction (enroll, disable, denials) -------------


def append_in(connection: Connection, events: Sequence[AuditRow]) -> None:
    """Append `events` in the caller's transaction (one executemany)."""
    if events:
        connection.execute(insert(_TABLE), [event._asdict() for event in events])


# -- reading and pruning -------------------------------------------------------


class AuditStore:
    """Denied calls' events (their own transaction), the paged query, the prune."""

    def __init__(self, engine: Engine, writer: AbstractContextManager[object]) -> None:
        self._engine = engine
        self._writer = writer  # queues SQLite's writers (see database.writer_queue)

    @faults.translated
    def append(self, events: Sequence[AuditRow]) -> None:
        """Append events that describe no other write (a denied call), in their own
        transaction."""
        if not events:
            return
        with self._writer, self._engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE_TRANSACTION: True})
            with connection.begin():
                append_in(connection, events)

    @faults.translated
    def page(self, where: AuditFilter, *, after_id: int, limit: int) -> list[AuditRecord]:
        """Up to `limit` events matching `where` with ids above `after_id`, oldest first.

        Ordered by id, which only grows: a page boundary never skips or repeats
        an event, whatever is appended meanwhile.
        """
        query = select(_TABLE.c.id, *(_TABLE.c[name] for name in _COLUMNS)).where(
            _TABLE.c.id > after_id
        )
        if where.tenants is not None:
            query = query.where(_TABLE.c.tenant.in_(sorted(where.tenants)))
        for name in ("tenant", "account_id", "caller", "method"):
            value = getattr(where, name)
            if value is not None:
                query = query.where(_TABLE.c[name] == value)
        if where.start_us is not None:
            query = query.where(_TABLE.c.time_us >= where.start_us)
        if where.end_us is not None:
            query = query.where(_TABLE.c.time_us < where.end_us)
        query = query.order_by(_TABLE.c.id).limit(limit)
        with self._engine.connect() as connection:
            return [AuditRecord(row[0], AuditRow(*row[1:])) for row in connection.execute(query)]

    @faults.translated
    def prune_before(self, cutoff_us: int, *, limit: int) -> int:
        """Delete up to `limit` events older than `cutoff_us` (the retention); returns how
        many. The only delete of the table."""
        batch = select(_TABLE.c.id).where(_TABLE.c.time_us < cutoff_us).limit(limit)
        statement = delete(_TABLE).where(_TABLE.c.id.in_(batch.scalar_subquery()))
        with self._writer, self._engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE_TRANSACTION: True})
            with connection.begin():
                return int(connection.execute(statement).rowcount)


# -- PostgreSQL: a one-row write and its event in one statement -----------------


@functools.cache
def insert_after(write: Update) -> Insert:
    """PostgreSQL: the one-row round write (a cached statement, RETURNING the factor's
    id) and its event as one statement: the event is inserted only if the write
    applied, so it returns one row or none, and stays one round trip outside a
    transaction, carrying the write's deadline condition."""
    written = write.cte("written")
    values = [bindparam(f"p_{name}", type_=kind).label(name) for name, kind in _FIELDS]
    rows = select(*values).select_from(written)
    statement: Insert = (
        insert(_TABLE).from_select(_COLUMNS, rows).returning(_TABLE.c.id).add_cte(written)
    )
    return statement


def one_event_values(events: RoundEvents) -> dict[str, object]:
    """The bound values of a round's one event (`insert_one`, `insert_after`), built
    directly: the unary hot path."""
    call = events.call
    ((account_id, factor_id, result, offset),) = events.items
    return {
        "p_time_us": call.time_us,
        "p_caller": call.caller,
        "p_tenant": call.tenant,
        "p_method": call.method,
        "p_account_id": account_id,
        "p_factor_id": factor_id,
        "p_verify_result": result,
        "p_error_reason": None,
        "p_status_code": OK_STATUS,
        "p_step_offset": offset,
        "p_request_id": call.request_id,
        "p_peer": call.peer,
    }
