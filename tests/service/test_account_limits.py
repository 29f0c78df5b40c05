"""Account-wide limits on both databases: the rolling failure budget, the lock
after too many consecutive failures and its unlock, in Verify and BatchVerify.

"Compared" is counted where it happens: every (code, factor) pair handed to
the native core (`compared` fixture), beside the verdicts (INVALID or
REPLAYED: compared and failed; LOCKED: nothing compared).
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_many, store_of, wrong_for_all
from tests.service.conftest import Compared
from tests.totp_oracle import code_at, wrong_code
from totpd.crypto import Keyring
from totpd.service import failure_budget
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import VerifyItem, VerifyOutcome, VerifyResult
from totpd.store import FactorStore

DAY = 86400
# Failures lock nothing but the account limits under test.
NO_FACTOR_LIMITS = {"backoff_base_seconds": 0, "lock_after_failures": 1000}


@pytest.mark.parametrize("policy", [Policy(**NO_FACTOR_LIMITS)])
def test_a_spent_budget_locks_the_account_and_compares_nothing(
    service: MfaService, clock: Clock, account_id: str, compared: Compared
) -> None:
    policy = service.policy
    (phone,) = enroll_many(service, clock, account_id, 1)
    compared.take()
    for _ in range(policy.failure_budget):
        outcome = service.verify(VerifyItem(account_id, wrong_code(code_at(phone, clock.now))))
        assert outcome.result is VerifyResult.INVALID
    assert compared.take() == policy.failure_budget
    assert outcome.attempts_left == 0
    refill = policy.failure_budget_window_seconds // policy.failure_budget
    assert outcome.retry_after_seconds == refill
    # The right code is not compared either: LOCKED, nothing revealed, nothing counted.
    for code in (code_at(phone, clock.now), wrong_code(code_at(phone, clock.now))):
        for factor_id in (None, phone.factor.factor_id):
            locked = service.verify(VerifyItem(account_id, code, factor_id))
            assert locked.result is VerifyResult.LOCKED
            assert locked.retry_after_seconds == refill and not locked.unlock_required
            assert locked.factor_id == factor_id
    assert compared.take() == 0
    state = store_of(service).account_state(account_id)
    assert state is not None and state.consecutive_failures == policy.failure_budget


@pytest.mark.parametrize("policy", [Policy(**NO_FACTOR_LIMITS)])
def test_the_budget_refills_one_pair_per_interval(
    service: MfaService, clock: Clock, account_id: str, compared: Compared
) -> None:
    policy = service.policy
    (phone,) = enroll_many(service, clock, account_id, 1)
    for _ in range(policy.failure_budget):
        service.verify(VerifyItem(account_id, wrong_code(code_at(phone, clock.now))))
    refill = policy.failure_budget_window_seconds // policy.failure_budget
    compared.take()
    # One second early: still locked, and the delay counts down exactly.
    clock.advance(refill - 1)
    early = service.verify(VerifyItem(account_id, code_at(phone, clock.now)))
    assert early.result is VerifyResult.LOCKED and early.retry_after_seconds == 1
    clock.advance(1)
    outcome = service.verify(VerifyItem(account_id, wrong_code(code_at(phone, clock.now))))
    assert outcome.result is VerifyResult.INVALID and outcome.retry_after_seconds == refill
    assert service.verify(VerifyItem(account_id, "000000")).result is VerifyResult.LOCKED
    assert compared.take() == 1
    # After a whole window the budget is full again, and a right code is compared and wins.
    clock.advance(policy.failure_budget_window_seconds)
    assert service.verify(VerifyItem(account_id, code_at(phone, clock.now))).result is (
        VerifyResult.VALID
    )
    clock.advance(30)
    for _ in range(policy.failure_budget):
        failed = service.verify(VerifyItem(account_id, wrong_code(code_at(phone, clock.now))))
        assert failed.result is VerifyResult.INVALID


@pytest.mark.parametrize("policy", [Policy(**NO_FACTOR_LIMITS)])
def test_an_account_wide_guess_spends_one_pair_per_factor(
    service: MfaService, clock: Clock, account_id: str, compared: Compared
) -> None:
    policy = service.policy
    phones = enroll_many(service, clock, account_id, 5)
    compared.take()
    guesses = policy.failure_budget // 5  # 5 guesses of 5 pairs; 2 pairs left
    for guess in range(guesses):
        outcome = service.verify(VerifyItem(account_id, wrong_for_all(phones, clock.now)))
        assert outcome.result is VerifyResult.INVALID
        assert outcome.attempts_left == (policy.failure_budget - 5 * (guess + 1)) // 5
    assert compared.take() == 5 * guesses
    state = store_of(service).account_state(account_id)
    assert state is not None
    assert state.budget_tat == int(clock.now) + failure_budget.cost_seconds(policy, 5 * guesses)
    # Not enough left for five pairs: LOCKED until three more have refilled.
    locked = service.verify(VerifyItem(account_id, wrong_for_all(phones, clock.now)))
    assert locked.result is VerifyResult.LOCKED
    assert locked.retry_after_seconds == failure_budget.cost_seconds(policy, 3)
    # A code for one named factor needs one pair: the last two are spent that way.
    named = phones[0].factor.factor_id
    for _ in range(2):
        one = service.verify(VerifyItem(account_id, wrong_for_all(phones, clock.now), named))
        assert one.result is VerifyResult.INVALID
    assert compared.take() == 2
    last = service.verify(VerifyItem(account_id, wrong_for_all(phones, clock.now), named))
    assert last.result is VerifyResult.LOCKED
    assert compared.take() == 0


@pytest.mark.parametrize("policy", [Policy(backoff_base_seconds=0, failure_budget=1000)])
def test_one_hundred_failures_in_a_row_lock_the_account_until_unlocked(
    service: MfaService, clock: Clock, account_id: str, compared: Compared
) -> None:
    policy = service.policy
    assert policy.max_consecutive_failures == 100
    phone, tablet = enroll_many(service, clock, account_id, 2)
    failures = 0
    calls = 0
    # Counted across factors and across the factors' timed locks.
    while failures < 100:
        calls += 1
        assert calls < 1000
        factor = (phone, tablet)[calls % 2].factor.factor_id
        code = wrong_for_all([phone, tablet], clock.now)
        outcome = service.verify(VerifyItem(account_id, code, factor))
        if outcome.result is VerifyResult.LOCKED:
            assert not outcome.unlock_required
            clock.advance(outcome.retry_after_seconds)
            continue
        assert outcome.result is VerifyResult.INVALID
        failures += 1
        assert outcome.unlock_required is (failures == 100)
    assert outcome.attempts_left == 0 and outcome.retry_after_seconds == 0
    compared.take()
    # Locked for good: the right code of either factor is not compared, even a year later.
    for _ in range(2):
        for enrollment in (phone, tablet):
            locked = service.verify(VerifyItem(account_id, code_at(enrollment, clock.now)))
            assert locked.result is VerifyResult.LOCKED
            assert locked.unlock_required and locked.retry_after_seconds == 0
            assert locked.attempts_left == 0
        clock.advance(365 * DAY)
    assert compared.take() == 0
    found = store_of(service).unlock_account(account_id)
    assert found.known and found.locked_at is not None and found.consecutive_failures == 100
    assert found.factors_unblocked == 2
    assert service.verify(VerifyItem(account_id, code_at(phone, clock.now))).result is (
        VerifyResult.VALID
    )
    state = store_of(service).account_state(account_id)
    assert state is not None
    assert (state.consecutive_failures, state.locked_at, state.budget_tat) == (0, None, 0)


@pytest.mark.parametrize("policy", [Policy(**NO_FACTOR_LIMITS)])
def test_a_success_ends_the_run_of_failures_but_not_the_budget(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    # An attacker guessing beside a user who signs in every day would otherwise
    # get a fresh budget every day: only time refills it.
    (phone,) = enroll_many(service, clock, account_id, 1)
    for _ in range(5):
        service.verify(VerifyItem(account_id, wrong_code(code_at(phone, clock.now))))
    store = store_of(service)
    before = store.account_state(account_id)
    assert before is not None and before.consecutive_failures == 5
    valid = service.verify(VerifyItem(account_id, code_at(phone, clock.now)))
    assert valid.result is VerifyResult.VALID
    after = store.account_state(account_id)
    assert after is not None
    assert after.consecutive_failures == 0 and after.budget_tat == before.budget_tat
    left = service.policy.failure_budget - 5
    clock.advance(30)
    for _ in range(left):
        failed = service.verify(VerifyItem(account_id, wrong_code(code_at(phone, clock.now))))
        assert failed.result is VerifyResult.INVALID
    assert service.verify(VerifyItem(account_id, "000000")).result is VerifyResult.LOCKED


def test_a_success_on_an_account_without_failures_writes_no_account_row(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    (phone,) = enroll_many(service, clock, account_id, 1)
    assert service.verify(VerifyItem(account_id, code_at(phone, clock.now))).result is (
        VerifyResult.VALID
    )
    assert store_of(service).account_state(account_id) is None


def test_pending_factors_do_not_spend_the_account_budget(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    from totpd.service.types import EnrollParams

    pending = service.enroll(EnrollParams(account_id, "new phone"))
    outcome, _ = service.confirm(
        account_id, pending.factor.factor_id, wrong_code(code_at(pending, clock.now))
    )
    assert outcome.result is VerifyResult.INVALID
    assert store_of(service).account_state(account_id) is None


@pytest.mark.parametrize("policy", [Policy(**NO_FACTOR_LIMITS)])
def test_batch_items_spend_the_same_budget_in_order(
    service: MfaService, clock: Clock, account_id: str, compared: Compared
) -> None:
    policy = service.policy
    (alice,) = enroll_many(service, clock, account_id + "-a", 1)
    bobs = enroll_many(service, clock, account_id + "-b", 5)
    compared.take()
    items = [VerifyItem(account_id + "-a", wrong_code(code_at(alice, clock.now)))] * 40
    items += [VerifyItem(account_id + "-b", wrong_for_all(bobs, clock.now))] * 8
    items.append(VerifyItem(account_id + "-a", code_at(alice, clock.now)))
    outcomes = service.verify_batch(items)
    results = [o.result for o in outcomes if isinstance(o, VerifyOutcome)]
    assert len(results) == len(items)
    assert Counter(results[:40]) == {
        VerifyResult.INVALID: policy.failure_budget,
        VerifyResult.LOCKED: 40 - policy.failure_budget,
    }
    assert results[:40] == sorted(results[:40], key=lambda r: r is VerifyResult.LOCKED)
    assert results[40:48] == [VerifyResult.INVALID] * 5 + [VerifyResult.LOCKED] * 3
    assert results[48] is VerifyResult.LOCKED  # the right code, after the budget is spent
    assert compared.take() == policy.failure_budget + 25


@pytest.mark.parametrize("policy", [Policy(backoff_base_seconds=0, failure_budget=1000)])
def test_a_batch_meets_the_lock_after_consecutive_failures(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    phones = enroll_many(service, clock, account_id, 1)
    # The factor's own timed lock stops each batch early; move past it between batches.
    invalid: list[VerifyOutcome] = []
    for _ in range(200):
        items = [VerifyItem(account_id, wrong_for_all(phones, clock.now))] * 10
        outcomes = [o for o in service.verify_batch(items) if isinstance(o, VerifyOutcome)]
        assert len(outcomes) == 10
        invalid += [o for o in outcomes if o.result is VerifyResult.INVALID]
        if invalid[-1].unlock_required:
            break
        clock.advance(service.policy.lock_seconds)
    assert len(invalid) == 100
    assert [o.unlock_required for o in invalid] == [False] * 99 + [True]
    again = service.verify_batch([VerifyItem(account_id, "000000")] * 3)
    assert all(isinstance(o, VerifyOutcome) and o.unlock_required for o in again)


@pytest.mark.parametrize("factors", [1, 5])
def test_parallel_failures_never_exceed_the_budget(
    engine: Engine, keyring: Keyring, clock: Clock, account_id: str, factors: int
) -> None:
    policy = Policy(**NO_FACTOR_LIMITS)
    service = MfaService(FactorStore(engine), keyring, policy, clock)
    phones = enroll_many(service, clock, account_id, factors)
    code = wrong_for_all(phones, clock.now)
    threads_count, per_thread = 8, 8
    barrier = threading.Barrier(threads_count)
    results: list[VerifyResult] = []
    lock = threading.Lock()

    def attack() -> None:
        barrier.wait(timeout=30)
        for _ in range(per_thread):
            outcome = service.verify(VerifyItem(account_id, code))
            with lock:
                results.append(outcome.result)

    threads = [threading.Thread(target=attack) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    counts = Counter(results)
    assert len(results) == threads_count * per_thread
    allowed = policy.failure_budget // factors
    assert counts[VerifyResult.INVALID] == allowed
    assert counts[VerifyResult.LOCKED] == threads_count * per_thread - allowed
    state = FactorStore(engine).account_state(account_id)
    assert state is not None and state.consecutive_failures == allowed
    assert state.budget_tat == int(clock.now) + failure_budget.cost_seconds(
        policy, allowed * factors
    )


@pytest.mark.parametrize("policy", [Policy(backoff_base_seconds=0, max_consecutive_failures=3)])
def test_re_enrolling_does_not_lift_the_account_lock(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    (phone,) = enroll_many(service, clock, account_id, 1)
    for _ in range(3):
        service.verify(VerifyItem(account_id, wrong_for_all([phone], clock.now)))
    service.disable(account_id, None, None, True)
    (new_phone,) = enroll_many(service, clock, account_id, 1)  # confirmed: pending is not guarded
    locked = service.verify(VerifyItem(account_id, code_at(new_phone, clock.now)))
    assert locked.result is VerifyResult.LOCKED and locked.unlock_required
    store_of(service).unlock_account(account_id)
    valid = service.verify(VerifyItem(account_id, code_at(new_phone, clock.now)))
    assert valid.result is VerifyResult.VALID
