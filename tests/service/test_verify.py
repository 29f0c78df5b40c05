"""Confirmation and verification semantics on both databases."""

from __future__ import annotations

import pytest

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.totp_oracle import code_at, wrong_code
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import (
    Algorithm,
    EnrollParams,
    FactorState,
    VerifyItem,
    VerifyResult,
)


def test_confirm_activates_and_consumes_the_step(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = service.enroll(EnrollParams(account_id, "phone"))
    code = code_at(enrollment, clock.now)
    outcome, factor = service.confirm(account_id, enrollment.factor.factor_id, code)
    assert outcome.result is VerifyResult.VALID and outcome.step_offset == 0
    assert factor.state is FactorState.ACTIVE and factor.confirmed_at == int(clock.now)
    assert service.verify(VerifyItem(account_id, code)).result is VerifyResult.REPLAYED


def test_confirm_with_wrong_code_stays_pending(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = service.enroll(EnrollParams(account_id, "phone"))
    outcome, factor = service.confirm(
        account_id, enrollment.factor.factor_id, wrong_code(code_at(enrollment, clock.now))
    )
    assert outcome.result is VerifyResult.INVALID
    assert outcome.attempts_left == service.policy.lock_after_failures - 1
    assert factor.state is FactorState.PENDING


def test_confirm_twice_is_refused(service: MfaService, clock: Clock, account_id: str) -> None:
    enrollment = enroll_active(service, clock, account_id)
    with pytest.raises(TotpdError) as caught:
        service.confirm(account_id, enrollment.factor.factor_id, code_at(enrollment, clock.now))
    assert caught.value.reason is ErrorReason.FACTOR_NOT_ACTIVE


def test_confirm_after_expiry(service: MfaService, clock: Clock, account_id: str) -> None:
    enrollment = service.enroll(EnrollParams(account_id, "phone"))
    clock.advance(service.policy.enrollment_ttl_seconds + 1)
    with pytest.raises(TotpdError) as caught:
        service.confirm(account_id, enrollment.factor.factor_id, code_at(enrollment, clock.now))
    assert caught.value.reason is ErrorReason.ENROLLMENT_EXPIRED


def test_pending_factor_does_not_verify(service: MfaService, clock: Clock, account_id: str) -> None:
    enrollment = service.enroll(EnrollParams(account_id, "phone"))
    with pytest.raises(TotpdError) as caught:
        service.verify(VerifyItem(account_id, code_at(enrollment, clock.now)))
    assert caught.value.reason is ErrorReason.ACCOUNT_NOT_FOUND
    with pytest.raises(TotpdError) as caught:
        service.verify(
            VerifyItem(account_id, code_at(enrollment, clock.now), enrollment.factor.factor_id)
        )
    assert caught.value.reason is ErrorReason.FACTOR_NOT_ACTIVE


def test_valid_then_replayed(service: MfaService, clock: Clock, account_id: str) -> None:
    enrollment = enroll_active(service, clock, account_id)
    code = code_at(enrollment, clock.now)
    first = service.verify(VerifyItem(account_id, code))
    assert first.result is VerifyResult.VALID
    assert first.factor_id == enrollment.factor.factor_id
    assert first.attempts_left == service.policy.lock_after_failures
    second = service.verify(VerifyItem(account_id, code))
    assert second.result is VerifyResult.REPLAYED
    assert second.factor_id == enrollment.factor.factor_id
    # An older step than the last used one is a replay too, even if never used.
    clock.advance(30)
    assert (
        service.verify(VerifyItem(account_id, code_at(enrollment, clock.now))).result
        is VerifyResult.VALID
    )
    assert (
        service.verify(VerifyItem(account_id, code_at(enrollment, clock.now - 30))).result
        is VerifyResult.REPLAYED
    )


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_window_one_accepts_adjacent_steps(
    service: MfaService, clock: Clock, account_id: str, offset: int
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    clock.advance(90)
    outcome = service.verify(VerifyItem(account_id, code_at(enrollment, clock.now + 30 * offset)))
    assert outcome.result is VerifyResult.VALID
    assert outcome.step_offset == offset


@pytest.mark.parametrize("offset", [-2, 2])
def test_window_one_refuses_further_steps(
    service: MfaService, clock: Clock, account_id: str, offset: int
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    clock.advance(90)
    outcome = service.verify(VerifyItem(account_id, code_at(enrollment, clock.now + 30 * offset)))
    assert outcome.result is VerifyResult.INVALID


@pytest.mark.parametrize("policy", [Policy(window=0)])
def test_window_zero(service: MfaService, clock: Clock, account_id: str) -> None:
    enrollment = enroll_active(service, clock, account_id)
    clock.advance(90)
    assert (
        service.verify(VerifyItem(account_id, code_at(enrollment, clock.now - 30))).result
        is VerifyResult.INVALID
    )
    assert (
        service.verify(VerifyItem(account_id, code_at(enrollment, clock.now))).result
        is VerifyResult.VALID
    )


@pytest.mark.parametrize(
    ("algorithm", "digits", "period"),
    [(Algorithm.SHA1, 6, 30), (Algorithm.SHA256, 7, 15), (Algorithm.SHA512, 8, 120)],
)
def test_every_algorithm_verifies(
    service: MfaService,
    clock: Clock,
    account_id: str,
    algorithm: Algorithm,
    digits: int,
    period: int,
) -> None:
    enrollment = enroll_active(
        service, clock, account_id, algorithm=algorithm, digits=digits, period_seconds=period
    )
    outcome = service.verify(VerifyItem(account_id, code_at(enrollment, clock.now)))
    assert outcome.result is VerifyResult.VALID


def test_code_from_another_accounts_device_never_works(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    mine = enroll_active(service, clock, account_id)
    theirs = enroll_active(service, clock, account_id + "-b")
    clock.advance(30)
    their_code = code_at(theirs, clock.now)
    if their_code != code_at(mine, clock.now):
        assert service.verify(VerifyItem(account_id, their_code)).result is VerifyResult.INVALID
    # Naming their factor under my account is "not found", exactly like a missing one.
    with pytest.raises(TotpdError) as caught:
        service.verify(VerifyItem(account_id, their_code, theirs.factor.factor_id))
    assert caught.value.reason is ErrorReason.FACTOR_NOT_FOUND
    with pytest.raises(TotpdError) as caught:
        service.get_factor(account_id, theirs.factor.factor_id)
    assert caught.value.reason is ErrorReason.FACTOR_NOT_FOUND
    assert service.verify(VerifyItem(account_id + "-b", their_code)).result is VerifyResult.VALID


def test_any_active_factor_of_the_account_verifies(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    phone = enroll_active(service, clock, account_id, "phone")
    tablet = enroll_active(service, clock, account_id, "tablet")
    outcome = service.verify(VerifyItem(account_id, code_at(tablet, clock.now)))
    assert outcome.result is VerifyResult.VALID and outcome.factor_id == tablet.factor.factor_id
    restricted = service.verify(
        VerifyItem(account_id, code_at(phone, clock.now), tablet.factor.factor_id)
    )
    expected = (
        VerifyResult.REPLAYED
        if code_at(phone, clock.now) == code_at(tablet, clock.now)
        else VerifyResult.INVALID
    )
    assert restricted.result is expected


def test_backoff_then_lock_then_unlock(service: MfaService, clock: Clock, account_id: str) -> None:
    policy = service.policy
    enrollment = enroll_active(service, clock, account_id)
    for failure in range(1, policy.lock_after_failures + 1):
        outcome = service.verify(VerifyItem(account_id, wrong_code(code_at(enrollment, clock.now))))
        assert outcome.result is VerifyResult.INVALID, failure
        assert outcome.attempts_left == policy.lock_after_failures - failure
        assert outcome.retry_after_seconds == policy.wait_after(failure)
        if failure >= policy.backoff_after_failures and failure < policy.lock_after_failures:
            # During backoff even the right code is not compared.
            blocked = service.verify(VerifyItem(account_id, code_at(enrollment, clock.now)))
            assert blocked.result is VerifyResult.LOCKED
            assert 1 <= blocked.retry_after_seconds <= policy.wait_after(failure)
            clock.advance(policy.wait_after(failure))
    locked = service.verify(VerifyItem(account_id, code_at(enrollment, clock.now)))
    assert locked.result is VerifyResult.LOCKED
    assert locked.attempts_left == 0 and locked.retry_after_seconds == policy.lock_seconds
    locked_by_factor = service.verify(VerifyItem(account_id, "000000", enrollment.factor.factor_id))
    assert locked_by_factor.result is VerifyResult.LOCKED
    assert locked_by_factor.factor_id == enrollment.factor.factor_id
    clock.advance(policy.lock_seconds)
    unlocked = service.verify(VerifyItem(account_id, code_at(enrollment, clock.now)))
    assert unlocked.result is VerifyResult.VALID
    assert unlocked.attempts_left == policy.lock_after_failures


def test_success_resets_the_failure_count(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    for _ in range(2):
        service.verify(VerifyItem(account_id, wrong_code(code_at(enrollment, clock.now))))
    assert (
        service.verify(VerifyItem(account_id, code_at(enrollment, clock.now))).result
        is VerifyResult.VALID
    )
    outcome = service.verify(VerifyItem(account_id, wrong_code(code_at(enrollment, clock.now))))
    assert outcome.attempts_left == service.policy.lock_after_failures - 1


def test_replay_counts_as_a_failure(service: MfaService, clock: Clock, account_id: str) -> None:
    enrollment = enroll_active(service, clock, account_id)
    code = code_at(enrollment, clock.now)
    service.verify(VerifyItem(account_id, code))
    replayed = service.verify(VerifyItem(account_id, code))
    assert replayed.result is VerifyResult.REPLAYED
    assert replayed.attempts_left == service.policy.lock_after_failures - 1


BAD_CODES = [
    " 123456",
    "123456 ",
    "１２３４５６",
    "١٢٣٤٥٦",
    "123_456",
    "+12345",
    "-12345",
    "",
    "12345a",
    "12345\x00",
    "123456\n",
    "1" * 10_240,
    "12345",
    "123456789",
    "0x1234",
]


@pytest.mark.parametrize("code", BAD_CODES)
def test_malformed_codes_are_rejected_and_not_counted(
    service: MfaService, clock: Clock, account_id: str, code: str
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    for request in (
        VerifyItem(account_id, code),
        VerifyItem(account_id, code, enrollment.factor.factor_id),
    ):
        with pytest.raises(TotpdError) as caught:
            service.verify(request)
        assert caught.value.reason is ErrorReason.MALFORMED_CODE
        assert caught.value.field == "code"
        assert code not in caught.value.message or code == ""
    # Nothing was counted: a wrong code now leaves lock_after - 1 attempts.
    outcome = service.verify(VerifyItem(account_id, wrong_code(code_at(enrollment, clock.now))))
    assert outcome.attempts_left == service.policy.lock_after_failures - 1


def test_seven_digits_for_a_six_digit_factor(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    with pytest.raises(TotpdError) as caught:
        service.verify(VerifyItem(account_id, "1234567"))
    assert caught.value.reason is ErrorReason.MALFORMED_CODE
    outcome = service.verify(VerifyItem(account_id, wrong_code(code_at(enrollment, clock.now))))
    assert outcome.attempts_left == service.policy.lock_after_failures - 1


@pytest.mark.parametrize("factor_id", ["not-a-uuid", "F" * 36, "\x00", "x" * 10_240])
def test_malformed_factor_ids(service: MfaService, account_id: str, factor_id: str) -> None:
    for call in (
        lambda: service.verify(VerifyItem(account_id, "123456", factor_id)),
        lambda: service.confirm(account_id, factor_id, "123456"),
        lambda: service.get_factor(account_id, factor_id),
        lambda: service.disable(account_id, factor_id, None, True),
    ):
        with pytest.raises(TotpdError) as caught:
            call()
        assert caught.value.reason is ErrorReason.INVALID_ARGUMENT
        assert caught.value.field == "factor_id"


def test_unknown_account(service: MfaService, account_id: str) -> None:
    with pytest.raises(TotpdError) as caught:
        service.verify(VerifyItem(account_id, "123456"))
    assert caught.value.reason is ErrorReason.ACCOUNT_NOT_FOUND
    assert service.list_factors(account_id, include_inactive=True) == []
