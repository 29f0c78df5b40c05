"""The RPC's metrics and trace span, as the server's interceptor records them.

Per unary RPC (rpc/interceptors.py): the call by status code, its duration,
and, for BatchVerify, its item count; with tracing on, the call runs inside a
SERVER span the store round and C core spans hang under. Streams (health
Watch) are left alone: their duration is a client's choice. Labels are the
method's own names and status code names: bounded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from totpd.telemetry import metrics, tracing
from totpd.v1 import totp_service_pb2

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from opentelemetry.trace import Span
    from prometheus_client import Counter, Histogram

_BATCH_REQUEST = totp_service_pb2.BatchVerifyRequest


class MethodInstruments:
    """One method's label children, bound once (a `labels()` lookup per call costs)."""

    __slots__ = ("_codes", "duration", "method", "service")

    def __init__(self, full_method: str) -> None:
        self.service, _, self.method = full_method.lstrip("/").rpartition("/")
        self.duration: Histogram = metrics.RPC_DURATION.labels(self.service, self.method)
        self._codes: dict[grpc.StatusCode, Counter] = {}

    def record(self, seconds: float, code: grpc.StatusCode) -> None:
        """A finished call: its duration and its status code."""
        self.duration.observe(seconds)
        child = self._codes.get(code)
        if child is None:  # at most one per status code; a benign race
            child = self._codes[code] = metrics.RPC_REQUESTS.labels(
                self.service, self.method, code.name
            )
        child.inc()

    def span(self, context: grpc.ServicerContext) -> AbstractContextManager[Span | None]:
        """The RPC's SERVER span, continuing the caller's trace; call only while tracing is on."""
        return tracing.rpc_span(self.service, self.method, context.invocation_metadata())


def count_batch_items(request: Any) -> None:
    """A BatchVerify's item count (refused calls included; not an undecodable request)."""
    if type(request) is _BATCH_REQUEST:
        metrics.observe_batch_items(len(request.items))


def end_span(span: Span | None, code: grpc.StatusCode) -> None:
    """Record the RPC's status code on its span."""
    tracing.end_rpc(span, code.name, code.value[0])
