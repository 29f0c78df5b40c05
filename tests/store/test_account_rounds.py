"""An account changed between a round's read and its write, on both databases:
nothing of the round is written, it is decided again under locks, and every
failure is counted once on the account (consecutive count and budget)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_many, failed_once, store_of, wrong_for_all
from tests.store.conftest import interleave_after_read
from tests.totp_oracle import code_at
from totpd.service import failure_budget
from totpd.service.mfa import MfaService
from totpd.service.types import VerifyItem, VerifyOutcome, VerifyResult
from totpd.store import LockedRound, dbapi, round_writes
from totpd.store.errors import StoreUnavailableError


def account_state(service: MfaService, account_id: str) -> tuple[int, int] | None:
    state = store_of(service).account_state(account_id)
    return None if state is None else (state.consecutive_failures, state.budget_tat)


@pytest.mark.parametrize("failed_before", [0, 1])
def test_a_failure_on_another_factor_in_between_is_not_lost(
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
    failed_before: int,
) -> None:
    phone, tablet = enroll_many(service, clock, account_id, 2)
    wrong = wrong_for_all([phone, tablet], clock.now)
    for _ in range(failed_before):  # the account's row exists, or not yet
        service.verify(VerifyItem(account_id, wrong, tablet.factor.factor_id))
    # Each round names its own factor: only the account's row is shared.
    locked_rounds = interleave_after_read(
        service,
        monkeypatch,
        lambda: service.verify(VerifyItem(account_id, wrong, tablet.factor.factor_id)),
    )
    outcome = service.verify(VerifyItem(account_id, wrong, phone.factor.factor_id))
    assert outcome.result is VerifyResult.INVALID
    assert locked_rounds == [1]
    failures = failed_before + 2
    cost = failure_budget.cost_seconds(service.policy, failures)
    assert account_state(service, account_id) == (failures, int(clock.now) + cost)


def test_a_success_in_between_does_not_undo_a_failure(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone, tablet = enroll_many(service, clock, account_id, 2)
    wrong = wrong_for_all([phone, tablet], clock.now)
    service.verify(VerifyItem(account_id, wrong, phone.factor.factor_id))
    # My failure on the phone is read first; the user's success on the tablet lands first.
    interleave_after_read(
        service,
        monkeypatch,
        lambda: service.verify(
            VerifyItem(account_id, code_at(tablet, clock.now), tablet.factor.factor_id)
        ),
    )
    outcome = service.verify(VerifyItem(account_id, wrong, phone.factor.factor_id))
    assert outcome.result is VerifyResult.INVALID
    state = account_state(service, account_id)
    assert state is not None and state[0] == 1  # reset by the success, then mine


def test_a_failure_racing_a_locked_round_on_a_new_account_waits_and_both_count(
    service: MfaService,
    engine: Engine,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL a locked round gives a missing account its row and locks it
    before the factors: a failure on another factor of the account then waits
    for the round's commit instead of deadlocking with it, and both count."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite's locked round holds the database's write lock: nobody inserts")
    phone, tablet = enroll_many(service, clock, account_id, 2)
    wrong = wrong_for_all([phone, tablet], clock.now)
    real_read = LockedRound.read
    others: list[threading.Thread] = []

    def read(self: LockedRound, requests: Any, **kwargs: Any) -> Any:
        factors = real_read(self, requests, **kwargs)
        if not others:
            # A failure on the tablet while this round holds the account and the phone.
            other = threading.Thread(
                target=service.verify,
                args=(VerifyItem(account_id, wrong, tablet.factor.factor_id),),
            )
            others.append(other)
            other.start()
        return factors

    monkeypatch.setattr(service.deps.store.attempts, "write_if_unchanged", _never)
    monkeypatch.setattr(LockedRound, "read", read)
    outcome = service.verify(VerifyItem(account_id, wrong, phone.factor.factor_id))
    others[0].join(timeout=30)
    assert outcome.result is VerifyResult.INVALID and not others[0].is_alive()
    cost = failure_budget.cost_seconds(service.policy, 2)
    assert account_state(service, account_id) == (2, int(clock.now) + cost)


def _never(*args: object, **kwargs: object) -> bool:
    """An optimistic write that always finds a change: every round is locked."""
    return False


def test_a_fault_between_the_account_and_the_factor_writes_stores_neither(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (phone,) = enroll_many(service, clock, account_id, 1)
    wrong = wrong_for_all([phone], clock.now)
    faults = _fault_at_the_factors_write(monkeypatch)
    with pytest.raises(StoreUnavailableError):
        service.verify(VerifyItem(account_id, wrong))
    assert not faults
    # The account's row (written first) went with the failed transaction.
    assert account_state(service, account_id) is None
    row = store_of(service).get(phone.factor.factor_id)
    assert row is not None and row.failed_attempts == 0
    outcome = service.verify(VerifyItem(account_id, wrong))
    assert outcome.result is VerifyResult.INVALID
    assert account_state(service, account_id) is not None


def _fault_at_the_factors_write(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The connection lost as the round's factor write (alone or with its events,
    after the accounts' rows) goes out, once; the fault still to come, until then."""
    real_run, real_send = dbapi.run_compiled, dbapi.Pipeline.send
    faults: list[object] = ["the connection is closed"]

    def run(dialect: Any, connection: Any, statement: Any, values: Any) -> Any:
        if "UPDATE factors" in statement.sql and faults:
            # What run_compiled raises for a connection the server closed.
            raise StoreUnavailableError("the database failed a statement", Exception(faults.pop()))
        return real_run(dialect, connection, statement, values)

    def send(pipeline: dbapi.Pipeline, statement: Any, values: Any) -> Any:
        if "UPDATE factors" in str(statement) and faults:
            # PostgreSQL's pipeline: the driver's own error, which the store maps.
            raise psycopg.OperationalError(faults.pop())
        return real_send(pipeline, statement, values)

    monkeypatch.setattr(dbapi, "run_compiled", run)
    monkeypatch.setattr(dbapi.Pipeline, "send", send)
    return faults


# A round's account rows: a few go one key at a time on PostgreSQL, more as JSON rows.
ROW_BY_ROW_AND_JSON_ROWS = pytest.mark.parametrize(
    "accounts", [3, round_writes.EACH_ROW_UP_TO + 2], ids=["row by row", "json rows"]
)


@ROW_BY_ROW_AND_JSON_ROWS
def test_a_batch_with_one_account_changed_in_between_is_decided_again_whole(
    engine: Engine,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
    accounts: int,
) -> None:
    """Several accounts' failures in one round: on PostgreSQL up to EACH_ROW_UP_TO
    account rows are updated one key at a time, pipelined (round_writes.EachRow),
    more as one statement over JSON rows. Either way one account changed since
    the read writes nothing of the round, and each failure is counted once."""
    ids, items = failed_once(service, clock, account_id, accounts)
    locked_rounds = interleave_after_read(service, monkeypatch, lambda: service.verify(items[-1]))
    row_by_row: list[int] = []
    # The optimistic round's write is pipelined (`Pipeline.send_each`), the
    # locked round's runs one statement at a time (`RawConnection.run_each`).
    for owner, name in ((dbapi.RawConnection, "run_each"), (dbapi.Pipeline, "send_each")):
        monkeypatch.setattr(owner, name, _counting(getattr(owner, name), row_by_row))

    results = service.verify_batch(items)

    assert [r.result for r in results if isinstance(r, VerifyOutcome)] == [
        VerifyResult.INVALID
    ] * accounts
    assert locked_rounds == [1]
    few = accounts <= round_writes.EACH_ROW_UP_TO and engine.dialect.name == "postgresql"
    # The optimistic round's rows (one of them changed), then the locked round's.
    assert row_by_row == ([accounts, accounts] if few else [])
    failures = [account_state(service, account) for account in ids]
    assert [state[0] if state else None for state in failures] == [2] * (accounts - 1) + [3]


def _counting(each: Any, rows_seen: list[int]) -> Any:
    def counted(owner: object, statement: Any, rows: Any) -> Any:
        rows_seen.append(len(rows))
        return each(owner, statement, rows)

    return counted


@ROW_BY_ROW_AND_JSON_ROWS
def test_a_fault_after_several_accounts_rows_stores_none_of_them(
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
    accounts: int,
) -> None:
    ids, items = failed_once(service, clock, account_id, accounts)
    faults = _fault_at_the_factors_write(monkeypatch)
    with pytest.raises(StoreUnavailableError):
        service.verify_batch(items)
    assert not faults
    states = [account_state(service, account) for account in ids]
    assert [state[0] if state else None for state in states] == [1] * accounts


def test_a_rounds_accounts_and_factors_go_in_one_round_trip_on_postgresql(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    """A round of several accounts' failures writes their rows, then the factors'
    with their events: on PostgreSQL all sent before any answer is read (one
    pipeline, rounds._run_pipelined), on SQLite one statement after another."""
    ids, items = failed_once(service, clock, account_id, 3)
    exchanges: list[float] = []  # each statement, or pipeline, the driver waited for
    with dbapi.timed_statements(exchanges.append):
        results = service.verify_batch(items)
    assert [r.result for r in results if isinstance(r, VerifyOutcome)] == [
        VerifyResult.INVALID
    ] * len(ids)
    # The read, then the write: PostgreSQL's pipeline; SQLite's BEGIN IMMEDIATE,
    # the accounts' UPDATE, the factors' UPDATE, the call rows and the events.
    assert len(exchanges) == (2 if engine.dialect.name == "postgresql" else 6)
    states = [account_state(service, account) for account in ids]
    assert [state[0] if state else None for state in states] == [2] * len(ids)
