"""Migration 0007: the audit trail split into audit_calls and audit_events matches
the models on both databases; a database at 0006 with events in it upgrades (each
event gets a call of its own) and downgrades back to one table."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from tests.audit_rows import audit_store
from tests.store.test_audit_account_buckets import ACCOUNT_INDEX
from tests.store.upgrades import alembic, empty_database_url, migrate_to, schema_differences
from totpd.store import migrate, open_engine
from totpd.store.audit import AuditFilter, AuditRow
from totpd.store.models import event_id

OLD_EVENTS = [
    # id, time_us, caller, tenant, method, account, factor, result, reason, status, offset,
    # request id, peer
    (3, 1_000, "login", "shop", "BatchVerify", "alice", "f1", "VALID", None, "OK", 0, None, "p1"),
    (4, 1_000, "login", "shop", "BatchVerify", "bob", "f2", "INVALID", None, "OK", None, None,
     "p1"),
    (9, 2_000, "spy", "bank", "Verify", "carol", None, None, "PERMISSION_DENIED",
     "PERMISSION_DENIED", None, "r-1", "p2"),
]  # fmt: skip
_OLD_COLUMNS = (
    "id, time_us, caller, tenant, method, account_id, factor_id, verify_result, "
    "error_reason, status_code, step_offset, request_id, peer"
)


def test_the_migrated_schema_matches_the_models(engine: Engine) -> None:
    differences = schema_differences(engine)
    assert [d for d in differences if "audit_" in repr(d)] == []
    indexes = {
        table: {index["name"] for index in inspect(engine).get_indexes(table)}
        for table in ("audit_calls", "audit_events")
    }
    assert indexes == {
        "audit_calls": {"ix_audit_calls_tenant_time_us", "ix_audit_calls_time_us"},
        "audit_events": {ACCOUNT_INDEX},
    }
    for table in ("audit_calls", "audit_events"):
        columns = {column["name"] for column in inspect(engine).get_columns(table)}
        # Nothing that could hold a secret, a code, a URI or a token.
        assert not {"secret", "code", "uri", "token", "otpauth_uri"} & columns


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    return open_engine(empty_database_url(request, tmp_path, "audit_calls"))


def _rows(engine: Engine, query: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(query))]


def test_a_0006_database_with_events_upgrades_and_downgrades(old_engine: Engine) -> None:
    migrate_to(old_engine, "0006")
    names = ", ".join(f":v{i}" for i in range(13))
    with old_engine.begin() as connection:
        for event in OLD_EVENTS:
            connection.execute(
                text(f"INSERT INTO audit_events ({_OLD_COLUMNS}) VALUES ({names})"),
                {f"v{i}": value for i, value in enumerate(event)},
            )
        if old_engine.dialect.name == "postgresql":  # as if the ids came from the sequence
            connection.execute(
                text("SELECT setval(pg_get_serial_sequence('audit_events', 'id'), 9)")
            )
    migrate(old_engine)
    # Each event gets a call of its own, with the event's id, and reads back as it
    # was written (0010 then gave it the first id of that call's).
    store = audit_store(old_engine)
    records = store.page(AuditFilter(), after_id=0, limit=10)
    assert [(r.event_id, *r.row) for r in records] == [
        (event_id(old[0], 0), *old[1:]) for old in OLD_EVENTS
    ]
    assert _rows(old_engine, "SELECT id FROM audit_calls ORDER BY id") == [(3,), (4,), (9,)]
    bank = store.page(AuditFilter(tenant="bank"), after_id=0, limit=9)
    assert [r.event_id for r in bank] == [event_id(9, 0)]
    # New events follow the old ones, with ids above theirs (the sequences continued).
    new = AuditRow(
        3_000, "login", "shop", "Verify", "dave", "f4", "VALID", None, "OK", 1, None, "p3"
    )
    store.append([new, new._replace(account_id="erin")])
    after = store.page(AuditFilter(), after_id=event_id(9, 0), limit=10)
    assert [r.row.account_id for r in after] == ["dave", "erin"]
    assert _rows(old_engine, "SELECT count(*) FROM audit_calls") == [(4,)]  # one for both

    alembic(old_engine, "downgrade", "0006")
    assert "audit_calls" not in inspect(old_engine).get_table_names()
    back = _rows(old_engine, f"SELECT {_OLD_COLUMNS} FROM audit_events ORDER BY id")
    assert [row[1:] for row in back[:3]] == [old[1:] for old in OLD_EVENTS]
    assert [row[5] for row in back[3:]] == ["dave", "erin"]
    indexes = {index["name"] for index in inspect(old_engine).get_indexes("audit_events")}
    assert indexes == {
        "ix_audit_events_tenant_time_us",
        "ix_audit_events_account_id",
        "ix_audit_events_time_us",
    }
    old_engine.dispose()
