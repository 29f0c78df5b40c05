"""The server's one interceptor: every concern of a call, in one wrapper per method.

Design notes: ARCHITECTURE.md, "Module notes", rpc/interceptors.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

import grpc

from totpd import calls, deadlines
from totpd.rpc import access_log
from totpd.rpc.admission import AdmissionPolicy, Ticket
from totpd.rpc.callers import SERVICE_PREFIX, Callers, RefusedCallError
from totpd.rpc.errors import (
    UNDECODABLE,
    UNDECODABLE_REQUEST,
    abort,
    aborted,
    final_status,
    tolerant,
)
from totpd.rpc.metrics import MethodInstruments, count_batch_items, end_span
from totpd.service.errors import ErrorReason, TotpdError
from totpd.telemetry import tracing

if TYPE_CHECKING:  # grpc's classes are generic only in the type stubs
    from opentelemetry.trace import Span

    Handler = grpc.RpcMethodHandler[Any, Any]
    Continuation = Callable[[grpc.HandlerCallDetails], Handler | None]
    Unary = Callable[[Any, grpc.ServicerContext], Any]
    Streaming = Callable[[Any, grpc.ServicerContext], Iterator[Any]]

# Only ever read (turned into a status), never raised across calls' threads.
_DEADLINE_PASSED: Final = TotpdError(
    ErrorReason.DEADLINE_EXCEEDED, "the call's deadline passed before it was served"
)
_BATCH_VERIFY: Final = SERVICE_PREFIX + "BatchVerify"
_perf_counter: Final = time.perf_counter


class CallInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps each method's handler once (not on every call) in one function that,
    outermost first: times the call and writes its access line; counts and
    times it (and traces it, when tracing is on); maps every exception to a
    status; resolves a TotpService call's caller (`callers`) and runs the
    handler as it; sets the call's deadline, `min(client's, longest)`; and
    admits a TotpService call by cost (`admission`). One frame per call
    instead of one per concern: a visible share of a unary Verify's CPU.
    """

    def __init__(self, callers: Callers, longest: float, admission: AdmissionPolicy) -> None:
        self._callers = callers
        self._longest = longest
        self._admission = admission
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
        deserializer = handler.request_deserializer
        serializer = handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method),
                request_deserializer=tolerant(deserializer),
                response_serializer=serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _unary_stream(handler.unary_stream, method),
                request_deserializer=tolerant(deserializer),
                response_serializer=serializer,
            )
        # Client streams (reflection): the access line only.
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _timed(handler.stream_unary, method),
                request_deserializer=deserializer,
                response_serializer=serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _timed_stream(handler.stream_stream, method),
                request_deserializer=deserializer,
                response_serializer=serializer,
            )
        return handler

    def _unary(self, behavior: Unary, method: str) -> Unary:
        """A unary call's whole path; TotpService calls also get a caller and admission."""
        totp = method.startswith(SERVICE_PREFIX)
        name = method.removeprefix(SERVICE_PREFIX)
        callers = self._callers if totp else None
        run = _within_deadline_admitted(
            behavior,
            self._longest,
            self._admission.cost_of(method) if totp else None,
            self._admission.admission.acquire,
        )
        instruments = MethodInstruments(method)
        counts_items = method == _BATCH_VERIFY

        def serve(request: Any, context: grpc.ServicerContext, span: Span | None) -> Any:
            started = _perf_counter()
            caller: str | None = None
            tenant = ""
            failed = True
            try:
                if request is UNDECODABLE_REQUEST:
                    abort(context, UNDECODABLE, method)
                if counts_items:
                    count_batch_items(request)
                try:
                    if callers is None:
                        response = run(request, context)
                    else:
                        scope = callers.scope(name, request, context)
                        caller, tenant = scope.caller, scope.tenant
                        entered = calls.enter(scope)
                        try:
                            response = run(request, context)
                        finally:
                            calls.leave(entered)
                except RefusedCallError as refused:
                    caller, tenant = refused.caller, refused.tenant
                    abort(context, refused.error, method)
                except Exception as error:
                    if aborted(context):
                        raise  # the handler aborted on its own: keep its status
                    abort(context, error, method)
                failed = False
                return response
            finally:
                elapsed = _perf_counter() - started
                code = final_status(context, failed)
                instruments.record(elapsed, code)
                if span is not None:
                    end_span(span, code)
                access_log.write(method, code, elapsed, caller, tenant)

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            if tracing.enabled():
                with instruments.span(context) as span:
                    return serve(request, context, span)
            return serve(request, context, None)

        return handle


def _within_deadline_admitted(
    behavior: Unary,
    longest: float,
    cost_of: Callable[[Any], int | None] | None,
    acquire: Callable[[int], Ticket],
) -> Unary:
    """`behavior` within the call's deadline (the client's, at most `longest`
    seconds), admitted by its cost (`cost_of` None, or a cost of None: unadmitted)."""

    def run(request: Any, context: grpc.ServicerContext) -> Any:
        left: float | None = context.time_remaining()  # None or huge: no client deadline
        seconds = longest if left is None else min(left, longest)
        if seconds <= 0:
            raise _DEADLINE_PASSED
        deadline = deadlines.begin(seconds)
        try:
            cost = None if cost_of is None else cost_of(request)
            if cost is None:
                return behavior(request, context)
            ticket = acquire(cost)
            try:
                return behavior(request, context)
            finally:
                ticket.release()
        finally:
            deadlines.end(deadline)

    return run


def _unary_stream(behavior: Any, method: str) -> Any:
    """A server stream (health Watch): the access line and error mapping."""
    if _non_blocking(behavior):
        return _timed_callback(_map_callback_errors(behavior, method), method)
    return _timed_stream(_map_stream_errors(behavior, method), method)


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


def _map_stream_errors(behavior: Streaming, method: str) -> Streaming:
    def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        if request is UNDECODABLE_REQUEST:
            abort(context, UNDECODABLE, method)
        try:
            yield from behavior(request, context)
        except Exception as error:
            if aborted(context):
                raise
            abort(context, error, method)

    return handle


def _map_callback_errors(behavior: Any, method: str) -> Any:
    def handle(request: Any, context: grpc.ServicerContext, send_response_callback: Any) -> Any:
        if request is UNDECODABLE_REQUEST:
            abort(context, UNDECODABLE, method)
        try:
            return behavior(request, context, send_response_callback=send_response_callback)
        except Exception as error:
            if aborted(context):
                raise
            abort(context, error, method)

    return _keep_non_blocking(handle, behavior)


def _log_access(method: str, context: grpc.ServicerContext, started: float, failed: bool) -> None:
    elapsed = _perf_counter() - started
    access_log.write(method, final_status(context, failed), elapsed, None, "")


def _timed(behavior: Unary, method: str) -> Unary:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        started = _perf_counter()
        failed = True
        try:
            response = behavior(request, context)
            failed = False
            return response
        finally:
            _log_access(method, context, started, failed)

    return handle


def _timed_callback(behavior: Any, method: str) -> Any:
    """The line is written when the stream ends (grpc runs the callback then)."""

    def handle(request: Any, context: grpc.ServicerContext, send_response_callback: Any) -> Any:
        started = _perf_counter()
        context.add_callback(lambda: _log_access(method, context, started, False))
        return behavior(request, context, send_response_callback=send_response_callback)

    return _keep_non_blocking(handle, behavior)


def _timed_stream(behavior: Streaming, method: str) -> Streaming:
    def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started = _perf_counter()
        failed = True
        try:
            yield from behavior(request, context)
            failed = False
        finally:
            _log_access(method, context, started, failed)

    return handle
