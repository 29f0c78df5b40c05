"""Tracing with the SDK's in-memory exporter: one SERVER span per RPC, continuing
the caller's trace, with the store round and the C call as children; bounded
attributes only; nothing recorded once tracing is shut down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.rpc.conftest import Secrets
from tests.rpc.harness import LiveServer, activate, call_fails
from totpd.telemetry import tracing
from totpd.v1 import totp_service_pb2 as pb

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def test_an_rpc_span_with_its_round_and_c_call(
    live: LiveServer, secrets_seen: Secrets, exported: InMemorySpanExporter
) -> None:
    account = "traced-alice"
    enrolled = activate(live, secrets_seen, account)
    code = enrolled.code(offset_steps=1)
    secrets_seen.add(code)
    exported.clear()
    live.stub.Verify(
        pb.VerifyRequest(account_id=account, code=code),
        timeout=10,
        metadata=(("traceparent", TRACEPARENT),),
    )
    spans = exported.get_finished_spans()

    (rpc,) = _named(spans, "totpd.v1.TotpService/Verify")
    (round_,) = _named(spans, "totpd.store.round")
    (core,) = _named(spans, "totpd.core.verify_batch")
    assert rpc.kind is SpanKind.SERVER
    assert f"{rpc.context.trace_id:032x}" == TRACE_ID  # the caller's trace continues
    assert dict(rpc.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "totpd.v1.TotpService",
        "rpc.method": "Verify",
        "rpc.grpc.status_code": 0,
    }
    assert rpc.status.status_code is StatusCode.UNSET
    assert round_.parent is not None and round_.parent.span_id == rpc.context.span_id
    assert core.parent is not None and core.parent.span_id == round_.context.span_id
    assert dict(round_.attributes or {}) == {"totpd.round.checks": 1}
    assert dict(core.attributes or {}) == {"totpd.core.pairs": 1}
    # Bounded attributes only: no account id, code or factor id on any span.
    text = repr([(s.name, dict(s.attributes or {}), s.events) for s in spans])
    for value in (account, code, enrolled.factor.factor_id):
        assert value not in text


def test_a_batch_round_spans_its_items_and_a_callers_error_is_not_a_span_error(
    live: LiveServer, secrets_seen: Secrets, exported: InMemorySpanExporter
) -> None:
    for account in ("traced-a", "traced-b"):
        activate(live, secrets_seen, account)
    exported.clear()
    items = [pb.BatchVerifyItem(account_id=a, code="000000") for a in ("traced-a", "traced-b")]
    live.stub.BatchVerify(pb.BatchVerifyRequest(items=items), timeout=10)
    spans = exported.get_finished_spans()
    rounds = _named(spans, "totpd.store.round")
    assert [dict(r.attributes or {}) for r in rounds] == [{"totpd.round.checks": 2}]
    (core,) = _named(spans, "totpd.core.verify_batch")
    assert dict(core.attributes or {}) == {"totpd.core.pairs": 2}

    exported.clear()
    failed = call_fails(live.stub.Verify, pb.VerifyRequest(account_id="x", code="12 456"))
    (rpc,) = exported.get_finished_spans()
    assert (rpc.attributes or {})["rpc.grpc.status_code"] == failed.code.value[0]
    # INVALID_ARGUMENT is the caller's error, not the server's: the span is not an error.
    assert rpc.status.status_code is StatusCode.UNSET


def test_nothing_is_recorded_once_tracing_is_shut_down(
    live: LiveServer, exported: InMemorySpanExporter
) -> None:
    tracing.shutdown()
    assert not tracing.enabled()
    live.stub.ListFactors(pb.ListFactorsRequest(account_id="nobody"), timeout=10)
    assert exported.get_finished_spans() == ()


def test_configure_picks_the_otlp_exporter_for_the_protocol(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    assert isinstance(tracing._exporter("http://127.0.0.1:4317"), Grpc)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert isinstance(tracing._exporter("http://127.0.0.1:4318/v1/traces"), Http)
