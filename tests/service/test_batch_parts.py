"""A large BatchVerify round split into parts, three at a time (service/round_plan.py's
`round_parts`, service/lanes.py), on both databases: each part is a round of its
own, so every item gets the verdict one round would give, stored and audited
once; concurrent batches win each step once; a fault or a passed deadline in one
part loses no verdict another part stored, and starts no further part.

PART_CHECKS is lowered to 3 here, so a batch of a few accounts has several parts.
SQLite does not split rounds (`Attempts.parallel_rounds`: no gain measured); it
is made to here, so the engine's handling of parts is checked on both databases.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.audit_rows import verdict_events
from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.service.conftest import results_of
from tests.service.test_batch_faults import DOWN, failing_after
from tests.totp_oracle import code_at, wrong_code
from totpd import calls, deadlines
from totpd.service import lanes, round_plan
from totpd.service.errors import ErrorReason
from totpd.service.mfa import MfaService
from totpd.service.types import Enrollment, VerifyItem, VerifyResult
from totpd.store import Attempts
from totpd.store.errors import StoreUnavailableError

PART = 3
ACCOUNTS = 10  # four parts of at most 3: 3, 3, 2, 2
LANES = lanes.HELPERS_PER_CALL + 1
SCOPE = calls.CallScope("login-backend", calls.DEFAULT_TENANT, "ipv4:127.0.0.1:5000", "BatchVerify")


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(round_plan, "PART_CHECKS", PART)
    monkeypatch.setattr(Attempts, "parallel_rounds", True)


def enrolled(service: MfaService, clock: Clock, count: int = ACCOUNTS) -> list[Enrollment]:
    return [enroll_active(service, clock, f"acct-{index:02}") for index in range(count)]


def right_items(enrollments: list[Enrollment], now: float) -> list[VerifyItem]:
    return [VerifyItem(e.factor.account_id, code_at(e, now)) for e in enrollments]


def failed_attempts(service: MfaService, enrollments: list[Enrollment]) -> list[int]:
    ids = [e.factor.factor_id for e in enrollments]
    factors = service.deps.store.get_many(ids)
    return [factors[factor_id].failed_attempts for factor_id in ids]


def recording_reads(monkeypatch: pytest.MonkeyPatch, before: Callable[[], None]) -> list[str]:
    """Attempts.read calls `before` first; returns the names of the threads that read."""
    threads: list[str] = []
    real = Attempts.read

    def read(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        before()
        return real(*args, **kwargs)

    monkeypatch.setattr(Attempts, "read", read)
    return threads


def test_parts_give_each_item_the_verdict_of_one_round_stored_and_audited_once(
    engine: Engine, service: MfaService, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrollments = enrolled(service, clock)
    right = right_items(enrollments, clock.now)
    # Even accounts: the right code, then again (a second round, split too).
    # Odd: a wrong code. And items no round decides.
    items = [
        item if i % 2 == 0 else VerifyItem(item.account_id, wrong_code(item.code))
        for i, item in enumerate(right)
    ]
    items += right[0::2]
    items += [VerifyItem("nobody", "123456"), VerifyItem("acct-00", "12 456")]
    all_lanes = threading.Barrier(LANES, timeout=10)
    reads = recording_reads(monkeypatch, lambda: all_lanes.wait() if len(reads) <= LANES else None)

    with calls.scoped(SCOPE):
        results = results_of(service.verify_batch(items))

    monkeypatch.undo()
    assert results == [
        *(VerifyResult.VALID if i % 2 == 0 else VerifyResult.INVALID for i in range(ACCOUNTS)),
        *[VerifyResult.REPLAYED] * (ACCOUNTS // 2),
        ErrorReason.ACCOUNT_NOT_FOUND,
        ErrorReason.MALFORMED_CODE,
    ]
    # Two rounds: ten accounts in four parts, then the five second items in two.
    assert len(reads) == 6
    assert len(set(reads)) == LANES
    # One event per decided code, in its part's transaction.
    events = [e for e in verdict_events(engine) if e["method"] == "BatchVerify"]
    assert Counter((e["account_id"], e["verify_result"]) for e in events) == Counter(
        (item.account_id, result.name)
        for item, result in zip(items, results, strict=True)
        if isinstance(result, VerifyResult)
    )
    # Each failure (a wrong code, a replay) counted once, each step used once; a
    # wrong code used no step.
    assert failed_attempts(service, enrollments) == [1] * ACCOUNTS
    assert results_of(service.verify_batch(right)) == [
        VerifyResult.REPLAYED if i % 2 == 0 else VerifyResult.VALID for i in range(ACCOUNTS)
    ]


def test_concurrent_split_batches_win_each_step_once(service: MfaService, clock: Clock) -> None:
    enrollments = enrolled(service, clock)
    items = right_items(enrollments, clock.now)
    callers = 4
    start = threading.Barrier(callers, timeout=30)
    results: list[list[object]] = []
    lock = threading.Lock()

    def call() -> None:
        start.wait()
        outcome = results_of(service.verify_batch(items))
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == callers
    for index in range(ACCOUNTS):
        per_account = Counter(outcome[index] for outcome in results)
        assert per_account[VerifyResult.VALID] == 1
        assert set(per_account) <= {VerifyResult.VALID, VerifyResult.REPLAYED}


def test_a_fault_in_a_part_keeps_the_stored_parts_and_starts_no_other(
    service: MfaService, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrollments = enrolled(service, clock)
    items = right_items(enrollments, clock.now)
    monkeypatch.setattr(round_plan, "PART_CHECKS", 1)  # ten parts, more than the lanes
    monkeypatch.setattr(Attempts, "read", failing_after(1, Attempts.read, DOWN))
    reads = recording_reads(monkeypatch, lambda: None)  # failed reads too

    results = results_of(service.verify_batch(items))

    monkeypatch.undo()
    # One part was read and stored; every other item is the fault's, its own error.
    counts = Counter(results)
    assert counts[VerifyResult.VALID] == 1
    assert counts[ErrorReason.STORE_UNAVAILABLE] == ACCOUNTS - 1
    # After the fault no part started: the stored part's read, and at most one
    # read on each lane before the fault was seen.
    assert len(reads) <= 1 + LANES
    stored = {i for i, result in enumerate(results) if result is VerifyResult.VALID}
    retried = results_of(service.verify_batch(items))
    assert retried == [
        VerifyResult.REPLAYED if i in stored else VerifyResult.VALID for i in range(ACCOUNTS)
    ]


def test_a_fault_in_every_part_before_any_verdict_fails_the_whole_batch(
    service: MfaService, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrollments = enrolled(service, clock)
    items = right_items(enrollments, clock.now)
    monkeypatch.setattr(Attempts, "read", failing_after(0, Attempts.read, DOWN))

    with pytest.raises(StoreUnavailableError):
        service.verify_batch(items)

    monkeypatch.undo()
    assert results_of(service.verify_batch(items)) == [VerifyResult.VALID] * ACCOUNTS


def test_the_helper_lane_reads_within_the_calls_deadline(
    service: MfaService, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrollments = enrolled(service, clock)
    left: dict[str, float | None] = {}
    all_lanes = threading.Barrier(LANES, timeout=10)

    def before() -> None:  # each lane's first read waits for the others'
        name = threading.current_thread().name
        if name not in left:
            left[name] = deadlines.remaining()
            all_lanes.wait()

    recording_reads(monkeypatch, before)
    with deadlines.within(60):
        results = results_of(service.verify_batch(right_items(enrollments, clock.now)))

    assert results == [VerifyResult.VALID] * ACCOUNTS
    assert sum(name.startswith("totpd-lane") for name in left) == lanes.HELPERS_PER_CALL
    assert all(remaining is not None and 0 < remaining <= 60 for remaining in left.values())


def test_a_passed_deadline_fails_a_split_batch_whole_and_stores_nothing(
    service: MfaService, clock: Clock
) -> None:
    enrollments = enrolled(service, clock)
    items = right_items(enrollments, clock.now)
    with deadlines.within(0), pytest.raises(Exception, match="deadline"):
        service.verify_batch(items)
    assert results_of(service.verify_batch(items)) == [VerifyResult.VALID] * ACCOUNTS
