"""The one table from domain error reasons to gRPC status codes, and the rich
status (google.rpc.Status + one google.rpc.ErrorInfo) every error carries.

Everything that turns an error into something a client sees goes through this
module, so a reason can never map to two different codes.
"""

from __future__ import annotations

from typing import Final, cast

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from totpd.service.errors import ErrorReason, TotpdError
from totpd.v1 import errors_pb2

DOMAIN: Final = "totpd.v1"

STATUS_BY_REASON: Final[dict[ErrorReason, grpc.StatusCode]] = {
    ErrorReason.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorReason.MALFORMED_CODE: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorReason.BATCH_TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorReason.CODE_REQUIRED: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorReason.ACCOUNT_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorReason.FACTOR_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorReason.FACTOR_NOT_ACTIVE: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorReason.FACTOR_LIMIT_REACHED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorReason.ENROLLMENT_EXPIRED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorReason.LABEL_TAKEN: grpc.StatusCode.ALREADY_EXISTS,
    ErrorReason.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorReason.STORE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorReason.SECRET_UNAVAILABLE: grpc.StatusCode.INTERNAL,
    ErrorReason.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorReason.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorReason.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorReason.REQUEST_ID_REUSED: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorReason.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorReason.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorReason.TENANT_REQUIRED: grpc.StatusCode.INVALID_ARGUMENT,
}


def status_code(reason: ErrorReason) -> grpc.StatusCode:
    return STATUS_BY_REASON[reason]


def numeric_code(code: grpc.StatusCode) -> int:
    """The google.rpc.Code number of a grpc.StatusCode (e.g. 3 for INVALID_ARGUMENT)."""
    value: tuple[int, str] = code.value
    return value[0]


def reason_name(reason: ErrorReason) -> str:
    """The ErrorInfo reason string: the proto enum value name."""
    return f"ERROR_REASON_{reason.value}"


def proto_reason(reason: ErrorReason) -> errors_pb2.ErrorReason:
    return cast(errors_pb2.ErrorReason, errors_pb2.ErrorReason.Value(reason_name(reason)))


def to_status_proto(error: TotpdError) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason=reason_name(error.reason), domain=DOMAIN)
    if error.field:
        info.metadata["field"] = error.field
    details = [_packed(info)]
    if error.retry_after_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(max(0, round(error.retry_after_seconds * 1e9)))
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(
        code=numeric_code(status_code(error.reason)),
        message=error.message,
        details=details,
    )


def _packed(message: Message) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def to_grpc_status(error: TotpdError) -> grpc.Status:
    status: grpc.Status = rpc_status.to_status(to_status_proto(error))
    return status


def to_item_error(error: TotpdError) -> errors_pb2.ItemError:
    """The per-item error of a batch: the status a unary call would have returned."""
    return errors_pb2.ItemError(
        code=numeric_code(status_code(error.reason)),
        reason=proto_reason(error.reason),
        message=error.message,
        field=error.field or "",
    )
