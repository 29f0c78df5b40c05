"""Enrollment: a new pending factor and its secret (Enroll, and a retried Enroll while the
factor is pending), then its confirmation with a first code (ConfirmEnrollment)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from totpd.crypto import SealedSecret, SecretUnavailableError, tenant_slot
from totpd.domain import ISSUER_MAX, LABEL_MAX, Algorithm, FactorState
from totpd.service import idempotency, provisioning, validation
from totpd.service.audit import AuditContext, time_us
from totpd.service.errors import ErrorReason, TotpdError, secret_unavailable
from totpd.service.mfa.deps import Deps
from totpd.service.mfa.factors import get_factor, owned_factor, to_factor
from totpd.service.policy import Policy
from totpd.service.types import Enrollment, EnrollParams, Factor, VerifyItem, VerifyOutcome
from totpd.store import LabelTakenError, NewFactor, StoredFactor

_DEFAULT_LABEL = "Authenticator"


@dataclass(frozen=True)
class _Wanted:
    """An Enroll request, validated; label None: the first free default label."""

    account_id: str
    issuer: str
    label: str | None
    algorithm: Algorithm
    digits: int
    period_seconds: int


def enroll(
    deps: Deps,
    tenant: str,
    params: EnrollParams,
    request_id: str | None,
    audit: AuditContext | None = None,
) -> Enrollment:
    request_id = idempotency.request_id(request_id)
    policy = deps.policies.for_tenant(tenant)
    wanted = _validated(policy, params)
    account_id = wanted.account_id
    call = deps.requests.start(
        request_id, "Enroll", account_id, _enroll_fields(params), tenant=tenant
    )
    if call.replay is not None:
        (first_factor_id,) = idempotency.factor_ids_of(call.replay)
        return _enrollment_again(deps, tenant, account_id, first_factor_id)

    now = deps.now()
    factor_id = str(uuid.uuid4())
    secret = provisioning.new_secret(wanted.algorithm)
    sealed = deps.keyring.seal(factor_id, account_id, secret, tenant_id=tenant_slot(tenant))

    def new_factor(live: list[StoredFactor]) -> NewFactor:
        # Runs in the store's enrollment transaction: nothing else enrolls
        # this account meanwhile, so the limit and the labels hold.
        return _new_factor(policy, wanted, live, factor_id, sealed, now)

    record = call.completion(idempotency.factors_result([factor_id]))
    events = [audit.row(time_us(deps.clock), account_id, factor_id)] if audit else []
    with call:
        try:
            factor = deps.store.add_to_account(
                account_id,
                now=now,
                make_factor=new_factor,
                completes=record,
                tenant=tenant,
                events=events,
            )
        except LabelTakenError:
            raise _label_taken() from None
    return _enrollment(factor, secret)


def _validated(policy: Policy, params: EnrollParams) -> _Wanted:
    issuer = params.issuer or policy.default_issuer
    return _Wanted(
        account_id=validation.account_id(params.account_id),
        issuer=validation.display_name(issuer, "issuer", ISSUER_MAX),
        label=validation.display_name(params.label, "label", LABEL_MAX) if params.label else None,
        algorithm=validation.algorithm(params.algorithm),
        digits=validation.digits(params.digits),
        period_seconds=validation.period(params.period_seconds),
    )


def _new_factor(
    policy: Policy,
    wanted: _Wanted,
    live: list[StoredFactor],
    factor_id: str,
    sealed: SealedSecret,
    now: int,
) -> NewFactor:
    """The factor to add beside the account's live ones, within the limit and the labels."""
    if len(live) >= policy.max_factors_per_account:
        raise TotpdError(
            ErrorReason.FACTOR_LIMIT_REACHED,
            f"the account already has {len(live)} factors, the maximum; disable one first",
            field="account_id",
        )
    taken = {factor.label for factor in live}
    chosen = wanted.label or _first_free_label(taken)
    if chosen in taken:
        raise _label_taken()
    return NewFactor(
        factor_id=factor_id,
        account_id=wanted.account_id,
        label=chosen,
        issuer=wanted.issuer,
        algorithm=wanted.algorithm,
        digits=wanted.digits,
        period_seconds=wanted.period_seconds,
        secret_key_id=sealed.key_id,
        secret_nonce=sealed.nonce,
        secret_ciphertext=sealed.ciphertext,
        created_at=now,
        expires_at=now + policy.enrollment_ttl_seconds,
    )


def _enrollment_again(deps: Deps, tenant: str, account_id: str, factor_id: str) -> Enrollment:
    """A retried Enroll: the first call's secret, only while its factor is pending."""
    factor = owned_factor(deps, tenant, account_id, factor_id)
    if factor.state in (FactorState.ACTIVE, FactorState.DISABLED):
        raise TotpdError(
            ErrorReason.FACTOR_NOT_ACTIVE,
            f"the factor this request_id enrolled is {factor.state}; its secret is not "
            "returned again (enroll with a new request_id for a new factor)",
            field="request_id",
        )
    if factor.state is FactorState.EXPIRED or (factor.expires_at or 0) <= deps.now():
        raise TotpdError(
            ErrorReason.ENROLLMENT_EXPIRED,
            "the enrollment this request_id made expired; enroll again with a new request_id",
            field="request_id",
        )
    key_id, nonce, ciphertext = (
        factor.secret_key_id,
        factor.secret_nonce,
        factor.secret_ciphertext,
    )
    if key_id is None or nonce is None or ciphertext is None:
        raise secret_unavailable()
    try:
        secret = deps.keyring.open_parts(
            factor.factor_id,
            factor.account_id,
            key_id,
            nonce,
            ciphertext,
            tenant_id=tenant_slot(tenant),
        )
    except SecretUnavailableError:
        raise secret_unavailable() from None
    return _enrollment(factor, secret)


def confirm(
    deps: Deps,
    tenant: str,
    account_id: str,
    factor_id: str,
    code: str,
    request_id: str | None,
    caller: str | None,
    audit: AuditContext | None = None,
) -> tuple[VerifyOutcome, Factor]:
    request_id = idempotency.request_id(request_id)
    request = VerifyItem(
        account_id=validation.account_id(account_id),
        code=code,
        factor_id=validation.factor_id(factor_id),
    )
    validation.code_digits(code)
    call = deps.requests.start(
        request_id, "ConfirmEnrollment", account_id, (factor_id, code), tenant=tenant
    )
    if call.replay is not None:
        first = idempotency.outcome_of(call.replay)
        return first, get_factor(deps, tenant, account_id, factor_id)
    with call:
        outcome = deps.checker.check(
            request,
            state=FactorState.PENDING,
            caller=caller,
            tenant=tenant,
            audit=audit,
            completion=call.with_verdict(),
        )
        if not call.completed:  # answered without a round's write (nothing to store)
            call.complete(idempotency.outcome_result(outcome))
    return outcome, get_factor(deps, tenant, account_id, factor_id)


def _enrollment(factor: StoredFactor, secret: bytes) -> Enrollment:
    """The Enroll response of a pending factor: its secret as URI, base32 and QR codes."""
    uri = provisioning.otpauth_uri(
        secret=secret,
        issuer=factor.issuer,
        account_name=factor.account_id,
        algorithm=factor.algorithm,
        digits=factor.digits,
        period=factor.period_seconds,
    )
    png, svg = provisioning.qr_codes(uri)
    return Enrollment(
        factor=to_factor(factor),
        otpauth_uri=uri,
        secret_base32=provisioning.base32_secret(secret),
        qr_png=png,
        qr_svg=svg,
    )


def _enroll_fields(params: EnrollParams) -> tuple[str, ...]:
    """The fields of an Enroll request as sent (None: the server's default)."""
    return (
        params.label,
        params.issuer or "",
        params.algorithm.value if params.algorithm else "",
        str(params.digits or ""),
        str(params.period_seconds or ""),
    )


def _first_free_label(taken: set[str]) -> str:
    if _DEFAULT_LABEL not in taken:
        return _DEFAULT_LABEL
    number = 2
    while f"{_DEFAULT_LABEL} {number}" in taken:
        number += 1
    return f"{_DEFAULT_LABEL} {number}"


def _label_taken() -> TotpdError:
    return TotpdError(
        ErrorReason.LABEL_TAKEN,
        "another factor of the account already has this label; choose another",
        field="label",
    )
