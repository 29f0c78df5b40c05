"""The RPC's metrics and trace span: one interceptor, outside the error mapper.

Placed right after the access log (rpc/server.py), so it sees the status the
error mapper set. Per unary RPC it counts the call by status code, observes
its duration, and, for BatchVerify, its item count; with tracing on, the call
runs inside a SERVER span the store round and C core spans hang under.
Streams (health Watch) are left alone: their duration is a client's choice.
Labels are the method's own names and status code names: bounded.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import grpc

from totpd.rpc.interceptors import CachingInterceptor
from totpd.telemetry import metrics, tracing
from totpd.v1 import totp_service_pb2

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import Counter, Histogram

    Handler = grpc.RpcMethodHandler[Any, Any]
    Unary = Callable[[Any, grpc.ServicerContext], Any]


class MetricsInterceptor(CachingInterceptor):
    """Counts, times and (when tracing is on) traces every unary RPC."""

    def _wrap(self, handler: Handler, method: str) -> Handler:
        if handler.unary_unary is None:
            return handler
        service, _, name = method.lstrip("/").rpartition("/")
        return grpc.unary_unary_rpc_method_handler(
            _observed(handler.unary_unary, _Instruments(service, name)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class _Instruments:
    """One method's label children, bound once (a `labels()` lookup per call costs)."""

    def __init__(self, service: str, method: str) -> None:
        self.service = service
        self.method = method
        self.duration: Histogram = metrics.RPC_DURATION.labels(service, method)
        self._codes: dict[grpc.StatusCode, Counter] = {}

    def count(self, code: grpc.StatusCode) -> None:
        child = self._codes.get(code)
        if child is None:  # at most one per status code
            child = self._codes[code] = metrics.RPC_REQUESTS.labels(
                self.service, self.method, code.name
            )
        child.inc()


def _status(context: grpc.ServicerContext, failed: bool) -> grpc.StatusCode:
    # grpc's stubs lack code(); abort() and set_code() set what it returns.
    code: grpc.StatusCode | None = context.code()  # type: ignore[attr-defined]
    if code is None:
        return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
    return code


def _observed(behavior: Unary, instruments: _Instruments) -> Unary:
    batch = totp_service_pb2.BatchVerifyRequest

    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        if type(request) is batch:
            metrics.observe_batch_items(len(request.items))
        if tracing.enabled():
            return _traced(behavior, instruments, request, context)
        return _measured(behavior, instruments, request, context)

    return handle


def _traced(
    behavior: Unary, instruments: _Instruments, request: Any, context: grpc.ServicerContext
) -> Any:
    """`handle` inside the RPC's span (tracing on)."""
    metadata = context.invocation_metadata()
    with tracing.rpc_span(instruments.service, instruments.method, metadata) as span:

        def end_span(code: grpc.StatusCode) -> None:
            tracing.end_rpc(span, code.name, code.value[0])

        return _measured(behavior, instruments, request, context, end_span)


def _measured(
    behavior: Unary,
    instruments: _Instruments,
    request: Any,
    context: grpc.ServicerContext,
    on_status: Callable[[grpc.StatusCode], None] | None = None,
) -> Any:
    """Run the handler, then record its duration and status (and tell `on_status`)."""
    started = time.perf_counter()
    failed = True
    try:
        response = behavior(request, context)
        failed = False
        return response
    finally:
        instruments.duration.observe(time.perf_counter() - started)
        code = _status(context, failed)
        instruments.count(code)
        if on_status is not None:
            on_status(code)
