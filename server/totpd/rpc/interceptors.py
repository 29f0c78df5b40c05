"""The server's one interceptor: every concern of a call, in one wrapper per method.

Design notes: ARCHITECTURE.md, "Module notes", rpc/interceptors.py.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import Token
from typing import TYPE_CHECKING, Any, Final

import grpc

from totpd import calls, deadlines
from totpd.calls import CallScope
from totpd.rpc import access_log
from totpd.rpc.admission import AdmissionPolicy, Ticket
from totpd.rpc.callers import SERVICE_PREFIX, Callers, RefusedCallError
from totpd.rpc.errors import (
    UNDECODABLE,
    UNDECODABLE_REQUEST,
    abort,
    abort_on_loop,
    error_status,
    tolerant,
)
from totpd.rpc.metrics import MethodInstruments, count_batch_items, end_span
from totpd.service.errors import ErrorReason, TotpdError
from totpd.telemetry import tracing

if TYPE_CHECKING:  # grpc's classes are generic only in the type stubs
    from concurrent.futures import Executor

    from opentelemetry.trace import Span

    Handler = grpc.RpcMethodHandler[Any, Any]
    Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]
    Unary = Callable[[Any, Any], Any]
    UnaryOnLoop = Callable[[Any, Any], Awaitable[Any]]
    Streaming = Callable[[Any, Any], Iterator[Any]]
    StreamingOnLoop = Callable[[Any, Any], AsyncIterator[Any]]

# Only ever read (turned into a status), never raised across calls' threads.
_DEADLINE_PASSED: Final = TotpdError(
    ErrorReason.DEADLINE_EXCEEDED, "the call's deadline passed before it was served"
)
_BATCH_VERIFY: Final = SERVICE_PREFIX + "BatchVerify"
_OK: Final = grpc.StatusCode.OK
_UNKNOWN: Final = grpc.StatusCode.UNKNOWN
_CANCELLED: Final = grpc.StatusCode.CANCELLED
_DEADLINE_EXCEEDED: Final = grpc.StatusCode.DEADLINE_EXCEEDED
# grpc cancels a call at its deadline; time_remaining then reads about zero.
_EXPIRED_WITHIN: Final = 0.005
_perf_counter: Final = time.perf_counter
# What grpc raises to unwind a handler that aborted: its status is already set.
_Aborted: Final = grpc.aio.AbortError


class CallInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps each method's handler once (not on every call) in one function that,
    outermost first: times the call and writes its access line; counts and
    times it (and traces it, when tracing is on); maps every exception to a
    status; resolves a TotpService call's caller (`callers`) and runs the
    handler as it; sets the call's deadline, `min(client's, longest)`; and
    admits a TotpService call by cost (`admission`). One frame per call
    instead of one per concern: a visible share of a unary Verify's CPU.

    A coroutine handler (Verify) is wrapped in a coroutine that runs on the
    event loop; every other handler in a function grpc runs on a worker thread.
    `workers` are those threads: a refused coroutine call's denial (an audit
    write) runs there, never on the loop.
    """

    def __init__(
        self,
        callers: Callers,
        longest: float,
        admission: AdmissionPolicy,
        workers: Executor | None = None,
    ) -> None:
        self._callers = callers
        self._longest = longest
        self._admission = admission
        self._workers = workers
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(  # type: ignore[override]
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None  # unknown method: not cached, or any name would grow the map
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
            behavior = handler.unary_stream
            return grpc.unary_stream_rpc_method_handler(
                _timed_stream_on_loop(behavior, method)
                if inspect.isasyncgenfunction(behavior)
                else _timed_stream(_map_stream_errors(behavior, method), method),
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
        path = _UnaryPath(self, method)
        instruments = path.instruments
        if inspect.iscoroutinefunction(behavior):
            serve_on_loop = path.serve_on_loop

            async def handle_on_loop(request: Any, context: Any) -> Any:
                if tracing.enabled():
                    with instruments.span(context) as span:
                        return await serve_on_loop(behavior, request, context, span)
                return await serve_on_loop(behavior, request, context, None)

            return handle_on_loop
        serve = path.serve

        def handle(request: Any, context: Any) -> Any:
            if tracing.enabled():
                with instruments.span(context) as span:
                    return serve(behavior, request, context, span)
            return serve(behavior, request, context, None)

        return handle


class _Outcome:
    """What the access line and the metrics record of one call."""

    __slots__ = ("caller", "code", "tenant")

    def __init__(self) -> None:
        self.caller: str | None = None
        self.tenant = ""
        self.code = _UNKNOWN


class _UnaryPath:
    """One unary method's steps around its handler, on a worker thread or the loop."""

    __slots__ = (
        "_acquire",
        "_acquire_shared",
        "_callers",
        "_cost_of",
        "_counts_items",
        "_longest",
        "_name",
        "_workers",
        "instruments",
        "method",
    )

    def __init__(self, interceptor: CallInterceptor, method: str) -> None:
        totp = method.startswith(SERVICE_PREFIX)
        self.method = method
        self._name = method.removeprefix(SERVICE_PREFIX)
        self._callers = interceptor._callers if totp else None
        self._longest = interceptor._longest
        admission = interceptor._admission
        self._cost_of = admission.cost_of(method) if totp else None
        self._acquire = admission.admission.acquire
        self._acquire_shared = functools.partial(self._acquire, shares_connection=True)
        self._workers = interceptor._workers
        self._counts_items = method == _BATCH_VERIFY
        self.instruments = MethodInstruments(method)

    def serve(self, behavior: Unary, request: Any, context: Any, span: Span | None) -> Any:
        started = _perf_counter()
        outcome = _Outcome()
        try:
            entered = self._enter(request, context, outcome, on_loop=False)
            try:
                response = behavior(request, context)
            finally:
                _leave(entered)
        except _Aborted:
            self._record(started, outcome, span)
            raise
        except Exception as error:
            status = self._status(error, outcome)
            # Recorded before the abort: grpc.aio sends the status at once.
            self._record(started, outcome, span)
            abort(context, status)
        outcome.code = _OK
        self._record(started, outcome, span)
        return response

    async def serve_on_loop(
        self, behavior: UnaryOnLoop, request: Any, context: Any, span: Span | None
    ) -> Any:
        started = _perf_counter()
        outcome = _Outcome()
        try:
            try:
                entered = self._enter(request, context, outcome, on_loop=True)
            except RefusedCallError as refused:
                if refused.unrecorded is None or self._callers is None:
                    raise
                recorded = self._callers.recorded
                raise await asyncio.get_running_loop().run_in_executor(
                    self._workers, recorded, refused
                ) from None
            try:
                response = await behavior(request, context)
            finally:
                _leave(entered)
        except asyncio.CancelledError:  # the client went away, or its deadline passed
            left = context.time_remaining()
            expired = left is not None and left <= _EXPIRED_WITHIN
            outcome.code = _DEADLINE_EXCEEDED if expired else _CANCELLED
            self._record(started, outcome, span)
            raise
        except _Aborted:
            code = context.code()  # set by the handler that aborted
            outcome.code = _UNKNOWN if code is None else code
            self._record(started, outcome, span)
            raise
        except Exception as error:
            status = self._status(error, outcome)
            self._record(started, outcome, span)
            await abort_on_loop(context, status)
        outcome.code = _OK
        self._record(started, outcome, span)
        return response

    def _enter(
        self, request: Any, context: Any, outcome: _Outcome, *, on_loop: bool
    ) -> tuple[Token[CallScope] | None, Token[float | None], Ticket | None]:
        """The call's caller, deadline and admission, in that order: a refused
        caller costs nothing else. Undone by `_leave`; raises with nothing held.

        `on_loop`: a coroutine's call, which leaves a refusal's audit write to
        the caller (`serve_on_loop`) and shares its round's connection."""
        if request is UNDECODABLE_REQUEST:
            raise UNDECODABLE
        if self._counts_items:
            count_batch_items(request)
        scope = None
        if self._callers is not None:
            resolved = self._callers.scope(self._name, request, context, defer_denial=on_loop)
            outcome.caller, outcome.tenant = resolved.caller, resolved.tenant
            scope = calls.enter(resolved)
        try:
            left: float | None = context.time_remaining()  # None or huge: no client deadline
            seconds = self._longest if left is None else min(left, self._longest)
            if seconds <= 0:
                raise _DEADLINE_PASSED
            deadline = deadlines.begin(seconds)
            try:
                cost = None if self._cost_of is None else self._cost_of(request)
                acquire = self._acquire_shared if on_loop else self._acquire
                ticket = None if cost is None else acquire(cost)
            except BaseException:
                deadlines.end(deadline)
                raise
        except BaseException:
            if scope is not None:
                calls.leave(scope)
            raise
        return scope, deadline, ticket

    def _status(self, error: Exception, outcome: _Outcome) -> grpc.Status:
        if isinstance(error, RefusedCallError):
            outcome.caller, outcome.tenant = error.caller, error.tenant
            error = error.error
        status = error_status(error, self.method)
        outcome.code = status.code
        return status

    def _record(self, started: float, outcome: _Outcome, span: Span | None) -> None:
        elapsed = _perf_counter() - started
        self.instruments.record(elapsed, outcome.code)
        if span is not None:
            end_span(span, outcome.code)
        access_log.write(self.method, outcome.code, elapsed, outcome.caller, outcome.tenant)


def _leave(entered: tuple[Token[CallScope] | None, Token[float | None], Ticket | None]) -> None:
    scope, deadline, ticket = entered
    try:
        if ticket is not None:
            ticket.release()
    finally:
        deadlines.end(deadline)
        if scope is not None:
            calls.leave(scope)


def _map_stream_errors(behavior: Streaming, method: str) -> Streaming:
    def handle(request: Any, context: Any) -> Iterator[Any]:
        if request is UNDECODABLE_REQUEST:
            abort(context, error_status(UNDECODABLE, method))
        try:
            yield from behavior(request, context)
        except _Aborted:
            raise
        except Exception as error:
            abort(context, error_status(error, method))

    return handle


def _log_access(method: str, started: float, code: grpc.StatusCode) -> None:
    access_log.write(method, code, _perf_counter() - started, None, "")


def _timed(behavior: Unary, method: str) -> Unary:
    def handle(request: Any, context: Any) -> Any:
        started = _perf_counter()
        code = _UNKNOWN
        try:
            response = behavior(request, context)
            code = _OK
            return response
        finally:
            _log_access(method, started, code)

    return handle


def _timed_stream(behavior: Streaming, method: str) -> Streaming:
    def handle(request: Any, context: Any) -> Iterator[Any]:
        started = _perf_counter()
        code = _UNKNOWN
        try:
            yield from behavior(request, context)
            code = _OK
        finally:
            _log_access(method, started, code)

    return handle


def _timed_stream_on_loop(behavior: StreamingOnLoop, method: str) -> StreamingOnLoop:
    """A server stream served on the loop (health Watch): the access line when the
    call ends, however it ends (a client's cancel leaves the generator suspended),
    with the status its handler set (a drained Watch ends UNAVAILABLE)."""

    async def handle(request: Any, context: Any) -> AsyncIterator[Any]:
        started = _perf_counter()

        def ended(_call: object) -> None:
            cancelled = _CANCELLED if context.cancelled() else _OK
            _log_access(method, started, context.code() or cancelled)

        context.add_done_callback(ended)
        if request is UNDECODABLE_REQUEST:
            await abort_on_loop(context, error_status(UNDECODABLE, method))
        async for response in behavior(request, context):
            yield response

    return handle
