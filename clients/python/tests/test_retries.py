"""Retries, request ids and RetryInfo against a scripted in-process server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest
from fake_totpd import Fail, FakeTotpd, serving

from totpd_client import ErrorReason, TotpdClient, TotpdError, VerifyResult
from totpd_client.v1 import factor_pb2

UNAVAILABLE = Fail(grpc.StatusCode.UNAVAILABLE, "ERROR_REASON_STORE_UNAVAILABLE")


@pytest.fixture
def fake() -> FakeTotpd:
    return FakeTotpd()


@pytest.fixture
def fake_client(fake: FakeTotpd) -> Iterator[TotpdClient]:
    with (
        serving(fake) as target,
        TotpdClient(
            target, insecure=True, timeout=10, initial_backoff=0.001, max_backoff=0.002
        ) as c,
    ):
        yield c


MUTATIONS: dict[str, Callable[..., object]] = {
    "Enroll": lambda c, **kw: c.enroll("alice", "Pixel 8", **kw),
    "ConfirmEnrollment": lambda c, **kw: c.confirm("alice", "f-1", "123456", **kw),
    "Disable": lambda c, **kw: c.disable("alice", "f-1", force=True, **kw),
}


@pytest.mark.parametrize("method", MUTATIONS)
def test_a_generated_request_id_is_sent_and_reused_by_every_retry_of_the_call(
    fake: FakeTotpd, fake_client: TotpdClient, method: str
) -> None:
    fake.script = [UNAVAILABLE, UNAVAILABLE]
    MUTATIONS[method](fake_client)
    MUTATIONS[method](fake_client)
    assert [r.method for r in fake.received] == [method] * 4
    ids = [r.request.request_id for r in fake.received]
    assert ids[0] == ids[1] == ids[2], "the retries of one call must carry its request_id"
    assert uuid.UUID(ids[0]).version == 4
    assert ids[3] != ids[0], "a new call must get a new request_id"


@pytest.mark.parametrize("method", MUTATIONS)
def test_a_request_id_given_by_the_caller_is_sent_on_every_attempt(
    fake: FakeTotpd, fake_client: TotpdClient, method: str
) -> None:
    fake.script = [UNAVAILABLE]
    MUTATIONS[method](fake_client, request_id="checkout-42")
    assert [r.request.request_id for r in fake.received] == ["checkout-42"] * 2


def test_an_empty_request_id_means_a_generated_one(
    fake: FakeTotpd, fake_client: TotpdClient
) -> None:
    fake_client.enroll("alice", request_id="")
    assert uuid.UUID(fake.received[0].request.request_id).version == 4


def test_overloaded_is_retried_after_at_least_the_servers_retry_delay(
    fake: FakeTotpd, fake_client: TotpdClient
) -> None:
    fake.script = [
        Fail(grpc.StatusCode.RESOURCE_EXHAUSTED, "ERROR_REASON_OVERLOADED", retry_after=0.2)
    ]
    outcome = fake_client.verify("alice", "123456")
    assert outcome.result is VerifyResult.VALID
    first, second = fake.received
    # The client's own backoff is 1-2 ms here: only the RetryInfo explains the wait.
    assert second.at - first.at >= 0.2


def test_overloaded_whose_delay_outlasts_the_deadline_is_raised_at_once(
    fake: FakeTotpd,
) -> None:
    fake.script = [
        Fail(grpc.StatusCode.RESOURCE_EXHAUSTED, "ERROR_REASON_OVERLOADED", retry_after=30)
    ]
    with serving(fake) as target, TotpdClient(target, insecure=True, timeout=2) as c:
        with pytest.raises(TotpdError) as info:
            c.verify("alice", "123456")
    assert len(fake.received) == 1
    assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.reason is ErrorReason.OVERLOADED
    assert info.value.retry_after == 30


def test_rate_limited_is_not_retried_and_carries_the_servers_delay(
    fake: FakeTotpd, fake_client: TotpdClient
) -> None:
    fake.script = [
        Fail(grpc.StatusCode.RESOURCE_EXHAUSTED, "ERROR_REASON_RATE_LIMITED", retry_after=0.01)
    ]
    with pytest.raises(TotpdError) as info:
        fake_client.verify("alice", "123456")
    assert len(fake.received) == 1
    assert info.value.reason is ErrorReason.RATE_LIMITED
    assert info.value.retry_after == pytest.approx(0.01)


def test_resource_exhausted_without_a_totpd_reason_is_not_retried(
    fake: FakeTotpd, fake_client: TotpdClient
) -> None:
    fake.script = [Fail(grpc.StatusCode.RESOURCE_EXHAUSTED)]
    with pytest.raises(TotpdError) as info:
        fake_client.enroll("alice")
    assert len(fake.received) == 1
    assert (info.value.reason, info.value.retry_after) == (ErrorReason.UNSPECIFIED, None)


@pytest.mark.parametrize(
    ("fail", "reason"),
    [
        (
            Fail(grpc.StatusCode.DEADLINE_EXCEEDED, "ERROR_REASON_DEADLINE_EXCEEDED"),
            ErrorReason.DEADLINE_EXCEEDED,
        ),
        (
            Fail(grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_REQUEST_ID_REUSED"),
            ErrorReason.REQUEST_ID_REUSED,
        ),
    ],
)
def test_deadline_exceeded_and_request_id_reused_are_typed_and_not_retried(
    fake: FakeTotpd, fake_client: TotpdClient, fail: Fail, reason: ErrorReason
) -> None:
    fake.script = [fail]
    with pytest.raises(TotpdError) as info:
        fake_client.disable("alice", "f-1", "123456")
    assert len(fake.received) == 1
    assert (info.value.code, info.value.reason) == (fail.code, reason)


def test_verify_retries_unavailable_like_before(fake: FakeTotpd, fake_client: TotpdClient) -> None:
    fake.script = [UNAVAILABLE]
    assert fake_client.verify("alice", "123456").valid
    assert [r.method for r in fake.received] == ["Verify", "Verify"]


def test_unlock_required_reaches_the_outcome(fake: FakeTotpd, fake_client: TotpdClient) -> None:
    fake.outcome = factor_pb2.VerifyOutcome(
        result=factor_pb2.VERIFY_RESULT_LOCKED, factor_id="f-1", unlock_required=True
    )
    outcome = fake_client.verify("alice", "123456")
    assert outcome.result is VerifyResult.LOCKED
    assert outcome.unlock_required is True
    assert outcome.retry_after == 0
    fake.outcome = factor_pb2.VerifyOutcome(
        result=factor_pb2.VERIFY_RESULT_LOCKED, retry_after_seconds=60
    )
    outcome = fake_client.verify("alice", "123456")
    assert (outcome.unlock_required, outcome.retry_after) == (False, 60)
