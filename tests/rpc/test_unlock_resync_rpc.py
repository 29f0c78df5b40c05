"""Unlock and Resync over a real gRPC server on both databases: their answers, their
statuses for bad input and unknown ids, who may call them (a callers file), and an
outage answered UNAVAILABLE."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.rpc.callers_files import TestCaller, write_callers
from tests.rpc.conftest import Secrets, make_settings, mfa_service, sqlite_file_gone
from tests.rpc.harness import LiveServer, call_fails, running_server
from tests.totp_oracle import wire_code_at, wrong_code
from totpd.config import Settings
from totpd.service.access import PERMISSIONS
from totpd.service.policy import Policy
from totpd.store import migrate, open_engine
from totpd.v1 import audit_pb2, factor_pb2, lifecycle_pb2
from totpd.v1 import totp_service_pb2 as pb

ACCOUNT = "alice"
UNKNOWN_FACTOR = "00000000-0000-4000-8000-000000000000"
# Three failures in a row lock the account; no backoff.
POLICY = Policy(max_consecutive_failures=3, backoff_base_seconds=0)
ADMIN = TestCaller("admin", permissions=PERMISSIONS)
NOT_ADMIN = TestCaller("app", permissions=[p for p in PERMISSIONS if p != "admin"])
VERIFIER = TestCaller("verifier", permissions=["verify", "read"])


class Account:
    """An active factor of ACCOUNT, confirmed a day before the clock's now."""

    def __init__(self, live: LiveServer, clock: Clock, secrets: Secrets, **call: object) -> None:
        self.live, self.clock, self.secrets, self.call = live, clock, secrets, call
        enrolled = live.stub.Enroll(pb.EnrollRequest(account_id=ACCOUNT), timeout=10, **call)
        secrets.add(enrolled.secret_base32, enrolled.otpauth_uri)
        self.secret = enrolled.secret_base32
        self.factor_id = enrolled.factor.factor_id
        confirmed = live.stub.ConfirmEnrollment(
            pb.ConfirmEnrollmentRequest(
                account_id=ACCOUNT, factor_id=self.factor_id, code=self.code(0)
            ),
            timeout=10,
            **call,
        )
        assert confirmed.outcome.result == factor_pb2.VERIFY_RESULT_VALID
        clock.advance(86400)

    def code(self, app_ahead: float) -> str:
        code = wire_code_at(
            self.secret, factor_pb2.ALGORITHM_SHA1, 6, 30, self.clock.now + app_ahead
        )
        self.secrets.add(code)
        return code

    def resync_request(self, app_ahead: float) -> lifecycle_pb2.ResyncRequest:
        return lifecycle_pb2.ResyncRequest(
            account_id=ACCOUNT,
            factor_id=self.factor_id,
            code1=self.code(app_ahead - 30),
            code2=self.code(app_ahead),
        )

    def lock(self) -> None:
        wrong = wrong_code(self.code(0))
        for _ in range(3):
            self.live.stub.Verify(
                pb.VerifyRequest(account_id=ACCOUNT, code=wrong), timeout=10, **self.call
            )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, POLICY)


@pytest.fixture
def live(engine: Engine, settings: Settings, clock: Clock) -> Iterator[LiveServer]:
    with running_server(settings, mfa_service(engine, settings, clock)) as server:
        yield server


def test_resync_then_verify_at_the_drifted_time(
    live: LiveServer, clock: Clock, secrets_seen: Secrets
) -> None:
    account = Account(live, clock, secrets_seen)
    response = live.stub.Resync(account.resync_request(-420), timeout=10)
    assert response.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert response.outcome.step_offset == -14
    assert response.outcome.factor_id == account.factor_id
    assert response.factor.drift_steps == -14
    got = live.stub.GetFactor(
        pb.GetFactorRequest(account_id=ACCOUNT, factor_id=account.factor_id), timeout=10
    )
    assert got.factor.drift_steps == -14
    clock.advance(30)
    verified = live.stub.Verify(pb.VerifyRequest(account_id=ACCOUNT, code=account.code(-420)))
    assert verified.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert verified.outcome.step_offset == -14
    replayed = live.stub.Resync(account.resync_request(-420), timeout=10)
    assert replayed.outcome.result == factor_pb2.VERIFY_RESULT_REPLAYED
    assert replayed.factor.drift_steps == -14


def test_resync_bad_input_and_unknown_factors(
    live: LiveServer, clock: Clock, secrets_seen: Secrets
) -> None:
    account = Account(live, clock, secrets_seen)
    good = account.resync_request(300)
    cases = {
        "code1 with a space": (
            replace_field(good, code1=" " + good.code1[1:]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_MALFORMED_CODE",
            "code1",
        ),
        "code2 full-width": (
            replace_field(good, code2="１２３４５６"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_MALFORMED_CODE",
            "code2",
        ),
        "seven digits": (
            replace_field(good, code2=good.code2 + "1"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_MALFORMED_CODE",
            "code2",
        ),
        "no factor id": (
            replace_field(good, factor_id=""),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_ARGUMENT",
            "factor_id",
        ),
        "unknown factor": (
            replace_field(good, factor_id=UNKNOWN_FACTOR),
            grpc.StatusCode.NOT_FOUND,
            "ERROR_REASON_FACTOR_NOT_FOUND",
            "factor_id",
        ),
        "another account": (
            replace_field(good, account_id="bob"),
            grpc.StatusCode.NOT_FOUND,
            "ERROR_REASON_FACTOR_NOT_FOUND",
            "factor_id",
        ),
    }
    answers = {name: call_fails(live.stub.Resync, request) for name, (request, *_) in cases.items()}
    assert {name: (a.code, a.reason, a.metadata.get("field")) for name, a in answers.items()} == {
        name: tuple(expected) for name, (_, *expected) in cases.items()
    }
    pending = live.stub.Enroll(pb.EnrollRequest(account_id=ACCOUNT, label="tablet"), timeout=10)
    secrets_seen.add(pending.secret_base32, pending.otpauth_uri)
    not_active = call_fails(
        live.stub.Resync, replace_field(good, factor_id=pending.factor.factor_id)
    )
    assert (not_active.code, not_active.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ERROR_REASON_FACTOR_NOT_ACTIVE",
    )
    # Nothing was counted: the good pair still resynchronises, with every attempt left.
    done = live.stub.Resync(good, timeout=10)
    assert done.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert done.outcome.attempts_left == POLICY.lock_after_failures


def replace_field(
    request: lifecycle_pb2.ResyncRequest, **fields: str
) -> lifecycle_pb2.ResyncRequest:
    copy = lifecycle_pb2.ResyncRequest()
    copy.CopyFrom(request)
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy


def test_unlock_lifts_the_lock_and_says_what_it_cleared(
    live: LiveServer, clock: Clock, secrets_seen: Secrets
) -> None:
    account = Account(live, clock, secrets_seen)
    account.lock()
    locked = live.stub.Resync(account.resync_request(300), timeout=10)
    assert locked.outcome.result == factor_pb2.VERIFY_RESULT_LOCKED
    assert locked.outcome.unlock_required

    unlocked = live.stub.Unlock(
        lifecycle_pb2.UnlockRequest(account_id=ACCOUNT, factor_id=account.factor_id), timeout=10
    )
    assert (
        unlocked.lock_lifted,
        unlocked.consecutive_failures_cleared,
        unlocked.factors_cleared,
        unlocked.budget_refilled,
    ) == (True, 3, 1, True)
    again = live.stub.Unlock(lifecycle_pb2.UnlockRequest(account_id=ACCOUNT), timeout=10)
    assert again == lifecycle_pb2.UnlockResponse()
    resynced = live.stub.Resync(account.resync_request(300), timeout=10)
    assert resynced.outcome.result == factor_pb2.VERIFY_RESULT_VALID


def test_unlock_not_found_and_bad_input(
    live: LiveServer, clock: Clock, secrets_seen: Secrets
) -> None:
    account = Account(live, clock, secrets_seen)
    cases = {
        "unknown account": (
            lifecycle_pb2.UnlockRequest(account_id="nobody"),
            grpc.StatusCode.NOT_FOUND,
            "ERROR_REASON_ACCOUNT_NOT_FOUND",
        ),
        "another account's factor": (
            lifecycle_pb2.UnlockRequest(account_id="bob", factor_id=account.factor_id),
            grpc.StatusCode.NOT_FOUND,
            "ERROR_REASON_FACTOR_NOT_FOUND",
        ),
        "unknown factor": (
            lifecycle_pb2.UnlockRequest(account_id=ACCOUNT, factor_id=UNKNOWN_FACTOR),
            grpc.StatusCode.NOT_FOUND,
            "ERROR_REASON_FACTOR_NOT_FOUND",
        ),
        "no account": (
            lifecycle_pb2.UnlockRequest(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_ARGUMENT",
        ),
        "malformed factor": (
            lifecycle_pb2.UnlockRequest(account_id=ACCOUNT, factor_id="x" * 10_000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_ARGUMENT",
        ),
    }
    answers = {name: call_fails(live.stub.Unlock, request) for name, (request, *_) in cases.items()}
    assert {name: (a.code, a.reason) for name, a in answers.items()} == {
        name: tuple(expected) for name, (_, *expected) in cases.items()
    }


@pytest.fixture
def callers_live(
    engine: Engine, tmp_path: Path, clock: Clock, settings: Settings
) -> Iterator[LiveServer]:
    callers = write_callers(tmp_path / "callers.toml", [ADMIN, NOT_ADMIN, VERIFIER])
    with_callers = replace(settings, callers_file=callers)
    with running_server(with_callers, mfa_service(engine, with_callers, clock)) as server:
        yield server


def test_unlock_needs_admin_and_resync_needs_enroll(
    callers_live: LiveServer, clock: Clock, secrets_seen: Secrets
) -> None:
    account = Account(callers_live, clock, secrets_seen, metadata=ADMIN.metadata())
    account.lock()
    unlock = lifecycle_pb2.UnlockRequest(account_id=ACCOUNT)
    stub = callers_live.stub
    for caller in (NOT_ADMIN, VERIFIER):
        denied = call_fails(stub.Unlock, unlock, metadata=caller.metadata())
        assert denied.code == grpc.StatusCode.PERMISSION_DENIED, caller.name
    denied = call_fails(stub.Resync, account.resync_request(300), metadata=VERIFIER.metadata())
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    # Nothing was unlocked by the refused calls; the admin's call does it.
    assert stub.Unlock(unlock, metadata=ADMIN.metadata(), timeout=10).lock_lifted
    resynced = stub.Resync(account.resync_request(300), metadata=NOT_ADMIN.metadata(), timeout=10)
    assert resynced.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    events = {
        method: [
            (e.caller, e.tenant, e.account_id, e.factor_id, e.verify_result, e.step_offset)
            for e in stub.ListAuditEvents(
                audit_pb2.ListAuditEventsRequest(method=method),
                metadata=ADMIN.metadata(),
                timeout=10,
            ).events
        ]
        for method in ("Unlock", "Resync")
    }
    assert events == {
        "Unlock": [("admin", "shop", ACCOUNT, "", factor_pb2.VERIFY_RESULT_UNSPECIFIED, 0)],
        "Resync": [("app", "shop", ACCOUNT, account.factor_id, factor_pb2.VERIFY_RESULT_VALID, 10)],
    }


def test_an_outage_is_unavailable(tmp_path: Path, clock: Clock, secrets_seen: Secrets) -> None:
    settings = make_settings(tmp_path, POLICY)
    database = tmp_path / "outage.sqlite3"
    engine = open_engine(f"sqlite:///{database}")
    migrate(engine)
    try:
        with running_server(settings, mfa_service(engine, settings, clock)) as live:
            account = Account(live, clock, secrets_seen)
            request = account.resync_request(300)
            engine.dispose()
            with sqlite_file_gone(database):
                for method, message in (
                    (live.stub.Resync, request),
                    (live.stub.Unlock, lifecycle_pb2.UnlockRequest(account_id=ACCOUNT)),
                ):
                    failed = call_fails(method, message)
                    assert (failed.code, failed.reason) == (
                        grpc.StatusCode.UNAVAILABLE,
                        "ERROR_REASON_STORE_UNAVAILABLE",
                    )
            resynced = live.stub.Resync(request, timeout=10)
            assert resynced.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    finally:
        engine.dispose()
