"""The whole flow against a real totpd; codes come from pyotp, not from our code."""

from __future__ import annotations

import time
import uuid

import grpc
import pyotp
import pytest

from totpd_client import (
    Algorithm,
    BatchItem,
    Enrollment,
    ErrorReason,
    FactorState,
    TotpdClient,
    TotpdError,
    VerifyResult,
)


def account(name: str) -> str:
    return f"py-{name}-{uuid.uuid4()}"


def totp(e: Enrollment) -> pyotp.TOTP:
    digests = {Algorithm.SHA256: "sha256", Algorithm.SHA512: "sha512"}
    digest = digests.get(e.factor.algorithm, "sha1")
    return pyotp.TOTP(
        e.secret_base32, digits=e.factor.digits, interval=e.factor.period_seconds, digest=digest
    )


def next_code(e: Enrollment) -> str:
    """The code of the step after the current one: unused after a confirmation."""
    return totp(e).at(time.time() + e.factor.period_seconds)


def enroll_active(client: TotpdClient, account_id: str) -> Enrollment:
    e = client.enroll(account_id, "Pixel 8")
    c = client.confirm(account_id, e.factor.factor_id, totp(e).now())
    assert c.outcome.result is VerifyResult.VALID, c.outcome
    assert c.factor.state is FactorState.ACTIVE
    return e


def test_enroll_confirm_verify_replay_disable(client: TotpdClient) -> None:
    alice = account("alice")
    e = client.enroll(alice, "Pixel 8")
    f = e.factor
    assert f.state is FactorState.PENDING
    assert (f.account_id, f.label) == (alice, "Pixel 8")
    assert (f.algorithm, f.digits, f.period_seconds) == (Algorithm.SHA1, 6, 30)
    assert e.otpauth_uri.startswith("otpauth://totp/")
    assert pyotp.parse_uri(e.otpauth_uri).secret == e.secret_base32
    assert e.qr_png.startswith(b"\x89PNG")
    assert "<svg" in e.qr_svg
    assert e.secret_base32 not in repr(e)

    c = client.confirm(alice, f.factor_id, totp(e).now())
    assert c.outcome.result is VerifyResult.VALID, c.outcome
    assert c.factor.state is FactorState.ACTIVE
    assert c.factor.confirmed_at is not None

    code = next_code(e)
    v = client.verify(alice, code)
    assert v.result is VerifyResult.VALID, v
    assert v.valid
    assert v.factor_id == f.factor_id
    assert v.step_offset in (0, 1)

    again = client.verify(alice, code)
    assert again.result is VerifyResult.REPLAYED, again
    assert not again.valid

    got = client.get_factor(alice, f.factor_id)
    assert got.state is FactorState.ACTIVE
    assert got.last_used_at is not None
    assert [x.factor_id for x in client.list_factors(alice)] == [f.factor_id]

    d = client.disable(alice, f.factor_id, force=True)
    assert d.outcome.result is VerifyResult.VALID
    assert [(x.factor_id, x.state) for x in d.factors] == [(f.factor_id, FactorState.DISABLED)]
    assert client.get_factor(alice, f.factor_id).state is FactorState.DISABLED
    assert client.list_factors(alice) == []
    assert len(client.list_factors(alice, include_inactive=True)) == 1


def test_disable_with_current_code(client: TotpdClient) -> None:
    carol = account("carol")
    e = enroll_active(client, carol)
    d = client.disable(carol, e.factor.factor_id, next_code(e))
    assert d.outcome.result is VerifyResult.VALID, d.outcome
    assert [x.state for x in d.factors] == [FactorState.DISABLED]


def test_batch_verify(client: TotpdClient) -> None:
    bob = account("bob")
    e = enroll_active(client, bob)
    code = next_code(e)
    items = [
        BatchItem(bob, code),
        BatchItem(bob, code, e.factor.factor_id),
        BatchItem(bob, "12a456"),
        BatchItem(account("nobody"), "123456"),
    ]
    try:
        results = client.batch_verify(items)
    except TotpdError as err:
        if err.code is grpc.StatusCode.UNIMPLEMENTED:
            pytest.skip("server does not implement BatchVerify yet")
        raise
    assert len(results) == 4
    assert results[0].outcome is not None and results[0].outcome.result is VerifyResult.VALID
    assert results[0].outcome.factor_id == e.factor.factor_id
    assert results[1].outcome is not None and results[1].outcome.result is VerifyResult.REPLAYED
    assert results[2].error is not None and results[2].outcome is None
    assert results[2].error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert results[2].error.reason is ErrorReason.MALFORMED_CODE
    assert results[3].error is not None
    assert results[3].error.code is grpc.StatusCode.NOT_FOUND
    assert results[3].error.reason is ErrorReason.ACCOUNT_NOT_FOUND


def test_malformed_code_is_a_typed_error(client: TotpdClient) -> None:
    dave = account("dave")
    enroll_active(client, dave)
    with pytest.raises(TotpdError) as info:
        client.verify(dave, "12a456")
    err = info.value
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason is ErrorReason.MALFORMED_CODE
    assert err.field == "code"
    assert "12a456" not in str(err)


def test_unknown_factor_is_not_found(client: TotpdClient) -> None:
    with pytest.raises(TotpdError) as info:
        client.get_factor(account("erin"), str(uuid.uuid4()))
    assert info.value.code is grpc.StatusCode.NOT_FOUND
    assert info.value.reason is not ErrorReason.UNSPECIFIED


def test_unavailable_is_retried_then_raised() -> None:
    calls = []

    class CountingInterceptor(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
            calls.append(details.method)
            return continuation(details, request)

    channel = grpc.intercept_channel(grpc.insecure_channel("127.0.0.1:1"), CountingInterceptor())
    c = TotpdClient("unused", channel=channel, max_attempts=3, initial_backoff=0.01, timeout=5)
    with pytest.raises(TotpdError) as info:
        c.verify("x", "123456")
    channel.close()
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    assert info.value.reason is ErrorReason.UNSPECIFIED
    assert len(calls) == 3


def test_sha256_eight_digits_sixty_seconds(client: TotpdClient) -> None:
    grace = account("grace")
    e = client.enroll(grace, "YubiKey", algorithm=Algorithm.SHA256, digits=8, period_seconds=60)
    assert (e.factor.algorithm, e.factor.digits, e.factor.period_seconds) == (
        Algorithm.SHA256,
        8,
        60,
    )
    uri = pyotp.parse_uri(e.otpauth_uri)
    assert isinstance(uri, pyotp.TOTP)
    assert (uri.digits, uri.interval) == (8, 60)
    c = client.confirm(grace, e.factor.factor_id, totp(e).now())
    assert c.outcome.result is VerifyResult.VALID, c.outcome
    v = client.verify(grace, next_code(e))
    assert v.result is VerifyResult.VALID, v
