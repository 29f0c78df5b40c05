"""The audit trail in the database: its rows, the appends inside the transaction of
what they describe, the paged query and the retention prune.

Two tables: `audit_calls` holds what every event of a call shares (time,
caller, tenant, RPC, status, request id, peer) once per call, `audit_events`
each event's own columns, under an id that names its call (models.event_id);
readers see them joined, as `AuditRow`s. The statements that append a round's
events are in audit_sql.py.

Append-only for totpd's own paths: nothing here updates a row, and only
`AuditStore.prune_before` deletes (the retention). The rows hold names, ids,
verdicts and reasons: never a secret, code, otpauth URI or token.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    delete,
    exists,
    insert,
    select,
)

from totpd.store import faults
from totpd.store.database import IMMEDIATE_TRANSACTION
from totpd.store.models import (
    EVENT_IDS_PER_CALL,
    AuditCallRow,
    AuditEventRow,
    account_bucket,
    event_id,
)

CALLS: Table = AuditCallRow.__table__  # type: ignore[assignment]
EVENTS: Table = AuditEventRow.__table__  # type: ignore[assignment]

OK_STATUS = "OK"


class AuditRow(NamedTuple):
    """One event as readers see it (its call's columns and its own), in the order
    of the API's AuditEvent."""

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

    def call(self) -> AuditCall:
        """The part the event shares with the other events of its call."""
        return AuditCall(
            self.time_us,
            self.caller,
            self.tenant,
            self.method,
            self.request_id,
            self.peer,
            self.status_code,
            self.error_reason,
        )


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


class AuditCall(NamedTuple):
    """What every event of one call shares: one `audit_calls` row."""

    time_us: int
    caller: str
    tenant: str
    method: str
    request_id: str | None
    peer: str
    status_code: str = OK_STATUS
    error_reason: str | None = None


# One decided code of a round: account_id, factor_id, verify_result, step_offset.
RoundItem = tuple[str, str | None, str | None, int | None]


class RoundEvents(NamedTuple):
    """The events of one call's verdicts in a round: the call once, the rest per item."""

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
                c.error_reason,
                c.status_code,
                offset,
                c.request_id,
                c.peer,
            )
            for account_id, factor_id, result, offset in self.items
        ]


def grouped(events: Sequence[AuditRow]) -> list[RoundEvents]:
    """`events` as one group per call (events sharing every call column), in order."""
    groups: dict[AuditCall, list[RoundItem]] = {}
    for event in events:
        items = groups.setdefault(event.call(), [])
        items.append((event.account_id, event.factor_id, event.verify_result, event.step_offset))
    return [RoundEvents(call, items) for call, items in groups.items()]


# -- appending inside an ORM transaction (enroll, disable, denials) -------------


def append_in(connection: Connection, events: Sequence[AuditRow]) -> None:
    """Append `events` in the caller's transaction: a call row per call, then its
    events (few rows: the rounds' bulk statements are in audit_sql.py)."""
    for group in grouped(events):
        statement = insert(CALLS).values(group.call._asdict()).returning(CALLS.c.id)
        call_id = connection.execute(statement).scalar_one()
        connection.execute(
            insert(EVENTS),
            [
                {
                    "id": event_id(call_id, place),
                    "account_id": account_id,
                    "account_bucket": account_bucket(account_id),
                    "factor_id": factor_id,
                    "verify_result": result,
                    "step_offset": offset,
                }
                for place, (account_id, factor_id, result, offset) in enumerate(group.items)
            ],
        )


# -- reading and pruning -------------------------------------------------------

# AuditRow's fields, each from its table.
_ROW_COLUMNS = [(EVENTS if name in EVENTS.c else CALLS).c[name] for name in AuditRow._fields]


def _events_of(call_id: ColumnElement[int]) -> ColumnElement[bool]:
    """The events of the call `call_id`: its range of event ids, in both directions
    (the equality finds a call from an event, the range a call's events)."""
    first = call_id * EVENT_IDS_PER_CALL
    return and_(
        call_id == EVENTS.c.id // EVENT_IDS_PER_CALL,
        EVENTS.c.id >= first,
        EVENTS.c.id < first + EVENT_IDS_PER_CALL,
    )


_TRAIL = EVENTS.join(CALLS, _events_of(CALLS.c.id))


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
        query = select(EVENTS.c.id, *_ROW_COLUMNS).select_from(_TRAIL).where(EVENTS.c.id > after_id)
        if where.tenants is not None:
            query = query.where(CALLS.c.tenant.in_(sorted(where.tenants)))
        for column in (CALLS.c.tenant, EVENTS.c.account_id, CALLS.c.caller, CALLS.c.method):
            value: Any = getattr(where, column.name)
            if value is not None:
                query = query.where(column == value)
        if where.account_id is not None:  # the account index is the bucket's (models.py)
            query = query.where(EVENTS.c.account_bucket == account_bucket(where.account_id))
        if where.start_us is not None:
            query = query.where(CALLS.c.time_us >= where.start_us)
        if where.end_us is not None:
            query = query.where(CALLS.c.time_us < where.end_us)
        query = query.order_by(EVENTS.c.id).limit(limit)
        with self._engine.connect() as connection:
            return [AuditRecord(row[0], AuditRow(*row[1:])) for row in connection.execute(query)]

    @faults.translated
    def prune_before(self, cutoff_us: int, *, limit: int) -> int:
        """Delete up to `limit` events of calls older than `cutoff_us` (the retention),
        and the calls left without events; returns how many events. The only
        delete of the tables.

        From the oldest calls to their events' id ranges, in two statements: a
        join leaves SQLite free to scan every event for old calls instead.
        """
        old_calls = (
            select(CALLS.c.id).where(CALLS.c.time_us < cutoff_us).order_by(CALLS.c.id).limit(limit)
        )
        with self._writer, self._engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE_TRANSACTION: True})
            with connection.begin():
                calls = list(connection.execute(old_calls).scalars())
                if not calls:
                    return 0
                # Between the first call's first id and the last's last, the events
                # of these calls (not of a newer call whose id fell among them).
                events = (
                    select(EVENTS.c.id)
                    .where(
                        EVENTS.c.id >= event_id(calls[0], 0),
                        EVENTS.c.id < event_id(calls[-1] + 1, 0),
                        (EVENTS.c.id // EVENT_IDS_PER_CALL).in_(calls),
                    )
                    .order_by(EVENTS.c.id)
                    .limit(limit)
                )
                ids = list(connection.execute(events).scalars())
                if ids:
                    connection.execute(delete(EVENTS).where(EVENTS.c.id.in_(ids)))
                left = exists().where(_events_of(CALLS.c.id))
                connection.execute(delete(CALLS).where(CALLS.c.id.in_(calls), ~left))
                return len(ids)
