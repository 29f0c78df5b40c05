"""A round that ends without committing (its deadline passed while the database hung)
stores neither its verdict nor its event; the rounds committed before keep both;
on PostgreSQL a COPY of events stuck on a stopped server ends at the deadline too."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from tests.conftest import Clock
from tests.hung_database import (
    HangingDatabase,
    PausedPostgres,
    database,
    hang_before_write,
    paused_postgres,
)
from tests.service.conftest import results_of
from tests.service.test_deadlines import (
    DEADLINE,
    batch_with_its_second_round_hung,
    enrolled,
    failures,
    hung_engine,
    service,
)
from tests.totp_oracle import code_at, wrong_code
from totpd import deadlines
from totpd.service.errors import ErrorReason
from totpd.service.mfa import MfaService
from totpd.service.types import VerifyItem, VerifyResult
from totpd.store import FactorStore, open_engine
from totpd.store.audit import AuditCall, RoundEvents, RoundItem
from totpd.store.dbapi import RawConnection
from totpd.store.deadline import DeadlineExceededError
from totpd.store.models import EVENT_IDS_PER_CALL, AuditCallRow, AuditEventRow

__all__ = ["database", "hung_engine", "paused_postgres", "service"]  # fixtures


def verdict_events(engine: Engine, account_id: str) -> list[tuple[str, str]]:
    query = (
        select(AuditCallRow.method, AuditEventRow.verify_result)
        .join(AuditCallRow, AuditCallRow.id == AuditEventRow.id // EVENT_IDS_PER_CALL)
        .where(AuditEventRow.account_id == account_id, AuditCallRow.method != "ConfirmEnrollment")
        .where(AuditEventRow.verify_result.is_not(None))
        .order_by(AuditEventRow.id)
    )
    with engine.connect() as connection:
        return [(row[0], row[1]) for row in connection.execute(query)]


def event_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(AuditEventRow)).scalar_one())


# Each with the events INSERTed and COPYed (tests/conftest.py audit_writes).
@pytest.mark.usefixtures("audit_writes")
def test_a_round_cut_by_its_deadline_stores_no_verdict_and_no_event(
    database: HangingDatabase,
    hung_engine: Engine,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, code, _, results = batch_with_its_second_round_hung(
        database, service, clock, account_id, monkeypatch
    )
    assert results_of(results) == [
        VerifyResult.INVALID,
        VerifyResult.VALID,
        ErrorReason.DEADLINE_EXCEEDED,
    ]
    # The first round's two verdicts and their events; nothing of the second.
    assert failures(service, first.factor.factor_id) == 1
    assert verdict_events(hung_engine, account_id) == [("BatchVerify", "INVALID")]
    assert verdict_events(hung_engine, account_id + "-b") == [("BatchVerify", "VALID")]

    before = event_count(hung_engine)
    with database.hung(), deadlines.within(DEADLINE), pytest.raises(DeadlineExceededError):
        service.verify(VerifyItem(account_id, code))
    assert event_count(hung_engine) == before
    assert service.verify(VerifyItem(account_id, code)).result is VerifyResult.VALID
    assert verdict_events(hung_engine, account_id)[-1] == ("Verify", "VALID")


@pytest.mark.usefixtures("audit_writes")
@pytest.mark.parametrize("correct", [True, False], ids=["correct code", "wrong code"])
def test_a_write_run_after_its_deadline_stores_no_event(
    database: HangingDatabase,
    hung_engine: Engine,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
    correct: bool,
) -> None:
    """The round's write (with its event) reached a database that had just hung and ran
    when it resumed, after the deadline: neither the verdict nor the event stays."""
    enrollment = enrolled(service, clock, account_id)
    right = code_at(enrollment, clock.now)
    before = event_count(hung_engine)
    with ExitStack() as stack:
        hang_before_write(monkeypatch, database, stack)
        with deadlines.within(DEADLINE), pytest.raises(DeadlineExceededError):
            service.verify(VerifyItem(account_id, right if correct else wrong_code(right)))
    monkeypatch.undo()
    # PostgreSQL: the one-row write and its event are one statement; a failure's
    # transaction (account and factor rows, event) began late and never commits.
    database.settle("WITH locked_factor AS" if correct else "BEGIN")
    assert event_count(hung_engine) == before
    assert failures(service, enrollment.factor.factor_id) == 0
    assert service.verify(VerifyItem(account_id, right)).result is VerifyResult.VALID
    assert event_count(hung_engine) == before + 1


@pytest.mark.postgres
def test_a_copy_stuck_on_a_hung_database_ends_at_its_deadline(
    paused_postgres: PausedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database stops after the round's call row, mid-COPY: more events than the
    socket's buffers take (~25 MB), so the client's own sends block. The watchdog cuts the
    connection at the deadline; neither the call row nor any event stays."""
    engine = open_engine(paused_postgres.url)
    store = FactorStore(engine)
    items: list[RoundItem] = [(f"copy-{n}", None, "INVALID", None) for n in range(500_000)]
    call = AuditCall(1, "copier", "default", "BatchVerify", None, "peer")
    before = event_count(engine)
    real_copy = RawConnection.copy

    def copy_after_hanging(self: RawConnection, *args: Any) -> int:
        stack.enter_context(paused_postgres.hung())
        return real_copy(self, *args)

    monkeypatch.setattr(RawConnection, "copy", copy_after_hanging)
    started = time.monotonic()
    with ExitStack() as stack, deadlines.within(DEADLINE):
        with pytest.raises(DeadlineExceededError), store.attempts.locked() as locked:
            locked.record([RoundEvents(call, items)])
    # A bound on the wait, not a speed target: without the watchdog it never ends.
    assert time.monotonic() - started < DEADLINE + 10
    monkeypatch.undo()
    assert event_count(engine) == before
    with engine.connect() as connection:
        copier = select(func.count()).where(AuditCallRow.caller == "copier")
        assert connection.execute(copier).scalar_one() == 0
    engine.dispose()
