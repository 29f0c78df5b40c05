"""How totpctl renders the answers a real totpd gives only under load or after many
failures (a lock an operator must lift, RATE_LIMITED and OVERLOADED with a RetryInfo
delay, the reasons added with request_id): a scripted TotpService on a free loopback
port answers with the server's own status encoding (totpd.rpc.status)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest

from tests.cli.conftest import Totpctl
from totpd.rpc.status import to_grpc_status
from totpd.service.errors import ErrorReason, TotpdError
from totpd.v1 import factor_pb2, totp_service_pb2_grpc
from totpd.v1 import totp_service_pb2 as pb

Answer = object  # a response message, or a TotpdError to abort the call with


@dataclass
class ScriptedTotpd(totp_service_pb2_grpc.TotpServiceServicer):
    """Answers each call with the next scripted answer; records the requests."""

    answers: list[Answer] = field(default_factory=list)
    received: list[object] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _answer(self, request: object, context: grpc.ServicerContext) -> object:
        with self.lock:
            self.received.append(request)
            answer = self.answers.pop(0)
        if isinstance(answer, TotpdError):
            context.abort_with_status(to_grpc_status(answer))
        return answer

    Verify = Enroll = ListFactors = _answer


@dataclass
class Scripted:
    address: str
    totpd: ScriptedTotpd


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    servicer = ScriptedTotpd()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    totp_service_pb2_grpc.add_TotpServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield Scripted(f"127.0.0.1:{port}", servicer)
    finally:
        server.stop(None).wait()


def verdict(**outcome: object) -> pb.VerifyResponse:
    return pb.VerifyResponse(outcome=factor_pb2.VerifyOutcome(**outcome))  # type: ignore[arg-type]


LOCKED = factor_pb2.VERIFY_RESULT_LOCKED


def test_a_lock_only_an_operator_can_lift_says_waiting_does_not_help(
    scripted: Scripted, totpctl_at: Totpctl
) -> None:
    scripted.totpd.answers.append(verdict(result=LOCKED, factor_id="f-1", unlock_required=True))
    run = totpctl_at(scripted.address, "verify", "alice", "123456")
    assert run.exit_code == 1
    assert run.out == (
        "LOCKED (factor f-1, attempts left 0,"
        " locked until an operator unlocks the account; waiting does not help)\n"
    )


def test_a_timed_lock_shows_its_delay(scripted: Scripted, totpctl_at: Totpctl) -> None:
    scripted.totpd.answers.append(verdict(result=LOCKED, retry_after_seconds=30))
    run = totpctl_at(scripted.address, "verify", "alice", "123456")
    assert (run.exit_code, run.out) == (1, "LOCKED (attempts left 0, retry after 30 s)\n")


@pytest.mark.parametrize(
    ("reason", "message", "args"),
    [
        # Rate limited: never retried, whatever the timeout.
        (ErrorReason.RATE_LIMITED, "too many failures", ("verify", "alice", "123456")),
        # Overloaded with a delay past the timeout: fails at once.
        (ErrorReason.OVERLOADED, "at capacity", ("--timeout", "2", "list", "alice")),
    ],
)
def test_a_refusal_not_retried_shows_the_servers_delay(
    scripted: Scripted,
    totpctl_at: Totpctl,
    reason: ErrorReason,
    message: str,
    args: tuple[str, ...],
) -> None:
    scripted.totpd.answers.append(TotpdError(reason, message, retry_after_seconds=30))
    run = totpctl_at(scripted.address, *args)
    assert (run.exit_code, run.out) == (2, "")
    assert run.err == (
        f"totpctl: error: RESOURCE_EXHAUSTED ERROR_REASON_{reason.name}: {message}"
        " (retry after 30 s)\n"
    )
    assert len(scripted.totpd.received) == 1


def test_overloaded_is_retried_after_the_servers_delay(
    scripted: Scripted, totpctl_at: Totpctl
) -> None:
    scripted.totpd.answers += [
        TotpdError(ErrorReason.OVERLOADED, "at capacity", retry_after_seconds=0.05),
        verdict(result=factor_pb2.VERIFY_RESULT_VALID, factor_id="f-1"),
    ]
    run = totpctl_at(scripted.address, "verify", "alice", "123456")
    assert (run.exit_code, run.out) == (0, "VALID (factor f-1, step offset +0)\n")
    assert len(scripted.totpd.received) == 2


def test_a_server_side_deadline_is_not_mistaken_for_an_absent_server(
    scripted: Scripted, totpctl_at: Totpctl
) -> None:
    scripted.totpd.answers.append(TotpdError(ErrorReason.DEADLINE_EXCEEDED, "ran out of time"))
    run = totpctl_at(scripted.address, "list", "alice")
    assert run.exit_code == 2
    assert run.err == (
        "totpctl: error: DEADLINE_EXCEEDED ERROR_REASON_DEADLINE_EXCEEDED: ran out of time\n"
    )


def test_an_enroll_retried_after_unavailable_sends_the_same_request_id(
    scripted: Scripted, totpctl_at: Totpctl
) -> None:
    factor = factor_pb2.Factor(
        factor_id="f-1", account_id="alice", state=factor_pb2.FACTOR_STATE_PENDING
    )
    scripted.totpd.answers += [
        TotpdError(ErrorReason.STORE_UNAVAILABLE, "database unreachable"),
        pb.EnrollResponse(factor=factor, otpauth_uri="otpauth://totp/x", secret_base32="AAAA"),
    ]
    run = totpctl_at(scripted.address, "enroll", "alice", "--no-qr")
    assert run.exit_code == 0, run.err
    assert "factor id:   f-1" in run.out
    first, retry = (r.request_id for r in scripted.totpd.received)  # type: ignore[attr-defined]
    assert first and first == retry


def test_a_reused_request_id_names_the_field(scripted: Scripted, totpctl_at: Totpctl) -> None:
    scripted.totpd.answers.append(
        TotpdError(ErrorReason.REQUEST_ID_REUSED, "already used", field="request_id")
    )
    run = totpctl_at(scripted.address, "enroll", "alice", "--no-qr")
    assert run.exit_code == 2
    assert run.err == (
        "totpctl: error: INVALID_ARGUMENT ERROR_REASON_REQUEST_ID_REUSED: already used"
        " (field request_id)\n"
    )
