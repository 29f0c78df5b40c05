"""Idempotent Enroll, ConfirmEnrollment and Disable (AIP-155) on both databases."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine, func, select, text

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.totp_oracle import code_at, wrong_code
from totpd import deadlines
from totpd.crypto import Keyring
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.idempotency import (
    CLAIM_LEASE_MARGIN_SECONDS,
    CLAIM_LEASE_SECONDS,
    claim_lease_seconds,
)
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import EnrollParams, FactorState, VerifyResult
from totpd.store import FactorStore
from totpd.store.errors import StoreUnavailableError
from totpd.store.models import FactorRow, RequestRecord

BAD_REQUEST_IDS = [
    "x" * 65,
    "has space",
    " leading",
    "tab\tinside",
    "nul\x00byte",
    "caf\u00e9",
    "\uff11\uff12",
    "new\nline",
]


def factor_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(FactorRow)).scalar_one())


def records(engine: Engine) -> list[RequestRecord]:
    with engine.connect() as connection:
        return list(connection.execute(select(RequestRecord.__table__)).all())  # type: ignore[arg-type]


def refused(call: object, *args: object, **kwargs: object) -> TotpdError:
    with pytest.raises(TotpdError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def test_a_retried_enroll_returns_the_same_factor_and_secret(
    service: MfaService, account_id: str, engine: Engine
) -> None:
    first = service.enroll(EnrollParams(account_id, "phone"), request_id="enroll-1")
    again = service.enroll(EnrollParams(account_id, "phone"), request_id="enroll-1")
    assert again.factor == first.factor
    assert (again.secret_base32, again.otpauth_uri) == (first.secret_base32, first.otpauth_uri)
    assert (again.qr_png, again.qr_svg) == (first.qr_png, first.qr_svg)
    assert factor_count(engine) == 1


def test_an_enroll_without_request_id_acts_every_time(
    service: MfaService, account_id: str, engine: Engine
) -> None:
    service.enroll(EnrollParams(account_id, ""), request_id="")
    service.enroll(EnrollParams(account_id, ""), request_id=None)
    assert factor_count(engine) == 2
    assert records(engine) == []


def test_the_request_record_holds_no_secret_code_or_uri(
    service: MfaService, clock: Clock, account_id: str, engine: Engine
) -> None:
    enrollment = service.enroll(EnrollParams(account_id, "phone"), request_id="enroll-1")
    code = code_at(enrollment, clock.now)
    service.confirm(account_id, enrollment.factor.factor_id, code, request_id="confirm-1")
    stored = repr(records(engine))
    for value in (enrollment.secret_base32, enrollment.otpauth_uri, code):
        assert value not in stored
    assert enrollment.factor.factor_id in stored


def test_a_request_id_reused_with_other_fields_is_refused(
    service: MfaService, clock: Clock, account_id: str, engine: Engine
) -> None:
    first = service.enroll(EnrollParams(account_id, "phone"), request_id="r-1")
    error = refused(service.enroll, EnrollParams(account_id, "tablet"), request_id="r-1")
    assert (error.reason, error.field) == (ErrorReason.REQUEST_ID_REUSED, "request_id")
    other = refused(service.enroll, EnrollParams(account_id + "x", "phone"), request_id="r-1")
    assert other.reason is ErrorReason.REQUEST_ID_REUSED
    code = code_at(first, clock.now)
    error = refused(service.confirm, account_id, first.factor.factor_id, code, request_id="r-1")
    assert error.reason is ErrorReason.REQUEST_ID_REUSED
    assert factor_count(engine) == 1
    assert service.get_factor(account_id, first.factor.factor_id).state is FactorState.PENDING


@pytest.mark.parametrize("bad", BAD_REQUEST_IDS)
def test_a_malformed_request_id_is_refused_and_nothing_is_written(
    service: MfaService, account_id: str, engine: Engine, bad: str
) -> None:
    error = refused(service.enroll, EnrollParams(account_id, "phone"), request_id=bad)
    assert (error.reason, error.field) == (ErrorReason.INVALID_ARGUMENT, "request_id")
    assert bad not in error.message
    error = refused(service.disable, account_id, None, None, True, request_id=bad)
    assert error.field == "request_id"
    assert factor_count(engine) == 0 and records(engine) == []


def test_bad_fields_with_a_request_id_write_no_record(
    service: MfaService, account_id: str, engine: Engine
) -> None:
    error = refused(service.enroll, EnrollParams(account_id, "a:b"), request_id="r-1")
    assert error.field == "label"
    enrollment = service.enroll(EnrollParams(account_id, "phone"))
    error = refused(
        service.confirm, account_id, enrollment.factor.factor_id, "12345a", request_id="r-2"
    )
    assert error.reason is ErrorReason.MALFORMED_CODE
    assert records(engine) == []


def test_a_refused_call_keeps_no_record_so_its_retry_runs_again(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enroll_active(service, clock, account_id, label="phone")
    error = refused(service.enroll, EnrollParams(account_id, "phone"), request_id="r-1")
    assert error.reason is ErrorReason.LABEL_TAKEN
    service.disable(account_id, None, None, True)
    retried = service.enroll(EnrollParams(account_id, "phone"), request_id="r-1")
    assert retried.factor.state is FactorState.PENDING


def test_a_retried_enroll_never_returns_the_secret_of_a_confirmed_factor(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    first = service.enroll(EnrollParams(account_id, "phone"), request_id="r-1")
    service.confirm(account_id, first.factor.factor_id, code_at(first, clock.now))
    error = refused(service.enroll, EnrollParams(account_id, "phone"), request_id="r-1")
    assert (error.reason, error.field) == (ErrorReason.FACTOR_NOT_ACTIVE, "request_id")
    assert "active" in error.message
    service.disable(account_id, None, None, True)
    error = refused(service.enroll, EnrollParams(account_id, "phone"), request_id="r-1")
    assert error.reason is ErrorReason.FACTOR_NOT_ACTIVE and "disabled" in error.message


def test_a_retried_enroll_after_the_enrollment_expired_says_so(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    service.enroll(EnrollParams(account_id, "phone"), request_id="r-1")
    clock.advance(service.policy.enrollment_ttl_seconds)
    error = refused(service.enroll, EnrollParams(account_id, "phone"), request_id="r-1")
    assert error.reason is ErrorReason.ENROLLMENT_EXPIRED


def test_a_retried_confirm_returns_the_first_verdict_and_counts_nothing(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = service.enroll(EnrollParams(account_id, "phone"))
    factor_id = enrollment.factor.factor_id
    code = code_at(enrollment, clock.now)
    bad = wrong_code(code)
    first, _ = service.confirm(account_id, factor_id, bad, request_id="c-1")
    again, factor = service.confirm(account_id, factor_id, bad, request_id="c-1")
    assert first.result is again.result is VerifyResult.INVALID
    assert again.attempts_left == first.attempts_left
    # A fresh attempt shows a single failure was counted.
    fresh, _ = service.confirm(account_id, factor_id, bad)
    assert fresh.attempts_left == first.attempts_left - 1
    ok, _ = service.confirm(account_id, factor_id, code, request_id="c-2")
    ok_again, factor = service.confirm(account_id, factor_id, code, request_id="c-2")
    assert ok.result is ok_again.result is VerifyResult.VALID
    assert ok_again.factor_id == factor_id and factor.state is FactorState.ACTIVE


def test_a_retried_disable_returns_the_first_result_without_a_new_code(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    factor_id = enrollment.factor.factor_id
    code = code_at(enrollment, clock.now)
    outcome, disabled = service.disable(account_id, None, code, False, request_id="d-1")
    assert outcome.result is VerifyResult.VALID
    assert [factor.factor_id for factor in disabled] == [factor_id]
    # The retry carries the same, now used, code: the first result, not REPLAYED.
    again, disabled_again = service.disable(account_id, None, code, False, request_id="d-1")
    assert again == outcome
    assert disabled_again == disabled
    assert disabled_again[0].state is FactorState.DISABLED
    # Without the request_id the same code is a replay (and nothing is live).
    error = refused(service.disable, account_id, None, code, False)
    assert error.reason is ErrorReason.ACCOUNT_NOT_FOUND


def test_a_retried_disable_that_failed_its_code_replays_the_failure(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    bad = wrong_code(code_at(enrollment, clock.now))
    first, none = service.disable(account_id, None, bad, False, request_id="d-1")
    again, none_again = service.disable(account_id, None, bad, False, request_id="d-1")
    assert first.result is again.result is VerifyResult.INVALID
    assert none == none_again == []
    assert again.attempts_left == first.attempts_left
    assert service.list_factors(account_id, include_inactive=False)[0].state is FactorState.ACTIVE


def test_a_request_id_past_its_retention_acts_again(
    engine: Engine, keyring: Keyring, clock: Clock, account_id: str
) -> None:
    policy = Policy(request_id_retention_seconds=600)
    service = MfaService(FactorStore(engine), keyring, policy, clock)
    first = service.enroll(EnrollParams(account_id, ""), request_id="r-1")
    clock.advance(599)
    assert service.enroll(EnrollParams(account_id, ""), request_id="r-1").factor == first.factor
    clock.advance(1)
    later = service.enroll(EnrollParams(account_id, ""), request_id="r-1")
    assert later.factor.factor_id != first.factor.factor_id
    assert factor_count(engine) == 2
    assert len(records(engine)) == 1


def test_concurrent_duplicates_act_once(
    service: MfaService, account_id: str, engine: Engine
) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    results: list[object] = []
    lock = threading.Lock()

    def enroll() -> None:
        barrier.wait(timeout=30)
        try:
            result: object = service.enroll(EnrollParams(account_id, "phone"), request_id="dup")
        except TotpdError as error:
            result = error
        with lock:
            results.append(result)

    workers = [threading.Thread(target=enroll) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert len(results) == threads
    enrollments = [r for r in results if not isinstance(r, TotpdError)]
    errors = [r for r in results if isinstance(r, TotpdError)]
    # A duplicate either gets the first result or, still running, a retry-later.
    assert all(e.reason is ErrorReason.OVERLOADED and e.field == "request_id" for e in errors)
    assert enrollments
    assert {e.factor.factor_id for e in enrollments} == {enrollments[0].factor.factor_id}  # type: ignore[union-attr]
    assert {e.secret_base32 for e in enrollments} == {enrollments[0].secret_base32}  # type: ignore[union-attr]
    assert factor_count(engine) == 1


def test_concurrent_duplicate_disables_consume_one_code(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    code = code_at(enrollment, clock.now)
    threads = 6
    barrier = threading.Barrier(threads)
    outcomes: list[VerifyResult] = []
    lock = threading.Lock()

    def disable() -> None:
        barrier.wait(timeout=30)
        outcome, _ = service.disable(account_id, None, code, False, request_id="dup")
        with lock:
            outcomes.append(outcome.result)

    workers = [threading.Thread(target=disable) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes == [VerifyResult.VALID] * threads
    assert service.list_factors(account_id, include_inactive=False) == []


def test_a_claim_left_by_a_crashed_call_is_taken_over_after_its_lease(
    service: MfaService, clock: Clock, account_id: str, engine: Engine
) -> None:
    service.enroll(EnrollParams(account_id, "phone"), request_id="r-1")
    # As if the process died between its claim and its result.
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM factors"))
        connection.execute(text("UPDATE request_records SET state = 'running', result = NULL"))
    clock.advance(61)
    retried = service.enroll(EnrollParams(account_id, "phone"), request_id="r-1")
    assert service.get_factor(account_id, retried.factor.factor_id).state is FactorState.PENDING
    assert factor_count(engine) == 1


@pytest.mark.slow  # the duplicate first waits its full time for the running call
def test_a_duplicate_of_a_call_still_running_is_told_to_retry_later(
    service: MfaService, account_id: str, engine: Engine
) -> None:
    service.enroll(EnrollParams(account_id, "phone"), request_id="r-1")
    # As if the first call were still between its claim and its result.
    with engine.begin() as connection:
        connection.execute(text("UPDATE request_records SET state = 'running', result = NULL"))
    error = refused(service.enroll, EnrollParams(account_id, "phone"), request_id="r-1")
    assert (error.reason, error.field) == (ErrorReason.OVERLOADED, "request_id")
    assert error.retry_after_seconds == 1.0
    assert "in progress" in error.message
    assert factor_count(engine) == 1


def test_a_claim_made_within_a_deadline_lapses_a_margin_after_that_deadline(
    service: MfaService, clock: Clock, account_id: str, engine: Engine
) -> None:
    # A call served with a 2 s deadline commits nothing after it: its claim's
    # lease ends 2 s + the margin later, not after the longest lease.
    with deadlines.within(2.0):
        service.enroll(EnrollParams(account_id, "phone"), request_id="r-1")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM factors"))
        connection.execute(text("UPDATE request_records SET state = 'running', result = NULL"))
    clock.advance(2 + CLAIM_LEASE_MARGIN_SECONDS + 1)
    retried = service.enroll(EnrollParams(account_id, "phone"), request_id="r-1")
    assert service.get_factor(account_id, retried.factor.factor_id).state is FactorState.PENDING
    assert factor_count(engine) == 1


def test_the_lease_follows_the_deadline_and_is_never_longer_than_the_longest() -> None:
    assert claim_lease_seconds() == CLAIM_LEASE_SECONDS  # outside a call: no deadline
    with deadlines.within(2.0):
        assert claim_lease_seconds() == 2 + CLAIM_LEASE_MARGIN_SECONDS
    with deadlines.within(0.0):
        assert claim_lease_seconds() == CLAIM_LEASE_MARGIN_SECONDS  # the deadline passed
    with deadlines.within(3600.0):
        assert claim_lease_seconds() == CLAIM_LEASE_SECONDS


def _database_gone_after_the_round(*args: object, **kwargs: object) -> None:
    raise StoreUnavailableError("the database went away after the round committed")


@pytest.mark.parametrize("right_code", [True, False], ids=["valid", "invalid"])
def test_a_confirmation_stores_its_result_with_its_verdict(
    service: MfaService,
    clock: Clock,
    account_id: str,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    right_code: bool,
) -> None:
    # The request record is completed in the verdict's own transaction: with the
    # database gone right after that commit (no separate completion can run), the
    # call still has its answer, and a retry gets the same verdict, never
    # FACTOR_NOT_ACTIVE for a factor its first call activated.
    enrollment = service.enroll(EnrollParams(account_id, "phone"))
    factor_id = enrollment.factor.factor_id
    right = code_at(enrollment, clock.now)
    code = right if right_code else wrong_code(right)
    monkeypatch.setattr(service.deps.store.requests, "complete", _database_gone_after_the_round)
    outcome, _ = service.confirm(account_id, factor_id, code, request_id="confirm-1")
    expected = VerifyResult.VALID if right_code else VerifyResult.INVALID
    assert outcome.result is expected
    (record,) = records(engine)
    assert record.state == "done" and expected.value in record.result
    clock.advance(CLAIM_LEASE_SECONDS + 1)
    again, factor = service.confirm(account_id, factor_id, code, request_id="confirm-1")
    assert again == outcome
    active = FactorState.ACTIVE if right_code else FactorState.PENDING
    assert factor.state is active
