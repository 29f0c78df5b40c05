"""request_id against a real totpd: a retry after a lost response must not act twice.

The server keeps request ids (AIP-155) only from the release that added them; against
an older server these tests skip, saying so, instead of failing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pyotp
import pytest

from totpd_client import ErrorReason, FactorState, TotpdClient, TotpdError, VerifyResult

SERVER_IGNORES_REQUEST_ID = (
    "this totpd ignores request_id (it enrolled twice under one id): "
    "the server side of AIP-155 idempotency has not landed"
)


def account(name: str) -> str:
    return f"py-{name}-{uuid.uuid4()}"


class _LostResponse(grpc.RpcError):
    """What the client sees when the connection drops after the server acted."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection lost after the server answered"

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def result(self, timeout: float | None = None) -> Any:
        raise self


class LoseFirstResponse(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Lets every attempt reach the server but drops the first response."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.dropped: Any = None

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        self.requests.append((details.method, request))
        call = continuation(details, request)
        if self.dropped is None:
            self.dropped = call.result()
            return _LostResponse()
        return call


@pytest.fixture(scope="module")
def request_ids_kept(client: TotpdClient) -> bool:
    """Whether the server keeps request ids: one id reused for a different enrollment
    is refused with REQUEST_ID_REUSED by a server that does, enrolled by one that does not."""
    probe, rid = account("probe"), str(uuid.uuid4())
    client.enroll(probe, "Pixel 8", request_id=rid)
    try:
        client.enroll(probe, "Work phone", request_id=rid)
    except TotpdError as err:
        assert err.code is grpc.StatusCode.INVALID_ARGUMENT
        assert err.reason is ErrorReason.REQUEST_ID_REUSED
        assert err.field == "request_id"
        return True
    return False


def test_enroll_retried_after_a_lost_response_returns_the_first_factor(
    totpd_target: str, request_ids_kept: bool
) -> None:
    lose = LoseFirstResponse()
    channel = grpc.intercept_channel(grpc.insecure_channel(totpd_target), lose)
    alice = account("alice")
    with TotpdClient("unused", channel=channel, initial_backoff=0.01, timeout=10) as c:
        try:
            e = c.enroll(alice, "Pixel 8")
        except TotpdError as err:
            # Without server support the retry enrolls again and collides with the first.
            if request_ids_kept or err.reason is not ErrorReason.LABEL_TAKEN:
                raise
        stored = c.list_factors(alice, include_inactive=True)
    channel.close()
    enrolls = [r for method, r in lose.requests if method.endswith("/Enroll")]
    assert len(enrolls) == 2
    assert enrolls[0].request_id and enrolls[0].request_id == enrolls[1].request_id
    if not request_ids_kept:
        pytest.skip(SERVER_IGNORES_REQUEST_ID)
    assert [f.factor_id for f in stored] == [lose.dropped.factor.factor_id]
    assert e.factor.factor_id == lose.dropped.factor.factor_id
    assert e.secret_base32 == lose.dropped.secret_base32


def test_one_request_id_enrolls_once(client: TotpdClient, request_ids_kept: bool) -> None:
    if not request_ids_kept:
        pytest.skip(SERVER_IGNORES_REQUEST_ID)
    bob = account("bob")
    rid = str(uuid.uuid4())
    first = client.enroll(bob, "Pixel 8", request_id=rid)
    again = client.enroll(bob, "Pixel 8", request_id=rid)
    assert again.factor.factor_id == first.factor.factor_id
    assert again.secret_base32 == first.secret_base32
    assert len(client.list_factors(bob, include_inactive=True)) == 1


def test_a_repeated_confirm_returns_the_first_verdict_instead_of_replayed(
    client: TotpdClient, request_ids_kept: bool
) -> None:
    if not request_ids_kept:
        pytest.skip(SERVER_IGNORES_REQUEST_ID)
    carol = account("carol")
    e = client.enroll(carol, "Pixel 8")
    code = pyotp.TOTP(e.secret_base32).now()
    rid = str(uuid.uuid4())
    first = client.confirm(carol, e.factor.factor_id, code, request_id=rid)
    assert first.outcome.result is VerifyResult.VALID, first.outcome
    again = client.confirm(carol, e.factor.factor_id, code, request_id=rid)
    assert again.outcome.result is VerifyResult.VALID, again.outcome
    assert again.factor.state is FactorState.ACTIVE


def test_a_repeated_disable_returns_the_first_result(
    client: TotpdClient, request_ids_kept: bool
) -> None:
    if not request_ids_kept:
        pytest.skip(SERVER_IGNORES_REQUEST_ID)
    dave = account("dave")
    e = client.enroll(dave, "Pixel 8")
    rid = str(uuid.uuid4())
    first = client.disable(dave, e.factor.factor_id, force=True, request_id=rid)
    again = client.disable(dave, e.factor.factor_id, force=True, request_id=rid)
    assert again.outcome.result is first.outcome.result is VerifyResult.VALID
    assert [f.factor_id for f in again.factors] == [e.factor.factor_id]
