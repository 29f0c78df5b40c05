"""A unary round's write on PostgreSQL: its account, its factor and its audit event in
one statement outside a transaction (store/unary_sql.py), and the round's read and
write on one pooled connection. Both databases run every test: SQLite's rounds take
their transactions, and must give the same answers."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from tests.audit_rows import verdict_events
from tests.conftest import Clock
from tests.enrollments import enroll_many, store_of, wrong_for_all
from tests.store.conftest import interleave_after_read
from tests.totp_oracle import code_at
from totpd import deadlines
from totpd.service import failure_budget
from totpd.service.mfa import MfaService
from totpd.service.types import VerifyItem, VerifyResult
from totpd.store import dbapi
from totpd.store.deadline import DeadlineExceededError


def _account(service: MfaService, account_id: str) -> tuple[int, int] | None:
    state = store_of(service).account_state(account_id)
    return None if state is None else (state.consecutive_failures, state.budget_tat)


def _results(engine: Engine, account_id: str) -> list[str]:
    """The account's Verify verdicts in the audit trail, oldest first."""
    trail = verdict_events(engine)
    return [
        e["verify_result"]
        for e in trail
        if (e["account_id"], e["method"]) == (account_id, "Verify")
    ]


def test_a_factor_changed_alone_stops_the_account_write_too(
    service: MfaService,
    engine: Engine,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The account is as the round read it, the factor is not (a success in
    between wrote the factor only): neither row is written, and the failure,
    decided again under locks, is counted once."""
    (phone,) = enroll_many(service, clock, account_id, 1)
    wrong = wrong_for_all([phone], clock.now)
    service.verify(VerifyItem(account_id, wrong))  # the account's row: one failure
    # A success resets the run of failures: the row stays, at 0 consecutive.
    assert service.verify(VerifyItem(account_id, code_at(phone, clock.now))).result is (
        VerifyResult.VALID
    )
    assert _account(service, account_id) is not None
    # In between: the next step won; with no failure to reset, only the factor is written.
    next_code = code_at(phone, clock.now + 30)
    won: list[VerifyResult] = []
    locked_rounds = interleave_after_read(
        service,
        monkeypatch,
        lambda: won.append(service.verify(VerifyItem(account_id, next_code)).result),
    )
    outcome = service.verify(VerifyItem(account_id, wrong))
    assert won == [VerifyResult.VALID]
    assert outcome.result is VerifyResult.INVALID
    assert locked_rounds == [1]
    # Two failures in all, each counted once (a stale account write would make it 2 in a row).
    cost = failure_budget.cost_seconds(service.policy, 2)
    assert _account(service, account_id) == (1, int(clock.now) + cost)
    row = store_of(service).get(phone.factor.factor_id)
    assert row is not None and row.failed_attempts == 1
    assert _results(engine, account_id) == [
        "INVALID",
        "VALID",
        "VALID",
        "INVALID",
    ]


def test_a_failure_is_one_write_statement_on_one_connection(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    """PostgreSQL: a failure on an account with a row is a read and one write, on one
    checkout. SQLite: the read, then the account, the factor and the event in a
    transaction (its writer queue is not waited for holding a connection)."""
    (phone,) = enroll_many(service, clock, account_id, 1)
    wrong = wrong_for_all([phone], clock.now)
    service.verify(VerifyItem(account_id, wrong))  # the account's row exists from here
    statements: list[float] = []
    checkouts: list[object] = []

    def checked_out(*_: Any) -> None:
        checkouts.append(None)

    event.listen(engine, "checkout", checked_out)
    try:
        with dbapi.timed_statements(statements.append):
            outcome = service.verify(VerifyItem(account_id, wrong))
    finally:
        event.remove(engine, "checkout", checked_out)
    assert outcome.result is VerifyResult.INVALID
    if engine.dialect.name == "postgresql":
        assert (len(statements), len(checkouts)) == (2, 1)
    else:
        assert len(statements) > 2 and len(checkouts) == 2
    cost = failure_budget.cost_seconds(service.policy, 2)
    assert _account(service, account_id) == (2, int(clock.now) + cost)
    assert _results(engine, account_id) == [
        "INVALID",
        "INVALID",
    ]


def test_a_failure_that_waited_for_a_lock_past_its_deadline_writes_nothing(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    """PostgreSQL: the write waits for the account's row, which another transaction
    holds without changing it; the call answers DEADLINE_EXCEEDED at its deadline
    (its connection cut), and the statement, left waiting in the database, runs
    once the row is free: the deadline, checked again after its locks, stops it."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers queue in this process, bounded by the deadline")
    (phone,) = enroll_many(service, clock, account_id, 1)
    wrong = wrong_for_all([phone], clock.now)
    service.verify(VerifyItem(account_id, wrong))  # the account's row exists from here
    with engine.connect() as holder:
        holder.execute(
            text("SELECT 1 FROM accounts WHERE account_id = :a FOR UPDATE"), {"a": account_id}
        )
        with deadlines.within(0.5), pytest.raises(DeadlineExceededError):
            service.verify(VerifyItem(account_id, wrong))
        holder.commit()  # the row is free again, unchanged, after the deadline
    _wait_for_the_write_left_running(engine)
    row = store_of(service).get(phone.factor.factor_id)
    assert row is not None and row.failed_attempts == 1
    cost = failure_budget.cost_seconds(service.policy, 1)
    assert _account(service, account_id) == (1, int(clock.now) + cost)
    assert _results(engine, account_id) == ["INVALID"]


def _wait_for_the_write_left_running(engine: Engine, start: str = "WITH locked_account") -> None:
    """Until no backend runs a statement beginning with `start` any more."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
        " AND starts_with(query, :start) AND pid <> pg_backend_pid()"
    )
    for _ in range(100):
        with engine.connect() as connection:
            if connection.execute(query, {"start": start}).scalar_one() == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the write left waiting for the lock never ended")


def test_a_correct_code_whose_write_waited_for_a_lock_past_its_deadline_is_not_consumed(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    """PostgreSQL: as above for a won step (the factor's row alone): the write left
    waiting for the row runs after the deadline, and consumes nothing."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers queue in this process, bounded by the deadline")
    (phone,) = enroll_many(service, clock, account_id, 1)
    code = code_at(phone, clock.now)
    with engine.connect() as holder:
        holder.execute(
            text("SELECT 1 FROM factors WHERE account_id = :a FOR UPDATE"), {"a": account_id}
        )
        with deadlines.within(0.5), pytest.raises(DeadlineExceededError):
            service.verify(VerifyItem(account_id, code))
        holder.commit()
    _wait_for_the_write_left_running(engine, "WITH locked_factor")
    assert service.verify(VerifyItem(account_id, code)).result is VerifyResult.VALID
    assert _results(engine, account_id) == ["VALID"]
