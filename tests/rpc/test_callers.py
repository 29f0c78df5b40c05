"""Who may call what (rpc/callers.py), over a real server on both databases: every RPC
against every kind of wrong caller, with its status and reason, and nothing written;
every RPC allowed to a caller holding just its permission; the implicit local caller."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import Engine, text

from tests.audit_rows import AUDIT_TRAIL
from tests.rpc.callers_files import TestCaller, write_callers
from tests.rpc.conftest import Secrets, make_settings, mfa_service
from tests.rpc.harness import LiveServer, LogCapture, call_fails, failure, running_server
from tests.totp_oracle import wire_code_at, wrong_code
from totpd.app import denial_recorder
from totpd.calls import CallScope
from totpd.config import Settings
from totpd.service.access import PERMISSIONS
from totpd.service.errors import ErrorReason
from totpd.service.policy import Policy
from totpd.v1 import audit_pb2, factor_pb2, lifecycle_pb2
from totpd.v1 import totp_service_pb2 as pb

ACCOUNT = "alice"
TABLES = ("factors", "accounts", "request_records", "recovery_codes")

OWNER = TestCaller("owner", tenants=("shop",))
MULTI = TestCaller("multi", tenants=("shop", "bank"))
LACKING = {
    p: TestCaller(f"lacks-{p}", permissions=[q for q in PERMISSIONS if q != p]) for p in PERMISSIONS
}
ONLY = {p: TestCaller(f"only-{p}", permissions=[p]) for p in PERMISSIONS}
EVERY_CALLER = [OWNER, MULTI, *LACKING.values(), *ONLY.values()]


@dataclass
class Factors:
    active: str
    pending: str
    secret: str


@dataclass(frozen=True)
class Rpc:
    method: str
    permission: str
    request: Callable[[Factors], Any]
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.method


RPCS = (
    Rpc("Enroll", "enroll", lambda f: pb.EnrollRequest(account_id=ACCOUNT)),
    Rpc(
        "ConfirmEnrollment",
        "enroll",
        lambda f: pb.ConfirmEnrollmentRequest(
            account_id=ACCOUNT, factor_id=f.pending, code="000000"
        ),
    ),
    Rpc("Verify", "verify", lambda f: pb.VerifyRequest(account_id=ACCOUNT, code="000000")),
    Rpc(
        "BatchVerify",
        "verify",
        lambda f: pb.BatchVerifyRequest(
            items=[pb.BatchVerifyItem(account_id=ACCOUNT, code="000000")]
        ),
    ),
    Rpc("GetFactor", "read", lambda f: pb.GetFactorRequest(account_id=ACCOUNT, factor_id=f.active)),
    Rpc("ListFactors", "read", lambda f: pb.ListFactorsRequest(account_id=ACCOUNT)),
    Rpc("ListAuditEvents", "admin", lambda f: audit_pb2.ListAuditEventsRequest()),
    Rpc(
        "GenerateRecoveryCodes",
        "enroll",
        lambda f: lifecycle_pb2.GenerateRecoveryCodesRequest(account_id=ACCOUNT),
    ),
    Rpc(
        "VerifyRecoveryCode",
        "verify",
        lambda f: lifecycle_pb2.VerifyRecoveryCodeRequest(
            account_id=ACCOUNT, code="zzzz-zzzz-zzzz"
        ),
    ),
    Rpc("Unlock", "admin", lambda f: lifecycle_pb2.UnlockRequest(account_id=ACCOUNT)),
    Rpc(
        "Resync",
        "enroll",
        lambda f: lifecycle_pb2.ResyncRequest(
            account_id=ACCOUNT, factor_id=f.active, code1="000000", code2="000001"
        ),
    ),
    Rpc("Disable", "enroll", lambda f: pb.DisableRequest(account_id=ACCOUNT, code="000000")),
    Rpc(
        "Disable",
        "admin",
        lambda f: pb.DisableRequest(account_id=ACCOUNT, force=True),
        "Disable(force)",
    ),
)


class Denials:
    """The `on_denied` hook: notes what the audit trail is told about each refusal,
    then hands it to the real one (`app.denial_recorder`) once the service exists."""

    def __init__(self) -> None:
        self.seen: list[tuple[CallScope, ErrorReason]] = []
        self.then: Callable[[CallScope, ErrorReason], None] | None = None
        self._lock = threading.Lock()

    def __call__(self, scope: CallScope, reason: ErrorReason) -> None:
        with self._lock:
            self.seen.append((scope, reason))
        if self.then is not None:
            self.then(scope, reason)


@pytest.fixture
def callers_settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path, Policy(backoff_base_seconds=0))
    callers_file = write_callers(tmp_path / "callers.toml", EVERY_CALLER)
    return replace(settings, callers_file=callers_file)


@pytest.fixture
def denials() -> Denials:
    return Denials()


@pytest.fixture
def served(engine: Engine, callers_settings: Settings, denials: Denials) -> Iterator[LiveServer]:
    service = mfa_service(engine, callers_settings, time.time)
    denials.then = denial_recorder(service)
    with running_server(callers_settings, service, on_denied=denials) as live:
        yield live


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables a call can change, in a stable order."""
    with engine.connect() as connection:
        return {
            table: sorted(
                (tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}"))), key=repr
            )
            for table in TABLES
        }


AUDITED = "caller, tenant, method, account_id, factor_id, verify_result, error_reason, status_code"


def audit_events_after(engine: Engine, after_id: int) -> list[tuple[Any, ...]]:
    """The audit events written after event `after_id`, oldest first."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(f"SELECT {AUDITED} FROM {AUDIT_TRAIL} WHERE id > :after ORDER BY id"),
            {"after": after_id},
        )
        return [tuple(row) for row in rows]


def last_audit_id(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(text("SELECT coalesce(max(id), 0) FROM audit_events")).scalar_one()
        )


def make_factors(live: LiveServer, secrets: Secrets) -> Factors:
    """An active and a pending factor of ACCOUNT in tenant shop, made by OWNER."""
    meta = OWNER.metadata()
    active = live.stub.Enroll(pb.EnrollRequest(account_id=ACCOUNT), metadata=meta, timeout=10)
    secrets.add(active.secret_base32, active.otpauth_uri)
    f = active.factor
    code = wire_code_at(active.secret_base32, f.algorithm, f.digits, f.period_seconds, time.time())
    secrets.add(code)
    confirmed = live.stub.ConfirmEnrollment(
        pb.ConfirmEnrollmentRequest(account_id=ACCOUNT, factor_id=f.factor_id, code=code),
        metadata=meta,
        timeout=10,
    )
    assert confirmed.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    pending = live.stub.Enroll(pb.EnrollRequest(account_id=ACCOUNT), metadata=meta, timeout=10)
    secrets.add(pending.secret_base32, pending.otpauth_uri)
    return Factors(f.factor_id, pending.factor.factor_id, active.secret_base32)


def access_lines(capture: LogCapture) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in capture.lines)
    return [line for line in lines if line.get("logger") == "totpd.access"]


# Each wrong caller: its metadata for an RPC, the reason, the caller and tenant the hook hears.
WRONG_CALLERS: dict[str, tuple[Callable[[Rpc], list[tuple[str, str]]], ErrorReason, str, str]] = {
    "no credential": (lambda rpc: [], ErrorReason.UNAUTHENTICATED, "", ""),
    "unknown token": (
        lambda rpc: TestCaller("stranger").metadata(),
        ErrorReason.UNAUTHENTICATED,
        "",
        "",
    ),
    "missing permission": (
        lambda rpc: LACKING[rpc.permission].metadata(),
        ErrorReason.PERMISSION_DENIED,
        "lacks-*",
        "shop",  # its one tenant
    ),
    "wrong tenant": (
        lambda rpc: OWNER.metadata("bank"),
        ErrorReason.PERMISSION_DENIED,
        "owner",
        "bank",
    ),
    "several tenants, none named": (
        lambda rpc: MULTI.metadata(),
        ErrorReason.TENANT_REQUIRED,
        "multi",
        "",
    ),
}
CALLER_REASONS = {
    f"ERROR_REASON_{r.value}"
    for r in (
        ErrorReason.UNAUTHENTICATED,
        ErrorReason.PERMISSION_DENIED,
        ErrorReason.TENANT_REQUIRED,
    )
}
STATUS = {
    ErrorReason.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorReason.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorReason.TENANT_REQUIRED: grpc.StatusCode.INVALID_ARGUMENT,
}


def test_every_rpc_refuses_every_wrong_caller_and_writes_nothing(
    served: LiveServer,
    engine: Engine,
    denials: Denials,
    secrets_seen: Secrets,
    no_secrets_in_logs: LogCapture,
) -> None:
    secrets_seen.add(*(caller.token or "" for caller in EVERY_CALLER))
    factors = make_factors(served, secrets_seen)
    before = snapshot(engine)
    events_before = last_audit_id(engine)
    expected_denials = []
    for rpc in RPCS:
        method = getattr(served.stub, rpc.method)
        for case, (metadata, reason, caller, tenant) in WRONG_CALLERS.items():
            if rpc.method == "ListAuditEvents" and reason is ErrorReason.TENANT_REQUIRED:
                continue  # it reads every tenant its caller holds: none need be named
            got = call_fails(method, rpc.request(factors), metadata=metadata(rpc))
            where = f"{rpc.name} / {case}"
            assert (got.code, got.reason) == (STATUS[reason], f"ERROR_REASON_{reason.value}"), where
            assert got.detail_count == 1 and got.domain == "totpd.v1", where
            assert ACCOUNT not in got.message, where  # never a hint about the account
            if reason is ErrorReason.TENANT_REQUIRED:
                assert got.metadata == {"field": "x-totpd-tenant"}, where
            if caller == "lacks-*":
                caller = LACKING[rpc.permission].name
                assert repr(rpc.permission) in got.message, where
            expected_denials.append((caller, tenant, rpc.method, reason))
    assert snapshot(engine) == before  # no factor, account or request record changed
    heard = [(s.caller, s.tenant, s.method, reason) for s, reason in denials.seen]
    assert heard == expected_denials
    # Exactly one audit event per denial (its own transaction), nothing else.
    assert audit_events_after(engine, events_before) == [
        (caller, tenant, method, "", None, None, reason.name, STATUS[reason].name)
        for caller, tenant, method, reason in expected_denials
    ]
    assert all(s.peer.startswith("ipv4:127.0.0.1:") for s, _ in denials.seen)
    refused = [line for line in access_lines(no_secrets_in_logs) if line["code"] != "OK"]
    assert len(refused) == len(expected_denials)


def test_every_rpc_is_allowed_to_a_caller_holding_just_its_permission(
    served: LiveServer, secrets_seen: Secrets, no_secrets_in_logs: LogCapture, denials: Denials
) -> None:
    secrets_seen.add(*(caller.token or "" for caller in EVERY_CALLER))
    factors = make_factors(served, secrets_seen)
    for rpc in RPCS:
        method = getattr(served.stub, rpc.method)
        for caller, tenant in ((ONLY[rpc.permission], None), (MULTI, "shop")):
            try:
                method(rpc.request(factors), metadata=caller.metadata(tenant), timeout=10)
            except grpc.RpcError as error:
                # Never refused for its caller: the second forced Disable finds nothing
                # left to disable.
                got = failure(error)
                assert got.reason not in CALLER_REASONS, rpc.name
                assert (rpc.method, got.code) == ("Disable", grpc.StatusCode.NOT_FOUND), rpc.name
    assert denials.seen == []
    lines = access_lines(no_secrets_in_logs)
    assert {(line["caller"], line["tenant"]) for line in lines} == {
        ("owner", "shop"),
        *((ONLY[rpc.permission].name, "shop") for rpc in RPCS),
        ("multi", "shop"),
    }
    # Force-disabled by only-admin: the account has no live factor left.
    listed = served.stub.ListFactors(
        pb.ListFactorsRequest(account_id=ACCOUNT), metadata=OWNER.metadata(), timeout=10
    )
    assert listed.factors == []


def test_health_and_reflection_need_no_caller(
    callers_settings: Settings, tmp_path: Path, engine: Engine
) -> None:
    with running_server(callers_settings, mfa_service(engine, callers_settings, time.time)) as live:
        health = health_pb2_grpc.HealthStub(live.channel)
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        got = call_fails(live.stub.ListFactors, pb.ListFactorsRequest(account_id=ACCOUNT))
        assert got.code is grpc.StatusCode.UNAUTHENTICATED


def test_without_a_callers_file_every_call_is_the_local_caller(
    live: LiveServer, secrets_seen: Secrets, no_secrets_in_logs: LogCapture
) -> None:
    """Every permission (force too) in every tenant; "local" on every access line."""
    enrolled = live.stub.Enroll(pb.EnrollRequest(account_id=ACCOUNT), timeout=10)
    secrets_seen.add(enrolled.secret_base32, enrolled.otpauth_uri)
    live.stub.ListFactors(
        pb.ListFactorsRequest(account_id=ACCOUNT), metadata=[("x-totpd-tenant", "bank")], timeout=10
    )
    live.stub.Disable(pb.DisableRequest(account_id=ACCOUNT, force=True), timeout=10)
    got = call_fails(
        live.stub.ListFactors,
        pb.ListFactorsRequest(account_id=ACCOUNT),
        metadata=[("x-totpd-tenant", "no spaces allowed")],
    )
    assert (got.code, got.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_INVALID_ARGUMENT",
    )
    assert got.metadata == {"field": "x-totpd-tenant"}
    lines = access_lines(no_secrets_in_logs)
    assert [(line["caller"], line["tenant"], line["code"]) for line in lines] == [
        ("local", "default", "OK"),
        ("local", "bank", "OK"),
        ("local", "default", "OK"),
        ("local", "", "INVALID_ARGUMENT"),
    ]


def test_a_wrong_code_is_counted_against_the_caller_by_name(
    tmp_path: Path, engine: Engine, secrets_seen: Secrets
) -> None:
    """The per-caller failure rate keys on the caller's name: two callers on one host
    have a bucket each."""
    policy = Policy(
        backoff_base_seconds=0,
        caller_failures_per_second=1,
        caller_failure_burst=2,
        max_batch_items=2,
    )
    settings = replace(make_settings(tmp_path, policy), callers_file=tmp_path / "callers.toml")
    first, second = TestCaller("first"), TestCaller("second")
    write_callers(settings.callers_file, [OWNER, first, second])  # type: ignore[arg-type]
    secrets_seen.add(*(c.token or "" for c in (OWNER, first, second)))
    with running_server(settings, mfa_service(engine, settings, time.time)) as live:
        factors = make_factors(live, secrets_seen)
        code = wrong_code(
            wire_code_at(factors.secret, factor_pb2.ALGORITHM_SHA1, 6, 30, time.time())
        )
        request = pb.VerifyRequest(account_id=ACCOUNT, code=code)
        for _ in range(2):
            live.stub.Verify(request, metadata=first.metadata(), timeout=10)
        got = call_fails(live.stub.Verify, request, metadata=first.metadata())
        assert got.reason == "ERROR_REASON_RATE_LIMITED"
        answer = live.stub.Verify(request, metadata=second.metadata(), timeout=10)
        assert answer.outcome.result == factor_pb2.VERIFY_RESULT_INVALID


def test_a_caller_lists_the_audit_events_of_its_tenants_only(
    served: LiveServer, engine: Engine, secrets_seen: Secrets
) -> None:
    make_factors(served, secrets_seen)  # events in shop, by owner
    bank = served.stub.Enroll(
        pb.EnrollRequest(account_id=ACCOUNT), metadata=MULTI.metadata("bank"), timeout=10
    )
    secrets_seen.add(bank.secret_base32, bank.otpauth_uri)

    def tenants_listed(caller: TestCaller, named: str | None, tenant: str = "") -> set[str]:
        request = audit_pb2.ListAuditEventsRequest(tenant=tenant, page_size=1000)
        listed = served.stub.ListAuditEvents(request, metadata=caller.metadata(named), timeout=10)
        return {event.tenant for event in listed.events}

    # multi holds shop and bank: whichever its call acts in, it reads both, and it
    # need not name one to list them.
    assert tenants_listed(MULTI, "bank") == {"shop", "bank"}
    assert tenants_listed(MULTI, None) == {"shop", "bank"}
    assert tenants_listed(MULTI, "shop", tenant="bank") == {"bank"}
    # owner holds shop only: bank's events stay hidden, and naming bank is refused.
    assert tenants_listed(OWNER, None) == {"shop"}
    before = last_audit_id(engine)
    got = call_fails(
        served.stub.ListAuditEvents,
        audit_pb2.ListAuditEventsRequest(tenant="bank"),
        metadata=OWNER.metadata(),
    )
    assert (got.code, got.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ERROR_REASON_PERMISSION_DENIED",
    )
    assert got.metadata == {"field": "tenant"}
    # Refused before the handler, as any call naming a tenant it does not hold: audited.
    assert audit_events_after(engine, before) == [
        (
            "owner",
            "bank",
            "ListAuditEvents",
            "",
            None,
            None,
            "PERMISSION_DENIED",
            "PERMISSION_DENIED",
        )
    ]
