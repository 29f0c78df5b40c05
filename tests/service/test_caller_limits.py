"""The per-caller rate of failed verifications across accounts.

The bucket alone on a fake clock, then through the service on both databases:
a refused call compares nothing and counts nothing on any account.
"""

from __future__ import annotations

import threading

import pytest

from tests.conftest import Clock
from tests.enrollments import enroll_many, store_of
from tests.totp_oracle import code_at, wrong_code
from totpd.service.caller_limits import CallerLimits
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import VerifyItem, VerifyOutcome, VerifyResult

# Two failures a second, room for five; batches of at most five items.
SMALL = {"caller_failures_per_second": 2, "caller_failure_burst": 5, "max_batch_items": 5}


def refused(call: object) -> TotpdError:
    with pytest.raises(TotpdError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.reason is ErrorReason.RATE_LIMITED
    return caught.value


def test_a_bucket_refuses_what_it_cannot_hold_and_refills_at_its_rate(clock: Clock) -> None:
    limits = CallerLimits(2, 5, clock)
    for _ in range(5):
        limits.settle(limits.reserve("peer", 1), failures=1)
    error = refused(lambda: limits.reserve("peer", 1))
    assert error.retry_after_seconds == pytest.approx(0.5)
    assert "peer" not in error.message
    # Another caller has its own bucket.
    limits.settle(limits.reserve("other", 5), failures=0)
    clock.advance(0.5)
    limits.settle(limits.reserve("peer", 1), failures=1)
    # A reservation that did not fail is given back in full.
    clock.advance(2.5)
    limits.settle(limits.reserve("peer", 5), failures=0)
    limits.settle(limits.reserve("peer", 5), failures=2)
    assert refused(lambda: limits.reserve("peer", 5)).retry_after_seconds == pytest.approx(1.0)


def test_a_bucket_never_holds_more_than_its_burst_and_ignores_a_clock_step_back(
    clock: Clock,
) -> None:
    limits = CallerLimits(2, 5, clock)
    clock.advance(3600)
    limits.settle(limits.reserve("peer", 5), failures=5)
    clock.advance(-600)
    assert refused(lambda: limits.reserve("peer", 1)).retry_after_seconds == pytest.approx(0.5)


def test_no_limit_when_off_or_for_calls_from_inside(clock: Clock) -> None:
    off = CallerLimits(0, 5, clock)
    on = CallerLimits(1, 5, clock)
    for _ in range(100):
        off.settle(off.reserve("peer", 5), failures=5)
        on.settle(on.reserve(None, 5), failures=5)


def test_parallel_reservations_never_take_more_than_the_bucket(clock: Clock) -> None:
    limits = CallerLimits(1, 50, clock)
    taken: list[int] = []
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait(timeout=30)
        for _ in range(20):
            try:
                limits.reserve("peer", 1)
                taken.append(1)
            except TotpdError:
                pass

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(taken) == 50


def test_the_policy_checks_the_burst_holds_a_whole_batch() -> None:
    with pytest.raises(ValueError, match="caller_failure_burst must be at least max_batch_items"):
        Policy(caller_failure_burst=100, max_batch_items=1000)
    Policy(caller_failures_per_second=0, caller_failure_burst=100, max_batch_items=1000)


@pytest.mark.parametrize("policy", [Policy(**SMALL)])
def test_a_limited_caller_is_refused_and_nothing_is_counted(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    phones = {name: enroll_many(service, clock, f"{account_id}-{name}", 1)[0] for name in "abc"}
    store = store_of(service)
    for name in "abcab":
        account, phone = f"{account_id}-{name}", phones[name]
        outcome = service.verify(
            VerifyItem(account, wrong_code(code_at(phone, clock.now))), "mallory"
        )
        assert outcome.result is VerifyResult.INVALID

    def accounts() -> list[tuple[int, int, int | None] | None]:
        rows = [store.account_state(f"{account_id}-{name}") for name in "abc"]
        return [
            None if row is None else (row.budget_tat, row.consecutive_failures, row.locked_at)
            for row in rows
        ]

    before = accounts()
    assert before[2] is not None
    factors_before = {name: store.get(phone.factor.factor_id) for name, phone in phones.items()}
    c = f"{account_id}-c"
    error = refused(
        lambda: service.verify(VerifyItem(c, code_at(phones["c"], clock.now)), "mallory")
    )
    assert error.retry_after_seconds == pytest.approx(0.5)
    refused(lambda: service.verify_batch([VerifyItem(c, "000000")], "mallory"))
    refused(lambda: service.disable(c, None, "000000", False, caller="mallory"))
    # Nothing was compared or counted: not the account, not its factor, not the step.
    assert accounts() == before
    after = {name: store.get(phone.factor.factor_id) for name, phone in phones.items()}
    assert [
        (row.failed_attempts, row.blocked_until, row.last_used_step)
        for row in after.values()
        if row is not None
    ] == [
        (row.failed_attempts, row.blocked_until, row.last_used_step)
        for row in factors_before.values()
        if row is not None
    ]
    # Another caller is not limited, and the right code was not used up.
    assert service.verify(VerifyItem(c, code_at(phones["c"], clock.now)), "alice").result is (
        VerifyResult.VALID
    )


@pytest.mark.parametrize("policy", [Policy(**SMALL)])
def test_successes_cost_the_caller_nothing(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    (phone,) = enroll_many(service, clock, account_id, 1)
    for _ in range(20):
        clock.advance(30)
        outcome = service.verify(VerifyItem(account_id, code_at(phone, clock.now)), "bulk")
        assert outcome.result is VerifyResult.VALID


@pytest.mark.parametrize("policy", [Policy(**SMALL)])
def test_a_batch_needs_room_for_every_item_or_is_refused_whole(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    phones = [enroll_many(service, clock, f"{account_id}-{i}", 1)[0] for i in range(5)]
    items = [VerifyItem(f"{account_id}-{i}", code_at(p, clock.now)) for i, p in enumerate(phones)]
    wrong = VerifyItem(f"{account_id}-0", wrong_code(code_at(phones[0], clock.now)))
    # Five possible failures fit; four of them are valid codes, given back.
    outcomes = service.verify_batch([wrong, *items[1:]], "bulk")
    assert [o.result for o in outcomes if isinstance(o, VerifyOutcome)] == [
        VerifyResult.INVALID,
        *[VerifyResult.VALID] * 4,
    ]
    # Four tokens left: a batch of five is refused whole, before any item is checked.
    error = refused(lambda: service.verify_batch([*items[:4], wrong], "bulk"))
    assert error.retry_after_seconds == pytest.approx(0.5)
    assert store_of(service).account_state(f"{account_id}-1") is None
    clock.advance(0.5)
    clock.advance(30)
    fresh = [VerifyItem(f"{account_id}-{i}", code_at(p, clock.now)) for i, p in enumerate(phones)]
    outcomes = service.verify_batch(fresh, "bulk")
    assert all(isinstance(o, VerifyOutcome) and o.result is VerifyResult.VALID for o in outcomes)


def test_room_held_by_calls_in_flight_is_retried_within_a_second(clock: Clock) -> None:
    limits = CallerLimits(1, 10, clock)
    batch = limits.reserve("bulk", 10)
    # A second batch while the first runs: the room comes back when it ends, not by refill.
    assert refused(lambda: limits.reserve("bulk", 10)).retry_after_seconds == 1.0
    limits.settle(batch, failures=0)
    limits.settle(limits.reserve("bulk", 10), failures=3)
    assert refused(lambda: limits.reserve("bulk", 10)).retry_after_seconds == pytest.approx(3.0)
