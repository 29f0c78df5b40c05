"""An audit event's id names its call (models.event_id): every writer, on both
databases and by INSERT and COPY, gives a call's events the ids call * 2^20 + 0,
1, ... in their order; reads from a call to its events (a time range, the prune)
go through that range of the primary key; and migration 0010 renumbers a 0009
database's events that way and downgrades back to call_id."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from tests.audit_rows import AUDIT_TRAIL, audit_store, event_indexes, read_plan
from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.store.conftest import one_more_failure
from tests.store.upgrades import alembic, empty_database_url, migrate_to
from totpd.domain import FactorState
from totpd.service.mfa import MfaService
from totpd.store import AttemptRequest, FactorStore, migrate, open_engine
from totpd.store.audit import AuditCall, AuditFilter, AuditRow, AuditStore, RoundEvents
from totpd.store.models import EVENT_IDS_PER_CALL, event_id


def _events_by_call(engine: Engine, caller_like: str) -> dict[int, list[tuple[int, str]]]:
    """Per call id, its events' (id, account) in id order."""
    query = text(
        f"SELECT call_id, id, account_id FROM {AUDIT_TRAIL} WHERE caller LIKE :c ORDER BY id"
    )
    calls: dict[int, list[tuple[int, str]]] = {}
    with engine.connect() as connection:
        for call_id, id_, account in connection.execute(query, {"c": caller_like}):
            calls.setdefault(call_id, []).append((id_, account))
    return calls


def _assert_numbered(calls: dict[int, list[tuple[int, str]]]) -> None:
    for call_id, events in calls.items():
        assert [id_ for id_, _ in events] == [event_id(call_id, p) for p in range(len(events))]


@pytest.mark.usefixtures("audit_writes")
def test_every_writer_numbers_a_calls_events_from_its_call(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    accounts = [f"{account_id}-{n}" for n in range(7)]
    for account in accounts:
        enroll_active(service, clock, account)
    store = FactorStore(engine)
    now = int(clock.now)

    def round_of(shares: list[list[str]], caller: str) -> None:
        requests = [AttemptRequest(a, 6, None) for share in shares for a in share]
        read = store.attempts.read(requests, state=FactorState.ACTIVE, now=now)
        events = [
            RoundEvents(
                AuditCall(now * 1_000_000, f"{caller}-{i}", "default", "Verify", None, "p"),
                [(a, None, "INVALID", None) for a in share],
            )
            for i, share in enumerate(shares)
        ]
        writes = [one_more_failure(factor) for factor in read]
        assert store.attempts.write_if_unchanged(
            writes, state=FactorState.ACTIVE, now=now, events=events
        )

    round_of([accounts[:1]], "unary")  # one call, one event
    round_of([accounts[1:4]], "batch")  # one call, several
    round_of([accounts[4:6], accounts[6:7]], "coalesced")  # several calls
    audit_store(engine).append(  # outside a round (denials)
        [
            AuditRow(
                1, "denied", "default", "Verify", a, None, None, None, "DENIED", None, None, "p"
            )
            for a in accounts[:3]
        ]
    )
    expected = {
        "unary-0": accounts[:1],
        "batch-0": accounts[1:4],
        "coalesced-0": accounts[4:6],
        "coalesced-1": accounts[6:7],
        "denied": accounts[:3],
    }
    for caller, in_order in expected.items():
        calls = _events_by_call(engine, caller)
        assert len(calls) == 1
        _assert_numbered(calls)
        assert [account for _, account in next(iter(calls.values()))] == in_order


def test_a_call_of_more_events_than_its_ids_is_refused() -> None:
    assert event_id(7, EVENT_IDS_PER_CALL - 1) == 8 * EVENT_IDS_PER_CALL - 1
    with pytest.raises(ValueError, match="at most"):
        event_id(7, EVENT_IDS_PER_CALL)
    with pytest.raises(ValueError, match="at most"):
        event_id(7, -1)


def _plan(engine: Engine, read: Callable[[AuditStore], object]) -> str:
    store = audit_store(engine)
    row = AuditRow(5, "c", "default", "Verify", "a", None, None, None, "OK", None, None, "p")
    store.append([row._replace(time_us=t, account_id=f"user-{t}") for t in range(1, 60)])
    return read_plan(engine, lambda: read(store))


def test_reads_from_calls_reach_their_events_through_the_id_range(planning_engine: Engine) -> None:
    by_time = AuditFilter(start_us=10, end_us=20)
    page = _plan(planning_engine, lambda store: store.page(by_time, after_id=0, limit=10))
    prune = _plan(planning_engine, lambda store: store.prune_before(20, limit=10))
    if planning_engine.dialect.name == "sqlite":
        # SQLite walks a page's events in id order (its ORDER BY), each call by its id.
        assert "SEARCH audit_calls USING INTEGER PRIMARY KEY (rowid=?)" in page
        assert "SEARCH audit_events USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in prune
    else:
        assert "ix_audit_calls_time_us" in page
        assert "Index Cond: ((id >= (audit_calls.id * '1048576'::bigint))" in page
        assert "Scan using pk_audit_events" in prune
    for plan in (page, prune):
        assert "SCAN audit_events" not in plan and "Seq Scan" not in plan


def test_the_prune_deletes_whole_calls_and_their_events(engine: Engine) -> None:
    store = audit_store(engine)
    row = AuditRow(5, "c", "default", "Verify", "a", None, None, None, "OK", None, None, "p")
    for t in (100, 200, 300):
        store.append([row._replace(time_us=t, account_id=f"{t}-{n}") for n in range(3)])
    assert store.prune_before(250, limit=4) == 4  # one call whole, one in part
    assert store.prune_before(250, limit=4) == 2
    left = store.page(AuditFilter(), after_id=0, limit=10)
    assert [r.row.account_id for r in left] == ["300-0", "300-1", "300-2"]
    with engine.connect() as connection:
        assert connection.execute(text("SELECT time_us FROM audit_calls")).scalars().all() == [300]


# -- migration 0010 ---------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    return open_engine(empty_database_url(request, tmp_path, "audit_event_ids"))


def test_a_0009_database_with_events_upgrades_and_downgrades(old_engine: Engine) -> None:
    migrate_to(old_engine, "0009")
    # Two calls whose events interleave in id order (PostgreSQL's concurrent
    # rounds), and a call of one event.
    old = [(1, 11, "a"), (2, 11, "b"), (3, 12, "c"), (4, 11, "d"), (5, 13, "e"), (6, 12, "f")]
    with old_engine.begin() as connection:
        for call_id in (11, 12, 13):
            connection.execute(
                text(
                    "INSERT INTO audit_calls (id, time_us, caller, tenant, method, status_code,"
                    " peer) VALUES (:id, :t, 'login', 'default', 'BatchVerify', 'OK', 'p')"
                ),
                {"id": call_id, "t": call_id * 1000},
            )
        connection.execute(
            text(
                "INSERT INTO audit_events (id, call_id, account_id, account_bucket,"
                " verify_result) VALUES (:id, :call, :account, 0, 'INVALID')"
            ),
            [{"id": i, "call": c, "account": a} for i, c, a in old],
        )
        if old_engine.dialect.name == "postgresql":
            for table in ("audit_calls", "audit_events"):
                connection.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 20)")
                )
    migrate(old_engine)
    assert event_indexes(old_engine) == {"ix_audit_events_account_bucket_id"}
    columns = {column["name"] for column in inspect(old_engine).get_columns("audit_events")}
    assert "call_id" not in columns
    renumbered = {
        "a": event_id(11, 0),
        "b": event_id(11, 1),
        "d": event_id(11, 2),
        "c": event_id(12, 0),
        "f": event_id(12, 1),
        "e": event_id(13, 0),
    }
    store = audit_store(old_engine)
    records = store.page(AuditFilter(), after_id=0, limit=10)
    assert {r.row.account_id: r.event_id for r in records} == renumbered
    assert [r.row.time_us for r in records] == [11_000] * 3 + [12_000] * 2 + [13_000]
    in_time = store.page(AuditFilter(start_us=12_000, end_us=13_000), after_id=0, limit=10)
    assert [r.row.account_id for r in in_time] == ["c", "f"]
    # A new call's events follow, above every id the old scheme gave.
    new = AuditRow(
        30_000, "login", "default", "Verify", "g", None, "VALID", None, "OK", 0, None, "p"
    )
    store.append([new, new._replace(account_id="h")])
    with old_engine.connect() as connection:
        new_call = connection.execute(text("SELECT max(id) FROM audit_calls")).scalar_one()
    assert new_call > 13
    after = store.page(AuditFilter(), after_id=event_id(13, 0), limit=10)
    assert [r.row.account_id for r in after] == ["g", "h"]
    assert [r.event_id for r in after] == [event_id(new_call, 0), event_id(new_call, 1)]

    alembic(old_engine, "downgrade", "0009")
    assert event_indexes(old_engine) == {
        "ix_audit_events_account_bucket_id",
        "ix_audit_events_call_id",
    }
    with old_engine.begin() as connection:
        rows = connection.execute(
            text("SELECT id, call_id, account_id FROM audit_events ORDER BY id")
        ).all()
        assert {account: call for _, call, account in rows} == {
            "a": 11, "b": 11, "c": 12, "d": 11, "e": 13, "f": 12, "g": new_call, "h": new_call
        }  # fmt: skip
        # The old schema's writers take ids from the sequence again, after the kept ones.
        added = connection.execute(
            text(
                "INSERT INTO audit_events (call_id, account_id, account_bucket) "
                "VALUES (:call, 'i', 0) RETURNING id"
            ),
            {"call": new_call},
        ).scalar_one()
    assert added > max(id_ for id_, _, _ in rows)
    old_engine.dispose()
