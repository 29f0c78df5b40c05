"""The statements that append a round's audit events, in the round's transaction
(store/rounds.py runs them on the DB-API cursor).

A round's groups (one per call, audit.RoundEvents) take two statements on
SQLite whatever their number: the call rows, then every event as one JSON
array, each naming its call by its place among the rows just inserted (SQLite
has one writer: they took the last ids). An event's id is made of its call's
id and its place in the call (models.event_id). PostgreSQL inserts both in one
statement, the call rows in a data-modifying CTE whose RETURNING ids the events
join; its one-row round write and its event are one statement too. From
COPY_FROM_EVENTS events on, PostgreSQL inserts the call rows and then COPYs the
events (`CopiedEvents`).
PostgreSQL's statements return one row per event, checked like the writes (the
one-row write's event depends on the write); SQLite's insert unconditionally and
return nothing (fetching 1,000 ids back cost a batch more than the check is worth).
In a PostgreSQL round's transaction the events' statement rides in the factors'
write (`with_write`), which then returns the write's rows only: the events'
insert is unconditional there, and a write short of its rows rolls it back.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Insert,
    Integer,
    Select,
    String,
    Update,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.selectable import CTE
from sqlalchemy.types import TypeEngine

from totpd.store.audit import CALLS, EVENTS, AuditCall, RoundEvents, RoundItem
from totpd.store.dbapi import CopyInto, RawConnection, json_text
from totpd.store.models import EVENT_IDS_PER_CALL, account_bucket, event_id

# (statement, values, rows it returns; None: it returns none)
AuditStatement = tuple[Insert, dict[str, object], int | None]

# PostgreSQL COPYs a round's events from this many on: COPY fills heap pages in
# bulk where INSERT ... SELECT adds rows one by one (1,000 events: ~15% less
# time), but the call rows' ids then take a round trip of their own (at 100
# events the two cost the same; benchmarks/NOTES.md).
COPY_FROM_EVENTS = 200

_Fields = list[tuple[str, type[TypeEngine[Any]]]]
# AuditCall's fields, bound as ``p_`` + name (``p_tenant`` is the round's too).
_CALL_FIELDS: _Fields = [
    ("time_us", BigInteger),
    ("caller", String),
    ("tenant", String),
    ("method", String),
    ("request_id", String),
    ("peer", String),
    ("status_code", String),
    ("error_reason", String),
]
# A RoundItem's fields, then the store's own: the account's bucket (models.py).
_ITEM_FIELDS: _Fields = [
    ("account_id", String),
    ("factor_id", String),
    ("verify_result", String),
    ("step_offset", Integer),
    ("account_bucket", Integer),
]
_CALL_COLUMNS = [name for name, _ in _CALL_FIELDS]
_EVENT_COLUMNS = ["id", *(name for name, _ in _ITEM_FIELDS)]
# _EVENT_COLUMNS as PostgreSQL's binary COPY sends them: each its column's type.
_EVENTS_COPY = CopyInto(
    EVENTS.name, tuple(_EVENT_COLUMNS), ("int8", "text", "text", "text", "int4", "int2")
)
# A JSON row's call: its place (1, 2, ...) among the round's calls.
_CALL_NO: _Fields = [("call_no", Integer)]
# A JSON row's event: its place (0, 1, ...) among its call's.
_PLACE: _Fields = [("place", Integer)]


class CopiedEvents(NamedTuple):
    """PostgreSQL: a round's call rows, one statement returning their ids, then
    all their events by one binary COPY."""

    calls: Insert  # RETURNING the new ids, which follow the groups' order
    values: dict[str, object]
    groups: Sequence[RoundEvents]

    def run(self, connection: RawConnection) -> bool:
        """Append them; False if a row is missing (the round must not commit)."""
        ids = sorted(row[0] for row in connection.run(self.calls, self.values))
        if len(ids) != len(self.groups):
            return False
        rows = [
            (event_id(call_id, place), *item, account_bucket(item[0]))
            for call_id, group in zip(ids, self.groups, strict=True)
            for place, item in enumerate(group.items)
        ]
        return connection.copy(_EVENTS_COPY, rows) == len(rows)


AuditStep = AuditStatement | CopiedEvents


def statements(dialect: str, groups: Sequence[RoundEvents]) -> list[AuditStep]:
    """The statements appending `groups` (those with items), in order."""
    postgres = dialect == "postgresql"
    if len(groups) != 1:
        groups = [group for group in groups if group.items]
        if len(groups) > 1:
            if postgres and sum(len(group.items) for group in groups) >= COPY_FROM_EVENTS:
                return [CopiedEvents(_calls(dialect), _calls_values(groups), groups)]
            return _statements_of_calls(dialect, groups)
        if not groups:
            return []
    (group,) = groups
    if not group.items:
        return []
    if postgres and len(group.items) >= COPY_FROM_EVENTS:
        return [CopiedEvents(_one_call(dialect), _call_values(group.call), groups)]
    if len(group.items) == 1:  # the unary hot path
        values = one_event_values(group)
        event = _one_event(dialect)
    else:
        values = _call_values(group.call)
        values["p_items"] = json_text(_item_rows(group.items))
        event = _events_of_one_call(dialect)
    if postgres:
        return [(event, values, len(group.items))]
    return [(_one_call(dialect), values, None), (event, values, None)]


def _calls_values(groups: list[RoundEvents]) -> dict[str, object]:
    """`_calls`' values: the calls as one JSON array, each with its place."""
    return {"p_calls": json_text([[n, *group.call] for n, group in enumerate(groups, 1)])}


def _statements_of_calls(dialect: str, groups: list[RoundEvents]) -> list[AuditStep]:
    items = json_text(
        [(n, *row) for n, group in enumerate(groups, 1) for row in _item_rows(group.items)]
    )
    values = {**_calls_values(groups), "p_items": items, "p_call_count": len(groups)}
    if dialect == "postgresql":
        events = sum(len(group.items) for group in groups)
        return [(_events_of_calls(dialect), values, events)]
    return [(_calls(dialect), values, None), (_events_of_calls(dialect), values, None)]


@functools.cache
def insert_after(write: Update) -> Insert:
    """PostgreSQL: the one-row round write (a cached statement, RETURNING the factor's
    id) and its event as one statement: the call and its event are inserted only
    if the write applied, so it returns one row or none, and stays one round trip
    outside a transaction, carrying the write's deadline condition."""
    written = write.cte("written")
    call = (
        insert(CALLS)
        .from_select(_CALL_COLUMNS, select(*_call_binds()).select_from(written))
        .returning(CALLS.c.id)
        .cte("new_call")
    )
    event = select(_first_event(call.c.id), *_item_binds()).select_from(call)
    statement: Insert = (
        insert(EVENTS)
        .from_select(_EVENT_COLUMNS, event)
        .returning(EVENTS.c.id)
        .add_cte(written)
        .add_cte(call)
    )
    return statement


def with_write(
    write: Update, write_values: dict[str, object], steps: list[AuditStep]
) -> tuple[Select[Any], dict[str, object]] | None:
    """PostgreSQL: a round's factor write (RETURNING the ids it wrote) and its audit
    statement as one statement returning the write's ids, a round trip fewer in
    the round's transaction; None when the audit takes other than one statement
    (COPY) or the two bind a shared name to different values."""
    if len(steps) != 1 or isinstance(steps[0], CopiedEvents):
        return None
    ((events, values, _),) = steps
    if any(values[name] != value for name, value in write_values.items() if name in values):
        return None
    return _write_then(write, events), {**values, **write_values}


@functools.cache
def _write_then(write: Update, events: Insert) -> Select[Any]:
    """`write`'s returned ids, with `events` run in the same statement (a
    data-modifying CTE runs whether or not the query reads it)."""
    written = write.cte("written")
    return select(written.c.id).add_cte(events.cte("events"))


def one_event_values(events: RoundEvents) -> dict[str, object]:
    """The bound values of a round's one event (`insert_after`, `_one_event`), built
    directly: the unary hot path."""
    ((account_id, factor_id, result, offset),) = events.items
    values = _call_values(events.call)
    values["p_account_id"] = account_id
    values["p_factor_id"] = factor_id
    values["p_verify_result"] = result
    values["p_step_offset"] = offset
    values["p_account_bucket"] = account_bucket(account_id)
    return values


def _item_rows(items: Sequence[RoundItem]) -> list[tuple[object, ...]]:
    """`items` as rows of _PLACE + _ITEM_FIELDS."""
    if len(items) > EVENT_IDS_PER_CALL:
        raise ValueError(f"a call holds at most {EVENT_IDS_PER_CALL} events")
    return [(place, *item, account_bucket(item[0])) for place, item in enumerate(items)]


def _call_values(call: AuditCall) -> dict[str, object]:
    return {
        "p_time_us": call.time_us,
        "p_caller": call.caller,
        "p_tenant": call.tenant,
        "p_method": call.method,
        "p_request_id": call.request_id,
        "p_peer": call.peer,
        "p_status_code": call.status_code,
        "p_error_reason": call.error_reason,
    }


def _call_binds() -> list[ColumnElement[Any]]:
    return [bindparam(f"p_{name}", type_=kind).label(name) for name, kind in _CALL_FIELDS]


def _item_binds() -> list[ColumnElement[Any]]:
    return [bindparam(f"p_{name}", type_=kind).label(name) for name, kind in _ITEM_FIELDS]


def _json_rows(dialect: str, name: str, parameter: str, fields: _Fields) -> CTE:
    """`WITH name AS (SELECT ... FROM <JSON array of rows>)`, bound as `parameter`
    (as round_sql._json_rows: one compiled statement for any number of rows)."""
    rows = bindparam(parameter, type_=String)
    if dialect == "postgresql":
        elements = func.jsonb_array_elements(cast(rows, JSONB)).table_valued("value")
    else:
        elements = func.json_each(rows).table_valued("value")
    columns = [
        cast(elements.c.value.op("->>")(literal_column(str(index))), kind()).label(column)
        for index, (column, kind) in enumerate(fields)
    ]
    return select(*columns).select_from(elements).cte(name)


def _first_event(call_id: ColumnElement[Any]) -> ColumnElement[Any]:
    """The id of the call's first event (models.event_id)."""
    return call_id * EVENT_IDS_PER_CALL


def _event_at(call_id: ColumnElement[Any], place: ColumnElement[Any]) -> ColumnElement[Any]:
    return (_first_event(call_id) + place).label("id")


def _last_call_id() -> ColumnElement[Any]:
    """SQLite: the id of the last call row inserted, by this round (it holds the
    write lock: no other writer inserted since)."""
    return select(func.max(CALLS.c.id)).scalar_subquery()


@functools.cache
def _one_call(dialect: str) -> Insert:
    """One call row (PostgreSQL: RETURNING its id)."""
    statement = insert(CALLS).from_select(_CALL_COLUMNS, select(*_call_binds()))
    return statement.returning(CALLS.c.id) if dialect == "postgresql" else statement


@functools.cache
def _one_event(dialect: str) -> Insert:
    """One call's one event (PostgreSQL: with its call row)."""
    if dialect == "postgresql":
        call = _call_cte()
        rows: Select[Any] = select(_first_event(call.c.id), *_item_binds()).select_from(call)
        return insert(EVENTS).from_select(_EVENT_COLUMNS, rows).returning(EVENTS.c.id).add_cte(call)
    first = _first_event(_last_call_id())
    return insert(EVENTS).from_select(_EVENT_COLUMNS, select(first, *_item_binds()))


@functools.cache
def _events_of_one_call(dialect: str) -> Insert:
    """One call's events, their rows as one JSON array (``p_items``)."""
    new = _json_rows(dialect, "new_events", "p_items", _PLACE + _ITEM_FIELDS)
    items = [new.c[name] for name, _ in _ITEM_FIELDS]
    if dialect == "postgresql":
        call = _call_cte()
        rows: Select[Any] = select(_event_at(call.c.id, new.c.place), *items).select_from(call, new)
        statement = insert(EVENTS).from_select(_EVENT_COLUMNS, rows).add_cte(call)
        return statement.returning(EVENTS.c.id).add_cte(new)
    rows = select(_event_at(_last_call_id(), new.c.place), *items)
    return insert(EVENTS).from_select(_EVENT_COLUMNS, rows).add_cte(new)


def _call_cte() -> CTE:
    """PostgreSQL: the call row, inserted in a CTE RETURNING its id."""
    return insert(CALLS).values(dict(_call_columns())).returning(CALLS.c.id).cte("new_call")


def _call_columns() -> list[tuple[str, ColumnElement[Any]]]:
    return [(name, bindparam(f"p_{name}", type_=kind)) for name, kind in _CALL_FIELDS]


@functools.cache
def _calls(dialect: str) -> Insert:
    """Several calls' rows (``p_calls``: [call_no, *AuditCall]), in call_no order."""
    new = _json_rows(dialect, "new_calls", "p_calls", _CALL_NO + _CALL_FIELDS)
    rows = select(*(new.c[name] for name in _CALL_COLUMNS)).order_by(new.c.call_no)
    statement = insert(CALLS).from_select(_CALL_COLUMNS, rows).add_cte(new)
    return statement.returning(CALLS.c.id) if dialect == "postgresql" else statement


@functools.cache
def _events_of_calls(dialect: str) -> Insert:
    """Several calls' events (``p_items``: [call_no, *item]); PostgreSQL inserts the
    calls (`_calls`) in the same statement."""
    new = _json_rows(dialect, "new_events", "p_items", _CALL_NO + _PLACE + _ITEM_FIELDS)
    items = [new.c[name] for name, _ in _ITEM_FIELDS]
    if dialect == "postgresql":
        calls = _calls(dialect).cte("calls")
        numbered = select(
            calls.c.id, func.row_number().over(order_by=calls.c.id).label("call_no")
        ).cte("numbered")
        rows: Select[Any] = select(_event_at(numbered.c.id, new.c.place), *items).select_from(
            new.join(numbered, numbered.c.call_no == new.c.call_no)
        )
        statement = insert(EVENTS).from_select(_EVENT_COLUMNS, rows).add_cte(calls)
        return statement.add_cte(numbered).returning(EVENTS.c.id).add_cte(new)
    # The calls took the last ids, in call_no order.
    first = _last_call_id() - bindparam("p_call_count", type_=Integer)
    rows = select(_event_at(first + new.c.call_no, new.c.place), *items)
    return insert(EVENTS).from_select(_EVENT_COLUMNS, rows).add_cte(new)
