"""A year of guessing as fast as the default policy allows, on a fake clock.

The attacker retries exactly when `retry_after_seconds` says. In the worst
case a real user signs in now and then, which ends the run of failures, so
the lock after 100 consecutive failures never stops the attack and only the
failure budget bounds it. The figures are the issue's: at 6 digits and window
1 a guess compared with one factor succeeds with p = 3e-6, and an account's
chance over a year must stay at or below 1.1e-3 whatever its number of factors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from tests.conftest import Clock
from tests.enrollments import enroll_many, wrong_for_all
from tests.service.conftest import Compared
from tests.totp_oracle import code_at
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import Enrollment, VerifyItem, VerifyResult

YEAR = 365 * 86400
P_PAIR = 3 / 10**6  # three accepted codes (window 1) out of 10^6
TARGET = 1.1e-3


@dataclass
class Tally:
    guesses: int = 0  # compared and failed (INVALID or REPLAYED)
    pairs: int = 0  # (code, factor) pairs compared for those guesses
    locked: int = 0  # LOCKED answers: nothing compared
    user_sign_ins: int = 0
    unlock_required: bool = False


def attack_for_a_year(
    service: MfaService,
    clock: Clock,
    compared: Compared,
    account_id: str,
    phones: list[Enrollment],
    *,
    user_signs_in: bool,
) -> Tally:
    tally = Tally()
    end = clock.now + YEAR
    failures_in_a_row = 0
    while clock.now < end:
        if user_signs_in and failures_in_a_row >= 50:
            # The user's own code, compared when the budget allows (their pairs are not counted).
            signed_in = service.verify(VerifyItem(account_id, code_at(phones[0], clock.now)))
            compared.take()
            if signed_in.result is VerifyResult.VALID:
                tally.user_sign_ins += 1
                failures_in_a_row = 0
        outcome = service.verify(VerifyItem(account_id, wrong_for_all(phones, clock.now)))
        pairs = compared.take()
        if outcome.result is VerifyResult.LOCKED:
            assert pairs == 0
            tally.locked += 1
            if outcome.unlock_required:
                tally.unlock_required = True
                break
            assert outcome.retry_after_seconds >= 1
        else:
            assert outcome.result in (VerifyResult.INVALID, VerifyResult.REPLAYED)
            assert pairs == len(phones)  # every factor unblocked: pairs = guesses x factors
            tally.guesses += 1
            tally.pairs += pairs
            failures_in_a_row += 1
        clock.advance(outcome.retry_after_seconds)
    return tally


@pytest.mark.parametrize("factors", [1, 5])
def test_a_year_of_guessing_stays_within_the_budget(
    service: MfaService, clock: Clock, account_id: str, compared: Compared, factors: int
) -> None:
    policy = service.policy
    assert policy == Policy()  # the defaults are what is measured
    phones = enroll_many(service, clock, account_id, factors)
    compared.take()
    tally = attack_for_a_year(service, clock, compared, account_id, phones, user_signs_in=True)
    bound = policy.yearly_failure_bound()  # B * (1 + 365 days / window) = 355.5
    assert bound == pytest.approx(355.5)
    assert not tally.unlock_required and tally.user_sign_ins >= 1
    assert tally.pairs <= bound
    # The attacker really went as fast as allowed: within one guess of the bound.
    assert tally.pairs > bound - 2 * factors
    assert tally.guesses * factors == tally.pairs
    success = 1 - (1 - P_PAIR) ** tally.pairs
    assert success <= TARGET
    assert P_PAIR * bound <= TARGET


@pytest.mark.parametrize("factors", [1, 5])
def test_alone_the_attacker_meets_the_consecutive_lock_first(
    service: MfaService, clock: Clock, account_id: str, compared: Compared, factors: int
) -> None:
    policy = service.policy
    phones = enroll_many(service, clock, account_id, factors)
    compared.take()
    start = clock.now
    tally = attack_for_a_year(service, clock, compared, account_id, phones, user_signs_in=False)
    # One factor: 100 guesses fit in a year's budget (355), then the account stays
    # locked. Five factors: the budget (71 guesses) ends the year first.
    expected = min(
        policy.max_consecutive_failures, math.floor(policy.yearly_failure_bound() / factors)
    )
    assert tally.guesses == expected
    assert tally.unlock_required is (factors == 1)
    assert tally.pairs <= policy.yearly_failure_bound()
    if tally.unlock_required:
        assert clock.now - start < 120 * 86400
