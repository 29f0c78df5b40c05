"""The metrics a live server exposes after real calls, read with the client
library's parser: requests by status, latency, verdicts, batch sizes, rounds,
pool, build and CPU path. Real gRPC server, SQLite, C core."""

from __future__ import annotations

import grpc
import pytest

from tests.rpc.conftest import Secrets
from tests.rpc.harness import LiveServer, activate, call_fails
from tests.telemetry.scrape import Delta, samples, scrape, value
from tests.totp_oracle import wrong_code
from totpd import __version__, otp
from totpd.telemetry.metrics import MetricsListener
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb

SERVICE = "totpd.v1.TotpService"


def test_real_calls_show_in_the_exposition(
    live: LiveServer, listener: MetricsListener, secrets_seen: Secrets
) -> None:
    delta = Delta(listener.port)
    account = "metrics-alice"
    enrolled = activate(live, secrets_seen, account)  # Enroll + ConfirmEnrollment: valid
    next_step = enrolled.code(offset_steps=1)
    secrets_seen.add(next_step)
    verdicts = [
        live.stub.Verify(pb.VerifyRequest(account_id=account, code=code), timeout=10)
        for code in (next_step, next_step, wrong_code(next_step))
    ]
    assert [v.outcome.result for v in verdicts] == [
        factor_pb2.VERIFY_RESULT_VALID,
        factor_pb2.VERIFY_RESULT_REPLAYED,
        factor_pb2.VERIFY_RESULT_INVALID,
    ]
    bad = call_fails(live.stub.Verify, pb.VerifyRequest(account_id=account, code="12 456"))
    assert bad.code is grpc.StatusCode.INVALID_ARGUMENT
    items = [pb.BatchVerifyItem(account_id=account, code=wrong_code(next_step))] * 3
    live.stub.BatchVerify(pb.BatchVerifyRequest(items=items), timeout=10)
    delta.take()

    verify = {"service": SERVICE, "method": "Verify"}
    assert delta("totpd_rpc_requests_total", code="OK", **verify) == 3
    assert delta("totpd_rpc_requests_total", code="INVALID_ARGUMENT", **verify) == 1
    assert delta("totpd_rpc_requests_total", code="OK", service=SERVICE, method="Enroll") == 1
    assert delta("totpd_rpc_duration_seconds_count", **verify) == 4
    assert delta("totpd_rpc_duration_seconds_sum", **verify) > 0
    assert delta("totpd_rpc_duration_seconds_bucket", le="+Inf", **verify) == 4
    assert delta("totpd_batch_verify_items_count") == 1
    assert delta("totpd_batch_verify_items_sum") == 3
    # Confirm and the first Verify won a step; the batch's three items failed
    # (a backoff may answer its later items LOCKED).
    assert delta("totpd_verdicts_total", result="valid") == 2
    assert delta("totpd_verdicts_total", result="replayed") == 1
    batch_verdicts = delta("totpd_verdicts_total", result="invalid") - 1
    assert batch_verdicts + delta("totpd_verdicts_total", result="locked") == 3
    assert delta("totpd_store_round_duration_seconds_count") >= 6
    # Every connection went back to the pool.
    assert delta("totpd_store_pool_connections_in_use") == 0
    # Bounded labels only: no account id anywhere in the exposition.
    assert account not in delta.after


def test_build_and_cpu_path_info(live: LiveServer, listener: MetricsListener) -> None:
    """`live` is built by app.build_service, which records the CPU path it chose."""
    text = scrape(listener.port)
    (build,) = [s for s in samples(text) if s.name == "totpd_build_info"]
    assert build.labels["version"] == __version__ and build.value == 1
    assert value(text, "totpd_core_cpu_path_info", path=otp.cpu_path()) == 1
    assert len([s for s in samples(text) if s.name == "totpd_core_cpu_path_info"]) == 1


def test_unknown_methods_add_no_label_values(live: LiveServer, listener: MetricsListener) -> None:
    """A client can name any method; only registered ones become label values."""
    call = live.channel.unary_unary("/totpd.v1.TotpService/NoSuchMethod")
    with pytest.raises(grpc.RpcError) as caught:
        call(b"", timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
    assert "NoSuchMethod" not in scrape(listener.port)
