"""Helpers for tests that talk to a real gRPC server on a free loopback port."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health
from grpc_status import rpc_status

from tests.totp_oracle import wire_code_at
from totpd.config import Settings
from totpd.logs import JsonFormatter
from totpd.rpc.server import create_server
from totpd.service.mfa import MfaService
from totpd.v1 import factor_pb2, totp_service_pb2_grpc
from totpd.v1 import totp_service_pb2 as pb

if TYPE_CHECKING:  # conftest imports this module
    from tests.rpc.conftest import Secrets


@dataclass
class LiveServer:
    server: Any
    port: int
    channel: grpc.Channel
    stub: Any
    health: health.HealthServicer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def running_server(
    settings: Settings,
    service: MfaService,
    channel_credentials: grpc.ChannelCredentials | None = None,
    **options: Any,
) -> Iterator[LiveServer]:
    """Start the server; `channel` is plaintext, or TLS with `channel_credentials`.
    `options` go to `create_server` (e.g. `on_denied`)."""
    health_servicer = health.HealthServicer()
    server, port = create_server(settings, service, health_servicer=health_servicer, **options)
    server.start()
    if channel_credentials is None:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    else:
        channel = grpc.secure_channel(f"127.0.0.1:{port}", channel_credentials)
    try:
        yield LiveServer(
            server, port, channel, totp_service_pb2_grpc.TotpServiceStub(channel), health_servicer
        )
    finally:
        channel.close()
        server.stop(None).wait()


@dataclass
class Enrolled:
    response: pb.EnrollResponse

    @property
    def factor(self) -> factor_pb2.Factor:
        return self.response.factor

    def code(self, offset_steps: int = 0) -> str:
        return self.code_at(time.time() + offset_steps * self.factor.period_seconds)

    def code_at(self, when: float) -> str:
        """The code of the step holding `when` (Unix seconds)."""
        f = self.factor
        return wire_code_at(
            self.response.secret_base32, f.algorithm, f.digits, f.period_seconds, when
        )


def enroll(live: LiveServer, secrets: Secrets, account: str, **options: Any) -> Enrolled:
    response = live.stub.Enroll(pb.EnrollRequest(account_id=account, **options), timeout=10)
    secrets.add(response.secret_base32, response.otpauth_uri)
    return Enrolled(response)


def activate(live: LiveServer, secrets: Secrets, account: str, **options: Any) -> Enrolled:
    enrolled = enroll(live, secrets, account, **options)
    code = enrolled.code()
    secrets.add(code)
    confirmed = live.stub.ConfirmEnrollment(
        pb.ConfirmEnrollmentRequest(
            account_id=account, factor_id=enrolled.factor.factor_id, code=code
        ),
        timeout=10,
    )
    assert confirmed.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    return enrolled


@dataclass(frozen=True)
class RpcFailure:
    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    metadata: dict[str, str]
    detail_count: int  # ErrorInfo details: exactly one on every error
    retry_delay_seconds: float | None = None  # the google.rpc.RetryInfo delay, if any


def failure(error: grpc.RpcError) -> RpcFailure:
    """Decode the rich status of a failed call (reason "" when there is none)."""
    call: Any = error
    status = rpc_status.from_call(call)
    infos = []
    delay: float | None = None
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(retry):
                delay = retry.retry_delay.ToNanoseconds() / 1e9
                continue
            assert detail.Unpack(info), "every detail must be an ErrorInfo or a RetryInfo"
            infos.append(info)
    first = infos[0] if infos else error_details_pb2.ErrorInfo()
    return RpcFailure(
        call.code(),
        call.details() or "",
        first.reason,
        first.domain,
        dict(first.metadata),
        len(infos),
        delay,
    )


def call_fails(method: Any, request: Any, **kwargs: Any) -> RpcFailure:
    with pytest.raises(grpc.RpcError) as caught:
        method(request, timeout=10, **kwargs)
    return failure(caught.value)


class LogCapture(logging.Handler):
    """Every record of the run, formatted as the server would write it (extras included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
