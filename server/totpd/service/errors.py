"""The one domain exception and its reasons.

The gRPC layer maps each reason to a status code from a single table
(`totpd.rpc.status`); messages are safe to show: they never hold secrets,
codes or otpauth URIs.
"""

from __future__ import annotations

import enum


class ErrorReason(enum.Enum):
    """Mirrors `totpd.v1.ErrorReason` without its prefix."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    MALFORMED_CODE = "MALFORMED_CODE"
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    FACTOR_NOT_FOUND = "FACTOR_NOT_FOUND"
    FACTOR_NOT_ACTIVE = "FACTOR_NOT_ACTIVE"
    FACTOR_LIMIT_REACHED = "FACTOR_LIMIT_REACHED"
    LABEL_TAKEN = "LABEL_TAKEN"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    OVERLOADED = "OVERLOADED"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    SECRET_UNAVAILABLE = "SECRET_UNAVAILABLE"  # noqa: S105 (a reason name, not a secret)
    ENROLLMENT_EXPIRED = "ENROLLMENT_EXPIRED"
    CODE_REQUIRED = "CODE_REQUIRED"
    INTERNAL = "INTERNAL"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    RATE_LIMITED = "RATE_LIMITED"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    TENANT_REQUIRED = "TENANT_REQUIRED"


class TotpdError(Exception):
    """A request the service refuses, with a machine-readable reason.

    `field` names the request field at fault, when there is one;
    `retry_after_seconds`, when set, is sent as a google.rpc.RetryInfo delay.
    """

    def __init__(
        self,
        reason: ErrorReason,
        message: str,
        *,
        field: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field
        self.retry_after_seconds = retry_after_seconds

    def __repr__(self) -> str:
        return f"TotpdError({self.reason.name}, {self.message!r}, field={self.field!r})"


def secret_unavailable() -> TotpdError:
    """A stored secret that cannot be opened: the check fails closed."""
    return TotpdError(ErrorReason.SECRET_UNAVAILABLE, "a stored secret cannot be opened")


def factor_not_found() -> TotpdError:
    """Another account's factor is reported exactly like a missing one."""
    return TotpdError(
        ErrorReason.FACTOR_NOT_FOUND,
        "the account has no factor with this factor_id",
        field="factor_id",
    )
