"""OpenTelemetry tracing: optional (the `tracing` extra) and off by default.

Design notes: ARCHITECTURE.md, "Module notes", telemetry/tracing.py.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from totpd import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

# The RPC status codes an OpenTelemetry server span marks as errors (semantic conventions).
_SERVER_ERRORS: Final = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)
_ENDPOINT_ENV: Final = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_OFF: Final = contextlib.nullcontext()

_tracer: Any = None  # an opentelemetry Tracer while tracing is on
_provider: TracerProvider | None = None
_api: Any = None  # the OpenTelemetry API pieces the hooks use, imported once by `install`


class TracingUnavailableError(RuntimeError):
    """Tracing is configured but the OpenTelemetry packages are not installed."""


def wanted(endpoint: str, environ: dict[str, str] | None = None) -> bool:
    """Whether tracing is configured: an endpoint setting or the standard variables."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(endpoint) or any(env.get(name) for name in _ENDPOINT_ENV)


def configure(endpoint: str) -> None:
    """Export spans over OTLP to `endpoint` ("" lets the exporter read the OTEL_* variables)."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise TracingUnavailableError(
            "tracing is configured (otlp_endpoint or OTEL_EXPORTER_OTLP_ENDPOINT) but "
            f"OpenTelemetry is not installed ({error.name}): pip install 'totpd[tracing]'"
        ) from None
    provider = TracerProvider(resource=_resource(), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(_exporter(endpoint)))
    install(provider)


def _exporter(endpoint: str) -> Any:
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    )
    chosen = endpoint or None  # None: the exporter reads the OTEL_* variables
    if protocol.strip().lower().startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=chosen)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcSpanExporter,
    )

    return GrpcSpanExporter(endpoint=chosen)


def _resource() -> Any:
    from opentelemetry.sdk.resources import Resource

    name = os.environ.get("OTEL_SERVICE_NAME") or "totpd"
    return Resource.create({"service.name": name, "service.version": __version__})


def install(provider: TracerProvider) -> None:
    """Trace through `provider` (the tests give one with an in-memory exporter)."""
    global _tracer, _provider, _api
    _api = _Api()
    _provider = provider
    _tracer = provider.get_tracer("totpd", __version__)


class _Api:
    """The OpenTelemetry API, imported once when tracing starts (never per call)."""

    def __init__(self) -> None:
        from opentelemetry import propagate, trace

        self.extract = propagate.extract
        self.current_span = trace.get_current_span
        self.server = trace.SpanKind.SERVER
        self.error = trace.Status(trace.StatusCode.ERROR)


def shutdown() -> None:
    """Stop tracing: export what is buffered, then every hook is a no-op again."""
    global _tracer, _provider
    provider, _tracer, _provider = _provider, None, None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _tracer is not None


def span(name: str, attribute: str, value: int) -> contextlib.AbstractContextManager[Any]:
    """A child span of the current one, with one count attribute; a no-op when off."""
    tracer = _tracer
    if tracer is None:
        return _OFF
    return tracer.start_as_current_span(name, attributes={attribute: value})  # type: ignore[no-any-return]


def add_event(name: str) -> None:
    """An event on the current span; a no-op when off."""
    if _tracer is not None:
        _api.current_span().add_event(name)


def rpc_span(
    service: str, method: str, metadata: Sequence[tuple[str, str | bytes]] | None
) -> contextlib.AbstractContextManager[Span | None]:
    """The SERVER span of one RPC, continuing the caller's trace (W3C `traceparent`);
    a no-op yielding None if tracing stopped since the caller checked `enabled`.

    The span is current inside the block but ends at `end_rpc`, which the rpc layer
    calls before the status leaves (grpc.aio sends an aborted call's status at once)."""
    tracer = _tracer
    if tracer is None:
        return _OFF
    carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
    return tracer.start_as_current_span(  # type: ignore[no-any-return]
        f"{service}/{method}",
        context=_api.extract(carrier),
        kind=_api.server,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
        record_exception=False,  # an exception's message may quote the request
        set_status_on_exception=False,
        end_on_exit=False,
    )


def end_rpc(span: Span | None, code_name: str, code_number: int) -> None:
    """Record the RPC's status code on its span (an error for server-side faults), and
    end it."""
    if span is None:
        return
    span.set_attribute("rpc.grpc.status_code", code_number)
    if code_name in _SERVER_ERRORS:
        span.set_status(_api.error)
    span.end()
