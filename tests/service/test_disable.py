from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.totp_oracle import code_at, wrong_code
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.types import EnrollParams, FactorState, VerifyItem, VerifyResult
from totpd.store import FactorStore
from totpd.store.errors import StoreUnavailableError
from totpd.store.models import FactorRow


def stored_secret(engine: Engine, factor_id: str) -> tuple[object, object, object]:
    with engine.connect() as connection:
        row = connection.execute(
            select(
                FactorRow.secret_key_id, FactorRow.secret_nonce, FactorRow.secret_ciphertext
            ).where(FactorRow.id == factor_id)
        ).one()
    return tuple(row)  # type: ignore[return-value]


def test_disable_with_current_code_erases_the_secret(
    service: MfaService, clock: Clock, account_id: str, engine: Engine
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    factor_id = enrollment.factor.factor_id
    assert stored_secret(engine, factor_id)[2] is not None
    code = code_at(enrollment, clock.now)
    outcome, disabled = service.disable(account_id, factor_id, code, force=False)
    assert outcome.result is VerifyResult.VALID
    assert [factor.state for factor in disabled] == [FactorState.DISABLED]
    assert stored_secret(engine, factor_id) == (None, None, None)
    with pytest.raises(TotpdError) as caught:
        service.verify(VerifyItem(account_id, code_at(enrollment, clock.now + 30)))
    assert caught.value.reason is ErrorReason.ACCOUNT_NOT_FOUND
    assert service.list_factors(account_id, include_inactive=False) == []
    assert service.get_factor(account_id, factor_id).state is FactorState.DISABLED


def test_disable_with_wrong_or_reused_code_changes_nothing(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    code = code_at(enrollment, clock.now)
    assert service.verify(VerifyItem(account_id, code)).result is VerifyResult.VALID
    outcome, disabled = service.disable(account_id, None, code, force=False)
    assert (outcome.result, disabled) == (VerifyResult.REPLAYED, [])
    outcome, disabled = service.disable(account_id, None, wrong_code(code), force=False)
    assert (outcome.result, disabled) == (VerifyResult.INVALID, [])
    assert service.get_factor(account_id, enrollment.factor.factor_id).state is FactorState.ACTIVE


def test_disable_needs_code_or_force(service: MfaService, clock: Clock, account_id: str) -> None:
    enroll_active(service, clock, account_id)
    with pytest.raises(TotpdError) as caught:
        service.disable(account_id, None, None, force=False)
    assert caught.value.reason is ErrorReason.CODE_REQUIRED
    with pytest.raises(TotpdError) as caught:
        service.disable(account_id, None, "１２３４５６", force=False)
    assert caught.value.reason is ErrorReason.MALFORMED_CODE


def test_force_disables_every_factor_of_the_account(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enroll_active(service, clock, account_id, "phone")
    pending = service.enroll(EnrollParams(account_id, "tablet"))
    outcome, disabled = service.disable(account_id, None, None, force=True)
    assert outcome.result is VerifyResult.VALID
    assert len(disabled) == 2 and {f.state for f in disabled} == {FactorState.DISABLED}
    assert service.get_factor(account_id, pending.factor.factor_id).state is FactorState.DISABLED
    with pytest.raises(TotpdError) as caught:
        service.disable(account_id, None, None, force=True)
    assert caught.value.reason is ErrorReason.ACCOUNT_NOT_FOUND


def test_disable_one_factor_keeps_the_other(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    phone = enroll_active(service, clock, account_id, "phone")
    tablet = enroll_active(service, clock, account_id, "tablet")
    _, disabled = service.disable(
        account_id, phone.factor.factor_id, code_at(phone, clock.now), force=False
    )
    assert [f.factor_id for f in disabled] == [phone.factor.factor_id]
    assert (
        service.verify(VerifyItem(account_id, code_at(tablet, clock.now + 30))).result
        is VerifyResult.VALID
    )
    with pytest.raises(TotpdError) as caught:
        service.disable(account_id, phone.factor.factor_id, None, force=True)
    assert caught.value.reason is ErrorReason.FACTOR_NOT_ACTIVE


def test_cancel_a_pending_enrollment_with_its_own_code(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    pending = service.enroll(EnrollParams(account_id, "phone"))
    outcome, disabled = service.disable(
        account_id, pending.factor.factor_id, code_at(pending, clock.now), force=False
    )
    assert outcome.result is VerifyResult.VALID
    assert [f.state for f in disabled] == [FactorState.DISABLED]


def test_a_cancel_that_fails_half_way_leaves_the_enrollment_pending(
    service: MfaService, clock: Clock, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code check and the disable are two statements: if the second fails,
    the enrollment being cancelled must not have been activated by the first."""
    pending = service.enroll(EnrollParams(account_id, "phone"))
    factor_id = pending.factor.factor_id

    def store_down(self: FactorStore, ids: list[str], **_: object) -> None:
        raise StoreUnavailableError("the database failed", Exception("connection lost"))

    with monkeypatch.context() as patched:
        patched.setattr(FactorStore, "disable", store_down)
        with pytest.raises(StoreUnavailableError):
            service.disable(account_id, factor_id, code_at(pending, clock.now), force=False)
    assert service.get_factor(account_id, factor_id).state is FactorState.PENDING
    # Its step was used up; the next code cancels it.
    clock.advance(pending.factor.period_seconds)
    outcome, disabled = service.disable(
        account_id, factor_id, code_at(pending, clock.now), force=False
    )
    assert outcome.result is VerifyResult.VALID
    assert [f.state for f in disabled] == [FactorState.DISABLED]


def test_another_accounts_factor_cannot_be_disabled(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    theirs = enroll_active(service, clock, account_id + "-b")
    with pytest.raises(TotpdError) as caught:
        service.disable(account_id, theirs.factor.factor_id, None, force=True)
    assert caught.value.reason is ErrorReason.FACTOR_NOT_FOUND
    assert (
        service.get_factor(account_id + "-b", theirs.factor.factor_id).state is FactorState.ACTIVE
    )
