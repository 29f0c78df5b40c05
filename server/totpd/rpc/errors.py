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


def error_status(error: Exception, method: str) -> grpc.Status:
    """The rich status a client sees for `error`."""
    return to_grpc_status(domain_error(error, method))


def abort(context: Any, status: grpc.Status) -> NoReturn:
    """End the call with `status` from a handler's thread (grpc raises to unwind it).

    grpc.aio's context of a sync handler has `abort` but not `abort_with_status`."""
    context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("abort returned")  # pragma: no cover (grpc raises)


async def abort_on_loop(context: Any, status: grpc.Status) -> NoReturn:
    """End the call with `status` from a coroutine (grpc raises to unwind it)."""
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("abort returned")  # pragma: no cover (grpc raises)
