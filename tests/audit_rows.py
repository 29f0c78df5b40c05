"""The audit trail as tests read it: every event joined with its call's row, one
row per event with the columns of the API's AuditEvent (the store splits them
over audit_events and audit_calls)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from sqlalchemy import Engine, event, inspect, text

from totpd.store.audit import AuditStore
from totpd.store.models import EVENT_IDS_PER_CALL

# An event's call, from its id (models.event_id).
CALL_OF_EVENT = f"audit_events.id / {EVENT_IDS_PER_CALL}"
# A FROM item: `SELECT caller FROM {AUDIT_TRAIL} WHERE method = 'Verify' ORDER BY id`.
AUDIT_TRAIL = (
    f"(SELECT audit_events.id AS id, {CALL_OF_EVENT} AS call_id, time_us, caller, "
    "tenant, method, account_id, factor_id, verify_result, error_reason, status_code, "
    "step_offset, request_id, peer FROM audit_events "
    f"JOIN audit_calls ON audit_calls.id = {CALL_OF_EVENT}) AS audit_trail"
)
# The tables the trail is stored in, for whole-table checks.
AUDIT_TABLES = ("audit_calls", "audit_events")


def events(engine: Engine) -> list[dict[str, Any]]:
    """Every event of the trail, oldest first, as the API's columns."""
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT * FROM {AUDIT_TRAIL} ORDER BY id"))
        return [dict(row._mapping) for row in rows]


def verdict_events(engine: Engine) -> list[dict[str, Any]]:
    """The events of decided codes, oldest first."""
    return [e for e in events(engine) if e["verify_result"] is not None]


def audit_store(engine: Engine) -> AuditStore:
    """The store's audit part, for a test that writes alone (no writer queue)."""
    return AuditStore(engine, writer=nullcontext())


def read_plan(engine: Engine, read: Callable[[], object]) -> str:
    """The query plan, as text, of the first SELECT of audit_events that `read` runs
    (which must find something). On PostgreSQL with sequential scans off: a test's
    few rows make a scan the cheaper plan, and the question is whether an index serves."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "audit_events" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        assert read()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = seen[0]
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return " ".join(str(row[-1]) for row in plan)
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        return " ".join(str(row[0]) for row in plan)


def event_indexes(engine: Engine) -> set[str]:
    """The names of audit_events' indexes (its primary key's aside)."""
    return {index["name"] or "" for index in inspect(engine).get_indexes("audit_events")}
