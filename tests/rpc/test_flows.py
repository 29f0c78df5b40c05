"""End to end over gRPC: the real server, service, SQLite store, keyring and C core.

Codes come from pyotp, an independent implementation, computed from the secret
the Enroll response returned.
"""

from __future__ import annotations

import base64
import json
import time
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.rpc.conftest import Secrets
from tests.rpc.harness import LiveServer, LogCapture, activate, call_fails, enroll
from tests.totp_oracle import wrong_code
from totpd.config import Settings
from totpd.v1 import errors_pb2, factor_pb2
from totpd.v1 import totp_service_pb2 as pb

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def verify(live: LiveServer, account: str, code: str, factor_id: str = "") -> Any:
    request = pb.VerifyRequest(account_id=account, code=code, factor_id=factor_id)
    return live.stub.Verify(request, timeout=10).outcome


@pytest.mark.parametrize(
    ("algorithm", "digits", "period", "secret_bytes"),
    [
        (factor_pb2.ALGORITHM_UNSPECIFIED, 0, 0, 20),
        (factor_pb2.ALGORITHM_SHA256, 7, 45, 32),
        (factor_pb2.ALGORITHM_SHA512, 8, 60, 64),
    ],
)
def test_enroll_returns_uri_secret_and_qr_codes(
    live: LiveServer,
    secrets_seen: Secrets,
    algorithm: int,
    digits: int,
    period: int,
    secret_bytes: int,
) -> None:
    enrolled = enroll(
        live,
        secrets_seen,
        "alice@example.com",
        label="Pixel 8",
        issuer="Example Corp",
        algorithm=algorithm,
        digits=digits,
        period_seconds=period,
    )
    response, factor = enrolled.response, enrolled.factor
    want_algorithm = algorithm or factor_pb2.ALGORITHM_SHA1
    want_digits, want_period = digits or 6, period or 30

    assert factor.state == factor_pb2.FACTOR_STATE_PENDING
    assert (factor.account_id, factor.label, factor.issuer) == (
        "alice@example.com",
        "Pixel 8",
        "Example Corp",
    )
    assert (factor.algorithm, factor.digits, factor.period_seconds) == (
        want_algorithm,
        want_digits,
        want_period,
    )
    assert factor.expires_at_unix > factor.created_at_unix > 0

    secret = response.secret_base32
    assert "=" not in secret
    assert len(base64.b32decode(secret + "=" * (-len(secret) % 8))) == secret_bytes

    uri = urlsplit(response.otpauth_uri)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == "/Example Corp:alice@example.com"
    query = {key: values[0] for key, values in parse_qs(uri.query).items()}
    assert query == {
        "secret": secret,
        "issuer": "Example Corp",
        "algorithm": factor_pb2.Algorithm.Name(want_algorithm).removeprefix("ALGORITHM_"),
        "digits": str(want_digits),
        "period": str(want_period),
    }
    assert response.qr_png.startswith(PNG_MAGIC)
    assert ET.fromstring(response.qr_svg).tag.endswith("svg")


def test_confirm_verify_replay(live: LiveServer, secrets_seen: Secrets) -> None:
    enrolled = enroll(live, secrets_seen, "bob")
    factor_id = enrolled.factor.factor_id
    first = enrolled.code()
    secrets_seen.add(first)

    confirmed = live.stub.ConfirmEnrollment(
        pb.ConfirmEnrollmentRequest(account_id="bob", factor_id=factor_id, code=first),
        timeout=10,
    )
    assert confirmed.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert confirmed.outcome.factor_id == factor_id
    assert confirmed.factor.state == factor_pb2.FACTOR_STATE_ACTIVE
    assert confirmed.factor.confirmed_at_unix > 0

    # The confirmation consumed its step: the same code is a replay.
    assert verify(live, "bob", first).result == factor_pb2.VERIFY_RESULT_REPLAYED

    # The next step's code is inside the window and newer: VALID once, then REPLAYED.
    following = enrolled.code(offset_steps=1)
    secrets_seen.add(following)
    outcome = verify(live, "bob", following)
    assert outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert outcome.factor_id == factor_id
    assert outcome.step_offset in (0, 1)
    again = verify(live, "bob", following)
    assert again.result == factor_pb2.VERIFY_RESULT_REPLAYED


def test_wrong_codes_count_down_then_lock(live: LiveServer, secrets_seen: Secrets) -> None:
    enrolled = activate(live, secrets_seen, "carol")
    wrong = wrong_code(enrolled.code())
    secrets_seen.add(wrong)

    attempts = [verify(live, "carol", wrong) for _ in range(10)]
    assert [a.result for a in attempts] == [factor_pb2.VERIFY_RESULT_INVALID] * 10
    assert [a.attempts_left for a in attempts] == list(range(9, -1, -1))

    # Locked: even the right code is not compared and reveals nothing.
    right = enrolled.code(offset_steps=1)
    secrets_seen.add(right)
    locked = verify(live, "carol", right, enrolled.factor.factor_id)
    assert locked.result == factor_pb2.VERIFY_RESULT_LOCKED
    assert locked.retry_after_seconds > 0
    assert locked.attempts_left == 0


def test_disable_with_a_code_and_with_force(live: LiveServer, secrets_seen: Secrets) -> None:
    phone = activate(live, secrets_seen, "dave", label="phone")
    tablet = activate(live, secrets_seen, "dave", label="tablet")

    code = phone.code(offset_steps=1)
    secrets_seen.add(code)
    disabled = live.stub.Disable(
        pb.DisableRequest(account_id="dave", factor_id=phone.factor.factor_id, code=code),
        timeout=10,
    )
    assert disabled.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert [(f.factor_id, f.state) for f in disabled.factors] == [
        (phone.factor.factor_id, factor_pb2.FACTOR_STATE_DISABLED)
    ]

    forced = live.stub.Disable(pb.DisableRequest(account_id="dave", force=True), timeout=10)
    assert forced.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert [f.factor_id for f in forced.factors] == [tablet.factor.factor_id]

    listed = live.stub.ListFactors(pb.ListFactorsRequest(account_id="dave"), timeout=10)
    assert list(listed.factors) == []
    everything = live.stub.ListFactors(
        pb.ListFactorsRequest(account_id="dave", include_inactive=True), timeout=10
    )
    assert {f.state for f in everything.factors} == {factor_pb2.FACTOR_STATE_DISABLED}
    # A disabled factor no longer verifies anything.
    code = tablet.code(offset_steps=-1)
    secrets_seen.add(code)
    failed = call_fails(live.stub.Verify, pb.VerifyRequest(account_id="dave", code=code))
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "ERROR_REASON_ACCOUNT_NOT_FOUND",
    )
    failed = call_fails(
        live.stub.Verify,
        pb.VerifyRequest(account_id="dave", code=code, factor_id=tablet.factor.factor_id),
    )
    assert (failed.code, failed.reason, failed.metadata) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ERROR_REASON_FACTOR_NOT_ACTIVE",
        {"field": "factor_id"},
    )


def test_get_and_list_never_return_secret_material(live: LiveServer, secrets_seen: Secrets) -> None:
    enrolled = activate(live, secrets_seen, "erin", label="yubi")
    enroll(live, secrets_seen, "erin", label="pending one")
    secret = enrolled.response.secret_base32
    raw_secret = base64.b32decode(secret + "=" * (-len(secret) % 8))

    got = live.stub.GetFactor(
        pb.GetFactorRequest(account_id="erin", factor_id=enrolled.factor.factor_id), timeout=10
    )
    listed = live.stub.ListFactors(pb.ListFactorsRequest(account_id="erin"), timeout=10)

    assert got.factor.label == "yubi"
    assert sorted(f.label for f in listed.factors) == ["pending one", "yubi"]
    for message in (got, listed):
        wire = message.SerializeToString()
        assert secret.encode() not in wire
        assert raw_secret not in wire
        assert b"otpauth" not in wire


def test_a_code_from_another_account_never_verifies(
    live: LiveServer, secrets_seen: Secrets
) -> None:
    mine = activate(live, secrets_seen, "frank")
    activate(live, secrets_seen, "grace")
    code = mine.code(offset_steps=1)
    secrets_seen.add(code)

    outcome = verify(live, "grace", code)
    assert outcome.result == factor_pb2.VERIFY_RESULT_INVALID
    failed = call_fails(
        live.stub.GetFactor,
        pb.GetFactorRequest(account_id="grace", factor_id=mine.factor.factor_id),
    )
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "ERROR_REASON_FACTOR_NOT_FOUND",
    )
    assert verify(live, "frank", code).result == factor_pb2.VERIFY_RESULT_VALID


def test_batch_verify_answers_each_item_in_order(live: LiveServer, secrets_seen: Secrets) -> None:
    enrolled = activate(live, secrets_seen, "heidi")
    good = enrolled.code(offset_steps=1)
    bad = wrong_code(good)
    secrets_seen.add(good, bad)
    items = [
        pb.BatchVerifyItem(account_id="heidi", code=good),
        pb.BatchVerifyItem(account_id="heidi", code=good),
        pb.BatchVerifyItem(account_id="heidi", code="12 456"),
        pb.BatchVerifyItem(account_id="heidi", code=bad),
    ]
    response = live.stub.BatchVerify(pb.BatchVerifyRequest(items=items), timeout=10)

    kinds = [r.WhichOneof("result") for r in response.results]
    assert kinds == ["outcome", "outcome", "error", "outcome"]
    assert response.results[0].outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert response.results[1].outcome.result == factor_pb2.VERIFY_RESULT_REPLAYED
    error = response.results[2].error
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert error.field == "code"
    assert response.results[3].outcome.result == factor_pb2.VERIFY_RESULT_INVALID


def test_batch_response_larger_than_the_request_limit_is_sent(
    live: LiveServer, rpc_settings: Settings, secrets_seen: Secrets
) -> None:
    # Verdicts are stored before the response is sent: a response the server
    # refused to send (it is several times its request) would lose them.
    enrolled = activate(live, secrets_seen, "ivan")
    good = enrolled.code(offset_steps=1)
    secrets_seen.add(good)
    unknown = [pb.BatchVerifyItem(account_id=f"u{n}", code="123456") for n in range(3000)]
    request = pb.BatchVerifyRequest(items=[pb.BatchVerifyItem(account_id="ivan", code=good)])
    request.items.extend(unknown)
    assert request.ByteSize() < rpc_settings.max_message_bytes
    response = live.stub.BatchVerify(request, timeout=30)
    assert response.ByteSize() > rpc_settings.max_message_bytes
    assert response.results[0].outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert {r.error.reason for r in response.results[1:]} == {
        errors_pb2.ERROR_REASON_ACCOUNT_NOT_FOUND
    }
    assert verify(live, "ivan", good).result == factor_pb2.VERIFY_RESULT_REPLAYED


def test_health_reports_serving(live: LiveServer) -> None:
    stub = health_pb2_grpc.HealthStub(live.channel)
    for service in ("", "totpd.v1.TotpService"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(health_pb2.HealthCheckRequest(service="nope.Service"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_watchers_do_not_hold_worker_threads(
    live: LiveServer, no_secrets_in_logs: LogCapture
) -> None:
    """Watch answers through callbacks, so more watching clients than worker
    threads (4 here) leave the server free for calls, and every stream still
    sees each change; its access line is written when it ends."""
    stub = health_pb2_grpc.HealthStub(live.channel)
    everything = health_pb2.HealthCheckRequest(service="")
    # A deadline, so a watch stuck behind busy workers fails instead of hanging.
    watches = [stub.Watch(everything, timeout=20) for _ in range(8)]
    try:
        for watch in watches:
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        assert stub.Check(everything, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        listed = live.stub.ListFactors(pb.ListFactorsRequest(account_id="nobody"), timeout=5)
        assert list(listed.factors) == []
        live.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        for watch in watches:
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        for watch in watches:
            watch.cancel()

    def watch_lines() -> int:
        records = [json.loads(line) for line in no_secrets_in_logs.lines]
        return sum(r.get("method") == "/grpc.health.v1.Health/Watch" for r in records)

    deadline = time.monotonic() + 10
    while watch_lines() < len(watches) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert watch_lines() == len(watches)


def test_reflection_lists_the_service(live: LiveServer) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(live.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in response.list_services_response.service}
    assert {"totpd.v1.TotpService", "grpc.health.v1.Health"} <= names
