"""The server's one interceptor, end to end: each call gets one access line and one count,
and a refusal whose audit write fails fails the call with its caller still named on the
access line (what was known of it: nothing, for an unknown token)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from tests.rpc.callers_files import TestCaller, write_callers
from tests.rpc.conftest import make_settings, mfa_service
from tests.rpc.harness import LiveServer, LogCapture, call_fails, running_server
from totpd.calls import CallScope
from totpd.config import Settings
from totpd.service.errors import ErrorReason
from totpd.service.policy import Policy
from totpd.v1 import totp_service_pb2 as pb

VERIFIER = TestCaller("verifier", permissions=("verify",))
READER = TestCaller("reader", permissions=("read",))
SERVICE = "totpd.v1.TotpService"


class FailingAuditTrail:
    """An `on_denied` hook whose write fails, as a database that went away would."""

    def __init__(self) -> None:
        self.told: list[tuple[CallScope, ErrorReason]] = []

    def __call__(self, scope: CallScope, reason: ErrorReason) -> None:
        self.told.append((scope, reason))
        raise RuntimeError("the audit table is gone")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path, Policy(backoff_base_seconds=0))
    return replace(
        settings, callers_file=write_callers(tmp_path / "callers.toml", [VERIFIER, READER])
    )


@pytest.fixture
def audit() -> FailingAuditTrail:
    return FailingAuditTrail()


@pytest.fixture
def live(engine: Engine, settings: Settings, audit: FailingAuditTrail) -> Iterator[LiveServer]:
    service = mfa_service(engine, settings, time.time)
    with running_server(settings, service, on_denied=audit) as server:
        yield server


def access_lines(capture: LogCapture, method: str) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in capture.lines)
    return [
        line
        for line in lines
        if line.get("logger") == "totpd.access" and line["method"] == f"/{SERVICE}/{method}"
    ]


def counted(method: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "totpd_rpc_requests_total", {"service": SERVICE, "method": method, "code": code}
    )
    return value or 0.0


def test_a_refusal_whose_audit_write_fails_fails_the_call_and_names_its_caller(
    live: LiveServer, audit: FailingAuditTrail, no_secrets_in_logs: LogCapture
) -> None:
    before = counted("GetFactor", "INTERNAL")
    failed = call_fails(
        live.stub.GetFactor,
        pb.GetFactorRequest(account_id="alice", factor_id="f"),
        metadata=VERIFIER.metadata(),
    )
    assert failed.code is grpc.StatusCode.INTERNAL  # not PERMISSION_DENIED: nothing audited
    assert "audit table" not in failed.message
    assert [(scope.caller, reason) for scope, reason in audit.told] == [
        ("verifier", ErrorReason.PERMISSION_DENIED)
    ]
    (line,) = access_lines(no_secrets_in_logs, "GetFactor")
    assert (line["code"], line["caller"], line["tenant"]) == ("INTERNAL", "verifier", "shop")
    assert counted("GetFactor", "INTERNAL") == before + 1


def test_an_allowed_call_has_one_access_line_and_one_count(
    live: LiveServer, no_secrets_in_logs: LogCapture
) -> None:
    before = counted("ListFactors", "OK")
    listed = live.stub.ListFactors(
        pb.ListFactorsRequest(account_id="alice"), metadata=READER.metadata(), timeout=10
    )
    assert list(listed.factors) == []
    (line,) = access_lines(no_secrets_in_logs, "ListFactors")
    assert (line["code"], line["caller"], line["tenant"]) == ("OK", "reader", "shop")
    assert line["duration_ms"] >= 0
    assert counted("ListFactors", "OK") == before + 1


def test_an_unknown_callers_failed_refusal_has_no_caller_on_its_access_line(
    live: LiveServer, audit: FailingAuditTrail, no_secrets_in_logs: LogCapture
) -> None:
    stranger = TestCaller("stranger")  # not in the file
    failed = call_fails(
        live.stub.Verify,
        pb.VerifyRequest(account_id="alice", code="123456"),
        metadata=stranger.metadata(),
    )
    # The hook failed (INTERNAL) rather than the call being UNAUTHENTICATED: it was told.
    assert failed.code is grpc.StatusCode.INTERNAL
    assert [reason for _, reason in audit.told] == [ErrorReason.UNAUTHENTICATED]
    (line,) = access_lines(no_secrets_in_logs, "Verify")
    assert (line["caller"], line["tenant"]) == ("", "")
