"""The per-caller failure rate over gRPC: RESOURCE_EXHAUSTED/RATE_LIMITED with a
google.rpc.RetryInfo delay, before anything is compared or counted."""

from __future__ import annotations

import time

import grpc
import pytest

from tests.rpc.conftest import Secrets
from tests.rpc.harness import LiveServer, call_fails
from tests.totp_oracle import wire_code_at, wrong_code
from totpd.service.policy import Policy
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb


@pytest.fixture
def rpc_policy() -> Policy:
    # One failure a second, room for three; batches of at most three items.
    return Policy(
        backoff_base_seconds=0,
        caller_failures_per_second=1,
        caller_failure_burst=3,
        max_batch_items=3,
    )


def test_a_caller_past_its_failure_rate_is_refused_with_a_retry_delay(
    live: LiveServer, secrets_seen: Secrets
) -> None:
    enrolled = live.stub.Enroll(pb.EnrollRequest(account_id="alice"), timeout=10)
    secrets_seen.add(enrolled.secret_base32, enrolled.otpauth_uri)
    factor = enrolled.factor

    def code(offset: float = 0) -> str:
        value = wire_code_at(
            enrolled.secret_base32,
            factor.algorithm,
            factor.digits,
            factor.period_seconds,
            time.time() + offset,
        )
        secrets_seen.add(value)
        return value

    live.stub.ConfirmEnrollment(
        pb.ConfirmEnrollmentRequest(account_id="alice", factor_id=factor.factor_id, code=code()),
        timeout=10,
    )
    for _ in range(3):
        outcome = live.stub.Verify(
            pb.VerifyRequest(account_id="alice", code=wrong_code(code())), timeout=10
        ).outcome
        assert outcome.result == factor_pb2.VERIFY_RESULT_INVALID
    before = outcome.attempts_left
    for method, request in (
        (live.stub.Verify, pb.VerifyRequest(account_id="alice", code=code(30))),
        (
            live.stub.BatchVerify,
            pb.BatchVerifyRequest(items=[pb.BatchVerifyItem(account_id="alice", code="000000")]),
        ),
    ):
        failure = call_fails(method, request)
        assert failure.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert failure.reason == "ERROR_REASON_RATE_LIMITED"
        assert failure.retry_delay_seconds is not None
        assert 0 < failure.retry_delay_seconds <= 1
    # Nothing was counted, and the refused right code was not used up.
    time.sleep(failure.retry_delay_seconds + 0.05)
    after = live.stub.Verify(pb.VerifyRequest(account_id="alice", code=code(30)), timeout=10)
    assert after.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    wrong = live.stub.Verify(
        pb.VerifyRequest(account_id="alice", code=wrong_code(code())), timeout=10
    ).outcome
    assert wrong.attempts_left == before + 2  # the success reset the factor's count


class _Peer:
    def __init__(self, peer: str) -> None:
        self._peer = peer

    def peer(self) -> str:
        return self._peer


@pytest.mark.parametrize(
    ("peer", "caller"),
    [
        ("ipv4:10.0.0.7:53012", "10.0.0.7"),
        ("ipv6:[::1]:4711", "::1"),
        ("ipv6:%5B2001:db8::5%5D:4711", "2001:db8::5"),
        ("unix:/run/totpd.sock", "unix:/run/totpd.sock"),
        ("", ""),
    ],
)
def test_the_caller_is_the_peer_host_without_its_port(peer: str, caller: str) -> None:
    from totpd.rpc.servicer import caller_of

    assert caller_of(_Peer(peer)) == caller  # type: ignore[arg-type]
