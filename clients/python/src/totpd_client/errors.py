"""The error model: every totpd error status becomes a :class:`TotpdError`."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import cast

import grpc
from google.rpc import error_details_pb2, status_pb2

DOMAIN = "totpd.v1"
_DETAILS_KEY = "grpc-status-details-bin"


class ErrorReason(enum.Enum):
    """Why totpd refused a call: the ``reason`` of its ``google.rpc.ErrorInfo``.

    Values are the proto's ``totpd.v1.ErrorReason`` names. ``UNSPECIFIED`` stands
    for a status without a totpd ErrorInfo (for example a transport failure) and
    for reasons newer than this client.
    """

    UNSPECIFIED = "ERROR_REASON_UNSPECIFIED"
    INVALID_ARGUMENT = "ERROR_REASON_INVALID_ARGUMENT"
    MALFORMED_CODE = "ERROR_REASON_MALFORMED_CODE"
    ACCOUNT_NOT_FOUND = "ERROR_REASON_ACCOUNT_NOT_FOUND"
    FACTOR_NOT_FOUND = "ERROR_REASON_FACTOR_NOT_FOUND"
    FACTOR_NOT_ACTIVE = "ERROR_REASON_FACTOR_NOT_ACTIVE"
    FACTOR_LIMIT_REACHED = "ERROR_REASON_FACTOR_LIMIT_REACHED"
    LABEL_TAKEN = "ERROR_REASON_LABEL_TAKEN"
    BATCH_TOO_LARGE = "ERROR_REASON_BATCH_TOO_LARGE"
    OVERLOADED = "ERROR_REASON_OVERLOADED"
    STORE_UNAVAILABLE = "ERROR_REASON_STORE_UNAVAILABLE"
    SECRET_UNAVAILABLE = "ERROR_REASON_SECRET_UNAVAILABLE"  # noqa: S105 (a reason name)
    ENROLLMENT_EXPIRED = "ERROR_REASON_ENROLLMENT_EXPIRED"
    CODE_REQUIRED = "ERROR_REASON_CODE_REQUIRED"
    INTERNAL = "ERROR_REASON_INTERNAL"
    DEADLINE_EXCEEDED = "ERROR_REASON_DEADLINE_EXCEEDED"
    RATE_LIMITED = "ERROR_REASON_RATE_LIMITED"
    REQUEST_ID_REUSED = "ERROR_REASON_REQUEST_ID_REUSED"
    UNAUTHENTICATED = "ERROR_REASON_UNAUTHENTICATED"
    PERMISSION_DENIED = "ERROR_REASON_PERMISSION_DENIED"
    TENANT_REQUIRED = "ERROR_REASON_TENANT_REQUIRED"

    @classmethod
    def parse(cls, name: str) -> ErrorReason:
        try:
            return cls(name)
        except ValueError:
            return cls.UNSPECIFIED


class TotpdError(Exception):
    """A totpd call failed.

    ``code`` is the gRPC status code, ``reason`` the machine-readable
    :class:`ErrorReason`, ``field`` the request field at fault ("" if none).
    ``retry_after`` is the wait in seconds the server asked for in a
    ``google.rpc.RetryInfo`` detail (``OVERLOADED``, ``RATE_LIMITED``), or
    None when the status carried none.
    A wrong or reused code is never an error: it is a ``VerifyOutcome``.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: ErrorReason,
        message: str,
        field: str = "",
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code.name} {reason.value}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.field = field
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after = retry_after

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> TotpdError:
        """Decodes the ``google.rpc.Status`` details of a failed call."""
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        message = (err.details() if hasattr(err, "details") else "") or ""
        trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
        reason, metadata = ErrorReason.UNSPECIFIED, {}
        retry_after: float | None = None
        pairs = cast("Iterable[tuple[str, bytes | str]]", trailers or ())
        for key, value in pairs:
            if key != _DETAILS_KEY:
                continue
            status = status_pb2.Status()
            try:
                status.ParseFromString(value if isinstance(value, bytes) else value.encode())
            except Exception:  # a malformed trailer leaves the reason unspecified
                break
            message = status.message or message
            found_info = False
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                retry = error_details_pb2.RetryInfo()
                if detail.Is(retry.DESCRIPTOR) and detail.Unpack(retry):
                    retry_after = retry.retry_delay.ToNanoseconds() / 1e9
                elif (
                    not found_info
                    and detail.Is(info.DESCRIPTOR)
                    and detail.Unpack(info)
                    and info.domain == DOMAIN
                ):
                    reason, metadata = ErrorReason.parse(info.reason), dict(info.metadata)
                    found_info = True
            break
        code = code or grpc.StatusCode.UNKNOWN
        return error_class(code, reason)(
            code,
            reason,
            message,
            metadata.get("field", ""),
            metadata,
            max(retry_after, 0.0) if retry_after is not None else None,
        )

    @classmethod
    def from_item_error(cls, code: int, reason_name: str, message: str, field: str) -> TotpdError:
        """Builds the error of one BatchVerify item."""
        status = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
        meta = {"field": field} if field else {}
        reason = ErrorReason.parse(reason_name)
        return error_class(status, reason)(status, reason, message, field, meta)


class UnauthenticatedError(TotpdError):
    """``UNAUTHENTICATED``: no credential, or one the server does not know.

    Fix the token or the client certificate; never retried. Any status with
    that code raises it (a proxy's too); totpd's own carries
    ``ErrorReason.UNAUTHENTICATED``.
    """


class PermissionDeniedError(TotpdError):
    """``PERMISSION_DENIED``: a known caller without the permission, or without
    the tenant it named. Never retried; totpd's own carries
    ``ErrorReason.PERMISSION_DENIED``. Nothing was read or written.
    """


class TenantRequiredError(TotpdError):
    """``INVALID_ARGUMENT`` ``TENANT_REQUIRED``: the caller holds several tenants
    and named none; pass ``tenant=`` to the client. Never retried.
    """


def error_class(code: grpc.StatusCode, reason: ErrorReason) -> type[TotpdError]:
    """The most specific error class of a status."""
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return UnauthenticatedError
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDeniedError
    if reason is ErrorReason.TENANT_REQUIRED:
        return TenantRequiredError
    return TotpdError
