"""Token and tenant reach the server as call metadata; refused identities are typed errors."""

from __future__ import annotations

import grpc
import pytest
from fake_totpd import Fail, FakeTotpd, serving

from totpd_client import (
    ErrorReason,
    PermissionDeniedError,
    TenantRequiredError,
    TotpdClient,
    TotpdError,
    UnauthenticatedError,
)
from totpd_client.auth import is_loopback

Code = grpc.StatusCode
TOKEN = "tok_0123456789abcdef"  # noqa: S105 (a test token)


def test_token_and_tenant_are_sent_on_every_call() -> None:
    fake = FakeTotpd()
    with (
        serving(fake) as target,
        TotpdClient(target, insecure=True, token=TOKEN, tenant="shop") as c,
    ):
        c.verify("alice", "123456")
        c.enroll("alice", "phone")
        c.get_factor("alice", "f1")
        c.list_audit_events()
    assert [r.method for r in fake.received] == ["Verify", "Enroll", "GetFactor", "ListAuditEvents"]
    for r in fake.received:
        assert r.metadata["authorization"] == f"Bearer {TOKEN}"
        assert r.metadata["x-totpd-tenant"] == "shop"


def test_no_token_no_tenant_sends_neither() -> None:
    fake = FakeTotpd()
    with serving(fake) as target, TotpdClient(target, insecure=True) as c:
        c.verify("alice", "123456")
    assert "authorization" not in fake.received[0].metadata
    assert "x-totpd-tenant" not in fake.received[0].metadata


def test_every_retry_carries_the_token() -> None:
    fake = FakeTotpd(script=[Fail(grpc.StatusCode.UNAVAILABLE)])
    with (
        serving(fake) as target,
        TotpdClient(target, insecure=True, token=TOKEN, initial_backoff=0.01) as c,
    ):
        c.verify("alice", "123456")
    assert len(fake.received) == 2
    assert {r.metadata["authorization"] for r in fake.received} == {f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [
        (Code.UNAUTHENTICATED, "ERROR_REASON_UNAUTHENTICATED", UnauthenticatedError),
        (Code.PERMISSION_DENIED, "ERROR_REASON_PERMISSION_DENIED", PermissionDeniedError),
        (Code.INVALID_ARGUMENT, "ERROR_REASON_TENANT_REQUIRED", TenantRequiredError),
    ],
)
def test_refused_identities_are_typed_and_never_retried(
    code: grpc.StatusCode, reason: str, kind: type[TotpdError]
) -> None:
    fake = FakeTotpd(script=[Fail(code, reason)] * 3)
    with (
        serving(fake) as target,
        TotpdClient(target, insecure=True, token=TOKEN, max_attempts=4) as c,
        pytest.raises(kind) as caught,
    ):
        c.verify("alice", "123456")
    assert len(fake.received) == 1  # one attempt: a retry cannot fix an identity
    assert isinstance(caught.value, TotpdError)
    assert caught.value.code is code
    assert caught.value.reason is ErrorReason(reason)
    assert TOKEN not in str(caught.value)


def test_a_proxys_bare_unauthenticated_is_typed_too() -> None:
    fake = FakeTotpd(script=[Fail(grpc.StatusCode.UNAUTHENTICATED)])
    with (
        serving(fake) as target,
        TotpdClient(target, insecure=True) as c,
        pytest.raises(UnauthenticatedError) as caught,
    ):
        c.verify("alice", "123456")
    assert caught.value.reason is ErrorReason.UNSPECIFIED


def test_a_token_in_plaintext_beyond_loopback_is_refused_unless_allowed() -> None:
    with pytest.raises(ValueError, match="refusing to send the token in plaintext") as caught:
        TotpdClient("totpd.internal:50051", insecure=True, token=TOKEN)
    assert TOKEN not in str(caught.value)
    TotpdClient(
        "totpd.internal:50051", insecure=True, token=TOKEN, allow_token_over_plaintext=True
    ).close()
    TotpdClient("localhost:50051", insecure=True, token=TOKEN).close()
    TotpdClient("totpd.internal:50051", token=TOKEN).close()  # TLS: fine


@pytest.mark.parametrize("bad", ["", " padded", "line\nbreak", "naïve"])
def test_a_malformed_token_or_tenant_is_refused_without_echoing_it(bad: str) -> None:
    for option in ("token", "tenant"):
        with pytest.raises(ValueError, match=option) as caught:
            TotpdClient("127.0.0.1:1", insecure=True, **{option: bad})
        assert bad not in str(caught.value) or not bad


@pytest.mark.parametrize(
    ("target", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("ipv4:127.0.0.1:50051", True),
        ("[::1]:50051", True),
        ("LOCALHOST:1", True),
        ("dns:///localhost:50051", True),
        ("unix:/run/totpd.sock", True),
        ("10.0.0.5:50051", False),
        ("dns:///totpd.internal:50051", False),
    ],
)
def test_loopback_targets(target: str, loopback: bool) -> None:
    assert is_loopback(target) is loopback
