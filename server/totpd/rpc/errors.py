"""Exceptions -> rich statuses: the one place where a handler's exception becomes a status.

Design notes: ARCHITECTURE.md, "Module notes", rpc/interceptors.py.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any, Final, NoReturn

import grpc
from google.protobuf.message import DecodeError

from totpd.rpc.status import to_grpc_status
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.faults import as_domain_error

_log = logging.getLogger("totpd.rpc")

UNDECODABLE: Final = TotpdError(
    ErrorReason.INVALID_ARGUMENT,
    "the request is not a valid message of this method (for example, invalid UTF-8 in a string)",
)
# These instances are only ever read (turned into a status), never raised.
_INTERNAL: Final = TotpdError(ErrorReason.INTERNAL, "internal server error")


class _Undecodable:
    """Stands in for a request the protobuf runtime refused to parse.

    Without it grpc answers INTERNAL "Exception deserializing request!" with
    no ErrorInfo; with it the caller gets INVALID_ARGUMENT like any bad input.
    """


UNDECODABLE_REQUEST: Final = _Undecodable()


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserializer`, answering `UNDECODABLE_REQUEST` where it would raise DecodeError."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return UNDECODABLE_REQUEST

    return deserialize


def domain_error(error: Exception, method: str) -> TotpdError:
    """The TotpdError a client sees for any exception raised by a handler."""
    known = as_domain_error(error, method)
    if known is not None:
        return known
    _log.error(
        "unhandled error",
        extra={
            "method": method,
            "error_type": f"{type(error).__module__}.{type(error).__qualname__}",
            # Frames only (file, line, function, source): never str(error).
            "stack": "".join(traceback.format_tb(error.__traceback__)),
        },
    )
    return _INTERNAL


def abort(context: grpc.ServicerContext, error: Exception, method: str) -> NoReturn:
    """End the call with the status of `error` (grpc raises to unwind the handler)."""
    context.abort_with_status(to_grpc_status(domain_error(error, method)))


def aborted(context: grpc.ServicerContext) -> bool:
    """Whether the handler already ended the call with a status of its own.

    grpc's abort() raises a bare Exception after setting a non-OK code.
    """
    code = status_of(context)
    return code is not None and code is not grpc.StatusCode.OK


def status_of(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The code set by abort() or set_code(), None if none was (grpc's stubs lack code())."""
    code_of: Callable[[], grpc.StatusCode | None] | None = getattr(context, "code", None)
    return code_of() if code_of is not None else None


def final_status(context: grpc.ServicerContext, failed: bool) -> grpc.StatusCode:
    """The status the call ends with: the one set, else UNKNOWN if it raised, else OK."""
    code = status_of(context)
    if code is None:
        return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
    return code
