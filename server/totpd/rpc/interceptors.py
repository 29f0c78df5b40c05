"""Server interceptors: error mapping and the access log.

Design notes: ARCHITECTURE.md, "Module notes", rpc/interceptors.py.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, NoReturn

import grpc
from google.protobuf.message import DecodeError

from totpd import deadlines
from totpd.rpc.status import to_grpc_status
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.faults import as_domain_error

_log = logging.getLogger("totpd.rpc")
_access_log = logging.getLogger("totpd.access")

if TYPE_CHECKING:  # grpc's classes are generic only in the type stubs
    Handler = grpc.RpcMethodHandler[Any, Any]
    Continuation = Callable[[grpc.HandlerCallDetails], Handler | None]
    Unary = Callable[[Any, grpc.ServicerContext], Any]
    Streaming = Callable[[Any, grpc.ServicerContext], Iterator[Any]]

_UNDECODABLE: Final = TotpdError(
    ErrorReason.INVALID_ARGUMENT,
    "the request is not a valid message of this method (for example, invalid UTF-8 in a string)",
)
# These instances are only ever read (turned into a status), never raised.
_INTERNAL: Final = TotpdError(ErrorReason.INTERNAL, "internal server error")
_DEADLINE_PASSED: Final = TotpdError(
    ErrorReason.DEADLINE_EXCEEDED, "the call's deadline passed before it was served"
)


class _AccessNote:
    """What an inner interceptor learnt about the call, for its access line."""

    __slots__ = ("caller", "tenant")

    def __init__(self) -> None:
        self.caller: str | None = None
        self.tenant = ""


_NOTE: ContextVar[_AccessNote | None] = ContextVar("totpd_access_note", default=None)


def note_call(caller: str, tenant: str) -> None:
    """Put the call's caller and tenant on its access line (rpc/callers.py resolves them)."""
    note = _NOTE.get()
    if note is not None:
        note.caller, note.tenant = caller, tenant


class _Undecodable:
    """Stands in for a request the protobuf runtime refused to parse.

    Without it grpc answers INTERNAL "Exception deserializing request!" with
    no ErrorInfo; with it the caller gets INVALID_ARGUMENT like any bad input.
    """


_UNDECODABLE_REQUEST: Final = _Undecodable()


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return _UNDECODABLE_REQUEST

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


class CachingInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps each method's handler once, not on every call (a visible share of a unary Verify)."""

    def __init__(self) -> None:
        self._wrapped: dict[str, Handler] = {}

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = continuation(handler_call_details)
            if handler is None:
                return None  # unknown method: not cached, or any name would grow the map
            # A benign race: two threads may wrap the same handler; both are equal.
            wrapped = self._wrapped[method] = self._wrap(handler, method)
        return wrapped

    def _wrap(self, handler: Handler, method: str) -> Handler:
        raise NotImplementedError


class ErrorInterceptor(CachingInterceptor):
    """Maps exceptions of unary-request handlers to rich statuses."""

    def _wrap(self, handler: Handler, method: str) -> Handler:
        if handler.request_streaming:
            return handler
        if handler.response_streaming:
            assert handler.unary_stream is not None
            behavior = handler.unary_stream
            mapped = (
                _map_callback_errors(behavior, method)
                if _non_blocking(behavior)
                else _map_stream_errors(behavior, method)
            )
            return grpc.unary_stream_rpc_method_handler(
                mapped,
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        assert handler.unary_unary is not None
        return grpc.unary_unary_rpc_method_handler(
            _map_errors(handler.unary_unary, method),
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )


def _abort(context: grpc.ServicerContext, error: Exception, method: str) -> NoReturn:
    context.abort_with_status(to_grpc_status(domain_error(error, method)))


def _map_errors(behavior: Unary, method: str) -> Unary:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        if request is _UNDECODABLE_REQUEST:
            _abort(context, _UNDECODABLE, method)
        try:
            return behavior(request, context)
        except Exception as error:
            if _aborted(context):
                raise  # the handler aborted on its own: keep its status
            _abort(context, error, method)

    return handle


def _map_stream_errors(behavior: Streaming, method: str) -> Streaming:
    def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        if request is _UNDECODABLE_REQUEST:
            _abort(context, _UNDECODABLE, method)
        try:
            yield from behavior(request, context)
        except Exception as error:
            if _aborted(context):
                raise
            _abort(context, error, method)

    return handle


def _non_blocking(behavior: Any) -> bool:
    """A streaming handler that answers through a callback and returns at once.

    grpc's health Watch is one: grpc then frees the worker thread, where a
    generator would hold it for the stream's whole life (with the default 4
    workers, four watching clients would stall the server). Wrappers keep it so.
    """
    return bool(getattr(behavior, "experimental_non_blocking", False))


def _keep_non_blocking(wrapper: Any, behavior: Any) -> Any:
    wrapper.experimental_non_blocking = True
    wrapper.experimental_thread_pool = getattr(behavior, "experimental_thread_pool", None)
    return wrapper


def _map_callback_errors(behavior: Any, method: str) -> Any:
    def handle(request: Any, context: grpc.ServicerContext, send_response_callback: Any) -> Any:
        if request is _UNDECODABLE_REQUEST:
            _abort(context, _UNDECODABLE, method)
        try:
            return behavior(request, context, send_response_callback=send_response_callback)
        except Exception as error:
            if _aborted(context):
                raise
            _abort(context, error, method)

    return _keep_non_blocking(handle, behavior)


def _aborted(context: grpc.ServicerContext) -> bool:
    # grpc's abort() raises a bare Exception after setting a non-OK code.
    code = _status_of(context)
    return code is not None and code is not grpc.StatusCode.OK


def _status_of(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    code_of: Callable[[], grpc.StatusCode | None] | None = getattr(context, "code", None)
    return code_of() if code_of is not None else None


class DeadlineInterceptor(CachingInterceptor):
    """Runs each unary handler within the call's deadline, capped at `longest` seconds."""

    def __init__(self, longest: float) -> None:
        super().__init__()
        self._longest = longest

    def _wrap(self, handler: Handler, method: str) -> Handler:
        if handler.unary_unary is None:  # streams (health Watch) do not use the store
            return handler
        return grpc.unary_unary_rpc_method_handler(
            _within_deadline(handler.unary_unary, self._longest),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _within_deadline(behavior: Unary, longest: float) -> Unary:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        left: float | None = context.time_remaining()  # None or huge: no client deadline
        seconds = longest if left is None else min(left, longest)
        if seconds <= 0:
            raise _DEADLINE_PASSED
        with deadlines.within(seconds):
            return behavior(request, context)

    return handle


class AccessLogInterceptor(CachingInterceptor):
    """One log line per RPC: method, status code, duration. Never a payload."""

    def _wrap(self, handler: Handler, method: str) -> Handler:
        options = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _timed(handler.unary_unary, method), **options
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _timed(handler.stream_unary, method), **options
            )
        if handler.unary_stream is not None:
            behavior = handler.unary_stream
            timed = (
                _timed_callback(behavior, method)
                if _non_blocking(behavior)
                else _timed_stream(behavior, method)
            )
            return grpc.unary_stream_rpc_method_handler(timed, **options)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _timed_stream(handler.stream_stream, method), **options
            )
        return handler


def _log_access(
    method: str,
    context: grpc.ServicerContext,
    started: float,
    failed: bool,
    note: _AccessNote | None = None,
) -> None:
    code = _status_of(context)
    if code is None:
        code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
    fields: dict[str, object] = {
        "method": method,
        "code": code.name,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    if note is not None and note.caller is not None:
        fields["caller"] = note.caller
        fields["tenant"] = note.tenant
    _access_log.info("rpc", extra=fields)


def _timed(behavior: Unary, method: str) -> Unary:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        failed = True
        note = _AccessNote()
        token = _NOTE.set(note)
        try:
            response = behavior(request, context)
            failed = False
            return response
        finally:
            _NOTE.reset(token)
            _log_access(method, context, started, failed, note)

    return handle


def _timed_callback(behavior: Any, method: str) -> Any:
    """The line is written when the stream ends (grpc runs the callback then)."""

    def handle(request: Any, context: grpc.ServicerContext, send_response_callback: Any) -> Any:
        started = time.perf_counter()
        context.add_callback(lambda: _log_access(method, context, started, False))
        return behavior(request, context, send_response_callback=send_response_callback)

    return _keep_non_blocking(handle, behavior)


def _timed_stream(behavior: Streaming, method: str) -> Streaming:
    def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started = time.perf_counter()
        failed = True
        try:
            yield from behavior(request, context)
            failed = False
        finally:
            _log_access(method, context, started, failed)

    return handle
