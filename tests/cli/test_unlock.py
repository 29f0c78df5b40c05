"""`totpd unlock --account ID`: the operator's way out of the lock after too many
consecutive failures, on both databases, and end to end beside a live server."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.rpc.conftest import Secrets
from tests.rpc.harness import LiveServer
from tests.totp_oracle import code_at, wire_code_at, wrong_code
from totpd import calls
from totpd.calls import CallScope
from totpd.config import Settings
from totpd.crypto import Keyring
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import VerifyItem, VerifyResult
from totpd.store import FactorStore
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb

LOCK_AFTER_THREE = Policy(backoff_base_seconds=0, max_consecutive_failures=3)


def unlock(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "totpd", "unlock", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unlock_lifts_the_lock_and_says_what_it_did(
    engine: Engine,
    keyring: Keyring,
    clock: Clock,
    account_id: str,
    subprocess_env: dict[str, str],
) -> None:
    service = MfaService(FactorStore(engine), keyring, LOCK_AFTER_THREE, clock)
    phone = enroll_active(service, clock, account_id)
    for _ in range(3):
        wrong = wrong_code(code_at(phone, clock.now))
        assert service.verify(VerifyItem(account_id, wrong)).result is VerifyResult.INVALID
    locked = service.verify(VerifyItem(account_id, code_at(phone, clock.now)))
    assert locked.result is VerifyResult.LOCKED and locked.unlock_required
    url = engine.url.render_as_string(hide_password=False)

    done = unlock(subprocess_env, "--account", account_id, "--database-url", url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"account {account_id} unlocked: ")
    assert "lock after too many consecutive failures lifted (locked since 20" in done.stdout
    assert "3 consecutive failures cleared" in done.stdout
    assert "failures and timed locks of 1 factor(s) cleared" in done.stdout
    valid = service.verify(VerifyItem(account_id, code_at(phone, clock.now)))
    assert valid.result is VerifyResult.VALID

    again = unlock(subprocess_env, "--account", account_id, "--database-url", url)
    assert again.returncode == 0, again.stderr
    assert (
        again.stdout.strip()
        == f"account {account_id}: nothing to unlock (not locked, no failures counted)"
    )

    unknown = unlock(subprocess_env, "--account", account_id + "-typo", "--database-url", url)
    assert unknown.returncode == 2
    assert "has no factors and no attempt state: nothing to unlock (check the account id)" in (
        unknown.stderr
    )


def test_unlock_acts_in_the_tenant_it_names(
    engine: Engine,
    keyring: Keyring,
    clock: Clock,
    account_id: str,
    subprocess_env: dict[str, str],
) -> None:
    service = MfaService(FactorStore(engine), keyring, LOCK_AFTER_THREE, clock)
    with calls.scoped(CallScope(caller="t", tenant="shop")):
        phone = enroll_active(service, clock, account_id)
        for _ in range(3):
            service.verify(VerifyItem(account_id, wrong_code(code_at(phone, clock.now))))
    url = engine.url.render_as_string(hide_password=False)
    elsewhere = unlock(subprocess_env, "--account", account_id, "--database-url", url)
    assert elsewhere.returncode == 2
    assert f"account {account_id!r} (tenant 'default') has no factors" in elsewhere.stderr
    done = unlock(
        subprocess_env, "--account", account_id, "--tenant", "shop", "--database-url", url
    )
    assert done.returncode == 0, done.stderr
    assert "3 consecutive failures cleared" in done.stdout
    with calls.scoped(CallScope(caller="t", tenant="shop")):
        valid = service.verify(VerifyItem(account_id, code_at(phone, clock.now)))
    assert valid.result is VerifyResult.VALID
    bad = unlock(subprocess_env, "--account", account_id, "--tenant", "a b", "--database-url", url)
    assert bad.returncode == 2
    assert bad.stderr.startswith("totpd: error: --tenant: ")


@pytest.mark.parametrize("account", ["", "two words", "x" * 129])
def test_unlock_refuses_a_malformed_account_id(
    account: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    done = unlock(subprocess_env, "--account", account, "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith("totpd: error: --account: ")


def test_unlock_without_a_database(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    done = unlock(subprocess_env, "--account", "alice", "--database-url", url)
    assert done.returncode == 2
    assert done.stderr.startswith("totpd: error: cannot open the database: ")
    assert "Traceback" not in done.stderr


@pytest.fixture
def rpc_policy() -> Policy:
    return LOCK_AFTER_THREE


def test_a_locked_account_over_grpc_then_unlocked_by_the_operator(
    live: LiveServer,
    rpc_settings: Settings,
    subprocess_env: dict[str, str],
    secrets_seen: Secrets,
) -> None:
    response = live.stub.Enroll(pb.EnrollRequest(account_id="alice"), timeout=10)
    secrets_seen.add(response.secret_base32, response.otpauth_uri)
    factor = response.factor

    def code(offset: float = 0) -> str:
        now = time.time() + offset
        return wire_code_at(
            response.secret_base32, factor.algorithm, factor.digits, factor.period_seconds, now
        )

    confirmed = live.stub.ConfirmEnrollment(
        pb.ConfirmEnrollmentRequest(account_id="alice", factor_id=factor.factor_id, code=code()),
        timeout=10,
    )
    assert confirmed.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    for _ in range(3):
        outcome = live.stub.Verify(
            pb.VerifyRequest(account_id="alice", code=wrong_code(code())), timeout=10
        ).outcome
    assert outcome.unlock_required and outcome.attempts_left == 0
    locked = live.stub.Verify(pb.VerifyRequest(account_id="alice", code=code()), timeout=10).outcome
    assert locked.unlock_required and locked.retry_after_seconds == 0
    done = unlock(subprocess_env, "--account", "alice", "--data-dir", str(rpc_settings.data_dir))
    assert done.returncode == 0, done.stderr
    # The next step's code (the confirmation used the current one).
    after = live.stub.Verify(pb.VerifyRequest(account_id="alice", code=code(30)), timeout=10)
    assert after.outcome.result == factor_pb2.VERIFY_RESULT_VALID
