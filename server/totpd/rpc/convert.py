"""Proto messages <-> domain values.

Proto3 has no "absent" for scalars, so the zero value of an optional request
field means "server default" (None in the domain). Enum numbers the proto does
not define survive parsing (proto3 enums are open) and are refused here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, cast

from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.recovery_codes import RecoveryStatus
from totpd.service.types import (
    Algorithm,
    EnrollParams,
    Factor,
    FactorState,
    Unlocked,
    VerifyItem,
    VerifyOutcome,
    VerifyResult,
)
from totpd.v1 import factor_pb2, lifecycle_pb2, totp_service_pb2

_ALGORITHM_FROM_PROTO: Final[dict[factor_pb2.Algorithm, Algorithm]] = {
    factor_pb2.ALGORITHM_SHA1: Algorithm.SHA1,
    factor_pb2.ALGORITHM_SHA256: Algorithm.SHA256,
    factor_pb2.ALGORITHM_SHA512: Algorithm.SHA512,
}
_ALGORITHM_TO_PROTO: Final[dict[Algorithm, factor_pb2.Algorithm]] = {
    domain: number for number, domain in _ALGORITHM_FROM_PROTO.items()
}
_STATE_TO_PROTO: Final[dict[FactorState, factor_pb2.FactorState]] = {
    FactorState.PENDING: factor_pb2.FACTOR_STATE_PENDING,
    FactorState.ACTIVE: factor_pb2.FACTOR_STATE_ACTIVE,
    FactorState.DISABLED: factor_pb2.FACTOR_STATE_DISABLED,
    FactorState.EXPIRED: factor_pb2.FACTOR_STATE_EXPIRED,
}
_RESULT_TO_PROTO: Final[dict[VerifyResult, factor_pb2.VerifyResult]] = {
    VerifyResult.VALID: factor_pb2.VERIFY_RESULT_VALID,
    VerifyResult.INVALID: factor_pb2.VERIFY_RESULT_INVALID,
    VerifyResult.REPLAYED: factor_pb2.VERIFY_RESULT_REPLAYED,
    VerifyResult.LOCKED: factor_pb2.VERIFY_RESULT_LOCKED,
}


def optional_str(value: str) -> str | None:
    return value or None


def optional_int(value: int) -> int | None:
    return value or None


def algorithm_from_proto(number: int, field: str = "algorithm") -> Algorithm | None:
    if number == factor_pb2.ALGORITHM_UNSPECIFIED:
        return None
    algorithm = _ALGORITHM_FROM_PROTO.get(cast(factor_pb2.Algorithm, number))
    if algorithm is None:
        raise TotpdError(
            ErrorReason.INVALID_ARGUMENT, "the algorithm is not a known value", field=field
        )
    return algorithm


def request_id(
    request: totp_service_pb2.EnrollRequest
    | totp_service_pb2.ConfirmEnrollmentRequest
    | totp_service_pb2.DisableRequest,
) -> str | None:
    """The optional AIP-155 request_id; the service validates it."""
    return request.request_id or None


def enroll_params(request: totp_service_pb2.EnrollRequest) -> EnrollParams:
    return EnrollParams(
        account_id=request.account_id,
        label=request.label,
        issuer=optional_str(request.issuer),
        algorithm=algorithm_from_proto(request.algorithm),
        digits=optional_int(request.digits),
        period_seconds=optional_int(request.period_seconds),
    )


def verify_item(
    request: totp_service_pb2.VerifyRequest | totp_service_pb2.BatchVerifyItem,
) -> VerifyItem:
    """A VerifyRequest or a BatchVerifyItem: both carry the same three fields."""
    return VerifyItem(request.account_id, request.code, request.factor_id or None)


def verify_items(items: Iterable[totp_service_pb2.BatchVerifyItem]) -> list[VerifyItem]:
    """The items of a BatchVerify, in request order (one pass, no per-item call)."""
    return [VerifyItem(item.account_id, item.code, item.factor_id or None) for item in items]


def factor_to_proto(factor: Factor) -> factor_pb2.Factor:
    return factor_pb2.Factor(
        factor_id=factor.factor_id,
        account_id=factor.account_id,
        label=factor.label,
        issuer=factor.issuer,
        algorithm=_ALGORITHM_TO_PROTO[factor.algorithm],
        digits=factor.digits,
        period_seconds=factor.period_seconds,
        state=_STATE_TO_PROTO[factor.state],
        created_at_unix=factor.created_at,
        confirmed_at_unix=factor.confirmed_at or 0,
        last_used_at_unix=factor.last_used_at or 0,
        expires_at_unix=factor.expires_at or 0,
        drift_steps=factor.drift_steps,
    )


def outcome_to_proto(outcome: VerifyOutcome) -> factor_pb2.VerifyOutcome:
    message = factor_pb2.VerifyOutcome()
    fill_outcome(message, outcome)
    return message


def fill_outcome(message: factor_pb2.VerifyOutcome, outcome: VerifyOutcome) -> None:
    """Set the fields of an empty `message` in place: much cheaper than building
    one with keyword arguments and copying it into a response, per batch item."""
    message.result = _RESULT_TO_PROTO[outcome.result]
    if outcome.factor_id:
        message.factor_id = outcome.factor_id
    if outcome.step_offset:
        message.step_offset = outcome.step_offset
    if outcome.attempts_left > 0:
        message.attempts_left = outcome.attempts_left
    if outcome.retry_after_seconds > 0:
        message.retry_after_seconds = outcome.retry_after_seconds
    if outcome.unlock_required:
        message.unlock_required = True


def unlocked_to_proto(unlocked: Unlocked) -> lifecycle_pb2.UnlockResponse:
    return lifecycle_pb2.UnlockResponse(
        lock_lifted=unlocked.lock_lifted,
        consecutive_failures_cleared=unlocked.consecutive_failures_cleared,
        factors_cleared=unlocked.factors_cleared,
        budget_refilled=unlocked.budget_refilled,
    )


# -- recovery codes --


def recovery_status_to_proto(status: RecoveryStatus) -> lifecycle_pb2.RecoveryCodesStatus:
    return lifecycle_pb2.RecoveryCodesStatus(
        remaining=status.remaining,
        issued=status.issued,
        generated_at_unix=status.generated_at,
    )
