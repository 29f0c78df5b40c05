"""A round may decide codes for several calls (a coalesced round): each call's
events keep its own identity, and all of them commit with the round's writes,
on the optimistic and the locked path, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from tests.audit_rows import AUDIT_TRAIL
from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.store.conftest import one_more_failure
from totpd.domain import FactorState
from totpd.service.mfa import MfaService
from totpd.store import AttemptRequest, CandidateFactor, FactorStore, dbapi
from totpd.store.audit import AuditCall, RoundEvents

# Each test with the events INSERTed and COPYed (tests/conftest.py audit_writes).
pytestmark = pytest.mark.usefixtures("audit_writes")


def _groups(read: list[CandidateFactor], now_us: int) -> list[RoundEvents]:
    return [
        RoundEvents(
            AuditCall(now_us, f"caller-{i}", "default", "Verify", f"request-{i}", f"peer-{i}"),
            [(factor.account_id, factor.factor_id, "INVALID", None)],
        )
        for i, factor in enumerate(read)
    ]


def _stored(engine: Engine) -> set[tuple[str, str | None, str | None, str]]:
    query = text(f"SELECT caller, request_id, account_id, peer FROM {AUDIT_TRAIL}")
    with engine.connect() as connection:
        return {tuple(row) for row in connection.execute(query)}  # type: ignore[misc]


def _expected(read: list[CandidateFactor]) -> set[tuple[str, str | None, str | None, str]]:
    return {
        (f"caller-{i}", f"request-{i}", factor.account_id, f"peer-{i}")
        for i, factor in enumerate(read)
    }


def _enrolled_requests(
    service: MfaService, clock: Clock, account_id: str, suffixes: tuple[str, ...]
) -> list[AttemptRequest]:
    """Enrolls one active factor per suffixed account; the attempt requests of all."""
    for suffix in suffixes:
        enroll_active(service, clock, account_id + suffix)
    return [AttemptRequest(account_id + s, 6, None) for s in suffixes]


def test_an_optimistic_round_writes_every_calls_events(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    requests = _enrolled_requests(service, clock, account_id, ("-a", "-b", "-c"))
    store = FactorStore(engine)
    now = int(clock.now)
    read = store.attempts.read(requests, state=FactorState.ACTIVE, now=now)
    before = _stored(engine)
    writes = [one_more_failure(factor) for factor in read]
    events = _groups(read, now * 1_000_000)
    assert store.attempts.write_if_unchanged(
        writes, state=FactorState.ACTIVE, now=now, events=events
    )
    assert _stored(engine) - before == _expected(read)


def test_a_locked_round_writes_every_calls_events(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    requests = _enrolled_requests(service, clock, account_id, ("-a", "-b"))
    store = FactorStore(engine)
    now = int(clock.now)
    before = _stored(engine)
    with store.attempts.locked() as locked:
        read = locked.read(requests, state=FactorState.ACTIVE, now=now)
        locked.write([one_more_failure(f) for f in read], state=FactorState.ACTIVE, now=now)
        locked.record(_groups(read, now * 1_000_000))
    assert _stored(engine) - before == _expected(read)


def test_a_stale_round_writes_no_event_of_any_call(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    requests = _enrolled_requests(service, clock, account_id, ("-a", "-b"))
    store = FactorStore(engine)
    now = int(clock.now)
    read = store.attempts.read(requests, state=FactorState.ACTIVE, now=now)
    stale = [one_more_failure(factor) for factor in read]
    # Another round counts first: the stale round's writes and events all fail.
    assert store.attempts.write_if_unchanged(stale, state=FactorState.ACTIVE, now=now)
    before = _stored(engine)
    assert not store.attempts.write_if_unchanged(
        stale, state=FactorState.ACTIVE, now=now, events=_groups(read, now * 1_000_000)
    )
    assert _stored(engine) == before


def test_each_event_names_its_own_call_and_each_call_is_stored_once(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    suffixes = ("-a", "-b", "-c", "-d")
    requests = _enrolled_requests(service, clock, account_id, suffixes)
    store = FactorStore(engine)
    now = int(clock.now)
    read = store.attempts.read(requests, state=FactorState.ACTIVE, now=now)
    # Three calls: two items, one, one (a coalesced round of a batch and two unary calls).
    shares = [read[:2], read[2:3], read[3:]]
    events = [
        RoundEvents(
            AuditCall(now * 1_000_000, f"caller-{i}", "default", "Verify", None, f"peer-{i}"),
            [(f.account_id, f.factor_id, "INVALID", None) for f in share],
        )
        for i, share in enumerate(shares)
    ]
    with engine.connect() as connection:
        calls_before = connection.execute(text("SELECT count(*) FROM audit_calls")).scalar_one()
    writes = [one_more_failure(factor) for factor in read]
    assert store.attempts.write_if_unchanged(
        writes, state=FactorState.ACTIVE, now=now, events=events
    )
    query = f"SELECT caller, account_id, call_id FROM {AUDIT_TRAIL} WHERE caller LIKE :a"
    with engine.connect() as connection:
        rows = connection.execute(text(query), {"a": "caller-%"}).all()
        calls_after = connection.execute(text("SELECT count(*) FROM audit_calls")).scalar_one()
    assert calls_after - calls_before == 3
    assert {(caller, account) for caller, account, _ in rows} == {
        (f"caller-{i}", f.account_id) for i, share in enumerate(shares) for f in share
    }
    # The two events of the first call share its row.
    call_of = {account: call for _, account, call in rows}
    assert call_of[read[0].account_id] == call_of[read[1].account_id]
    assert len(set(call_of.values())) == 3


def test_a_round_that_wrote_some_of_its_rows_keeps_no_event(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    """On PostgreSQL the events ride in the write's own statement (audit_sql.with_write),
    which inserts them whatever the write matched: the round's transaction takes
    them back with the rows it did write."""
    requests = _enrolled_requests(service, clock, account_id, ("-a", "-b", "-c"))
    store = FactorStore(engine)
    now = int(clock.now)
    read = store.attempts.read(requests, state=FactorState.ACTIVE, now=now)
    # Another round counts a failure on the second factor only.
    assert store.attempts.write_if_unchanged(
        [one_more_failure(read[1])], state=FactorState.ACTIVE, now=now
    )
    before = _stored(engine)
    assert not store.attempts.write_if_unchanged(
        [one_more_failure(factor) for factor in read],
        state=FactorState.ACTIVE,
        now=now,
        events=_groups(read, now * 1_000_000),
    )
    assert _stored(engine) == before
    again = store.attempts.read(requests, state=FactorState.ACTIVE, now=now)
    failed = {factor.account_id: factor.failed_attempts for factor in again}
    assert failed == {factor.account_id: int(n == 1) for n, factor in enumerate(read)}


def test_a_rounds_write_and_its_events_take_one_statement_on_postgresql(
    service: MfaService, engine: Engine, clock: Clock, account_id: str, audit_writes: str
) -> None:
    requests = _enrolled_requests(service, clock, account_id, ("-a", "-b"))
    store = FactorStore(engine)
    now = int(clock.now)
    read = store.attempts.read(requests, state=FactorState.ACTIVE, now=now)
    statements: list[float] = []
    with dbapi.timed_statements(statements.append):
        assert store.attempts.write_if_unchanged(
            [one_more_failure(factor) for factor in read],
            state=FactorState.ACTIVE,
            now=now,
            events=_groups(read, now * 1_000_000),
        )
    assert _stored(engine) >= _expected(read)
    if engine.dialect.name == "sqlite":
        assert len(statements) == 4  # BEGIN IMMEDIATE, the write, the call row, the events
    elif audit_writes == "copy":
        assert len(statements) == 3  # the write, the call rows, the COPY
    else:
        assert len(statements) == 1
