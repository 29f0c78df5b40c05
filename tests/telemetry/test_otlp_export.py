"""A real `totpd serve` exports its spans over OTLP/gRPC to a receiver the test
runs (the OpenTelemetry collector's own service definition), and flushes them
when it stops."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.cli.processes import dev_server
from tests.rpc.harness import failure
from totpd.telemetry.metrics import LISTENER_ENV
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc

pytestmark = pytest.mark.slow


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (the proto's name)
        with self._lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    found = Receiver()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(found, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield found, port
    finally:
        server.stop(None)


def test_spans_reach_an_otlp_receiver(tmp_path: Path, receiver: tuple[Receiver, int]) -> None:
    found, port = receiver
    env = {**os.environ, LISTENER_ENV: "supervisor"}  # no metrics listener needed here
    with dev_server(tmp_path, env, "--otlp-endpoint", f"http://127.0.0.1:{port}") as (
        process,
        address,
    ):
        with grpc.insecure_channel(address) as channel:
            stub = totp_service_pb2_grpc.TotpServiceStub(channel)
            try:
                stub.Verify(pb.VerifyRequest(account_id="nobody", code="123456"), timeout=10)
            except grpc.RpcError as error:  # no such account: an answer all the same
                assert failure(error).reason == "ERROR_REASON_ACCOUNT_NOT_FOUND"
        process.terminate()  # the drain, then the buffered spans are flushed
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err

    spans = {
        span.name: (resource.resource, span)
        for request in found.requests
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
    assert "totpd.v1.TotpService/Verify" in spans, sorted(spans)
    resource, rpc = spans["totpd.v1.TotpService/Verify"]
    attributes = {a.key: a.value.string_value for a in resource.attributes}
    assert attributes["service.name"] == "totpd"
    round_ = spans["totpd.store.round"][1]
    assert round_.parent_span_id == rpc.span_id and round_.trace_id == rpc.trace_id
