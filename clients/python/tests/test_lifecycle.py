"""Recovery codes, unlock and resync against the scripted server: what is sent, the
typed results, and which failures are retried (nothing that could act twice)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import grpc
import pytest
from fake_totpd import GENERATED_AT, RECOVERY_CODES, Fail, FakeTotpd, serving

from totpd_client import (
    ErrorReason,
    RecoveryCodesStatus,
    TotpdClient,
    TotpdError,
    UnlockResult,
    VerifyResult,
)
from totpd_client.v1 import factor_pb2, lifecycle_pb2

UNAVAILABLE = Fail(grpc.StatusCode.UNAVAILABLE, "ERROR_REASON_STORE_UNAVAILABLE")
TRANSPORT_UNAVAILABLE = Fail(grpc.StatusCode.UNAVAILABLE)
OVERLOADED = Fail(grpc.StatusCode.RESOURCE_EXHAUSTED, "ERROR_REASON_OVERLOADED")


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


ACTING_TWICE: dict[str, Callable[[TotpdClient], object]] = {
    "GenerateRecoveryCodes": lambda c: c.generate_recovery_codes("alice"),
    "VerifyRecoveryCode": lambda c: c.verify_recovery_code("alice", "k7q2-9xmf-w000"),
    "Resync": lambda c: c.resync("alice", "f-1", "123456", "654321"),
}


@pytest.mark.parametrize("fail", [UNAVAILABLE, TRANSPORT_UNAVAILABLE])
@pytest.mark.parametrize("method", ACTING_TWICE)
def test_calls_without_request_id_are_not_retried_after_unavailable(
    fake: FakeTotpd, fake_client: TotpdClient, method: str, fail: Fail
) -> None:
    fake.script = [fail]
    with pytest.raises(TotpdError) as info:
        ACTING_TWICE[method](fake_client)
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    assert [r.method for r in fake.received] == [method]


@pytest.mark.parametrize("method", ACTING_TWICE)
def test_calls_without_request_id_are_retried_when_refused_before_any_work(
    fake: FakeTotpd, fake_client: TotpdClient, method: str
) -> None:
    fake.script = [OVERLOADED, OVERLOADED]
    ACTING_TWICE[method](fake_client)
    assert [r.method for r in fake.received] == [method] * 3


def test_rate_limited_recovery_code_is_not_retried(
    fake: FakeTotpd, fake_client: TotpdClient
) -> None:
    fake.script = [Fail(grpc.StatusCode.RESOURCE_EXHAUSTED, "ERROR_REASON_RATE_LIMITED", 1.0)]
    with pytest.raises(TotpdError) as info:
        fake_client.verify_recovery_code("alice", "k7q2-9xmf-w000")
    assert (info.value.reason, info.value.retry_after) == (ErrorReason.RATE_LIMITED, 1.0)
    assert len(fake.received) == 1


def test_unlock_is_idempotent_so_unavailable_is_retried(
    fake: FakeTotpd, fake_client: TotpdClient
) -> None:
    fake.script = [UNAVAILABLE, TRANSPORT_UNAVAILABLE]
    result = fake_client.unlock("alice")
    assert [r.method for r in fake.received] == ["Unlock"] * 3
    assert result == UnlockResult(
        lock_lifted=True, consecutive_failures_cleared=10, factors_cleared=1, budget_refilled=False
    )
    assert result.cleared_anything


def test_unlock_sends_the_factor_or_none(fake: FakeTotpd, fake_client: TotpdClient) -> None:
    fake.unlocked = lifecycle_pb2.UnlockResponse()
    assert not fake_client.unlock("alice", "f-7").cleared_anything
    fake_client.unlock("bob")
    sent = [(r.request.account_id, r.request.factor_id) for r in fake.received]
    assert sent == [("alice", "f-7"), ("bob", "")]


def test_generated_codes_and_status_but_a_repr_without_codes(
    fake: FakeTotpd, fake_client: TotpdClient
) -> None:
    generated = fake_client.generate_recovery_codes("alice")
    assert fake.received[0].request.account_id == "alice"
    assert generated.codes == RECOVERY_CODES
    when = datetime.fromtimestamp(GENERATED_AT, UTC)
    assert generated.status == RecoveryCodesStatus(remaining=10, issued=10, generated_at=when)
    assert not any(code in repr(generated) for code in RECOVERY_CODES)
    assert "10 redacted" in repr(generated)


def test_recovery_code_verdict_and_status(fake: FakeTotpd, fake_client: TotpdClient) -> None:
    checked = fake_client.verify_recovery_code("alice", "K7Q2 9XMF W000")
    assert fake.received[0].request.code == "K7Q2 9XMF W000"  # sent as typed
    assert checked.valid and checked.outcome.result is VerifyResult.VALID
    assert (checked.status.remaining, checked.status.issued) == (9, 10)
    fake.outcome = factor_pb2.VerifyOutcome(
        result=factor_pb2.VERIFY_RESULT_LOCKED, unlock_required=True
    )
    locked = fake_client.verify_recovery_code("alice", "k7q2-9xmf-w001")
    assert not locked.valid
    assert locked.outcome.unlock_required


def test_resync_sends_both_codes_and_returns_the_drift(
    fake: FakeTotpd, fake_client: TotpdClient
) -> None:
    fake.drift_steps = -10
    fake.outcome = factor_pb2.VerifyOutcome(
        result=factor_pb2.VERIFY_RESULT_VALID, factor_id="f-1", step_offset=-10
    )
    result = fake_client.resync("alice", "f-1", "123456", "654321")
    req = fake.received[0].request
    assert (req.account_id, req.factor_id, req.code1, req.code2) == (
        "alice",
        "f-1",
        "123456",
        "654321",
    )
    assert result.outcome.valid and result.outcome.step_offset == -10
    assert result.factor.drift_steps == -10


def test_mfa_status_adds_recovery_codes_and_list_factors_is_unchanged(
    fake: FakeTotpd, fake_client: TotpdClient
) -> None:
    fake.drift_steps = 3
    mfa = fake_client.mfa_status("alice", include_inactive=True)
    assert fake.received[0].request.include_inactive is True
    assert [(f.factor_id, f.drift_steps) for f in mfa.factors] == [("f-1", 3)]
    assert (mfa.recovery_codes.remaining, mfa.recovery_codes.issued) == (9, 10)
    factors = fake_client.list_factors("alice")
    assert [f.factor_id for f in factors] == ["f-1"]
    assert fake.received[1].request.include_inactive is False


def test_a_server_without_recovery_codes_reads_as_none(
    fake: FakeTotpd, fake_client: TotpdClient
) -> None:
    fake.recovery_status = lifecycle_pb2.RecoveryCodesStatus()
    status = fake_client.mfa_status("alice").recovery_codes
    assert status == RecoveryCodesStatus(remaining=0, issued=0, generated_at=None)
