"""Unlock on the real store (both databases): what it clears for the whole account and
for one factor, its NOT_FOUND cases with nothing written, its one audit event; and
`totpd unlock --factor`, which runs the same code with caller "cli:<user>"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

import totpd
from tests.audit_rows import AUDIT_TRAIL
from tests.conftest import Clock
from tests.enrollments import enroll_many, wrong_for_all
from tests.totp_oracle import code_at
from totpd.crypto import Keyring
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import Enrollment, Unlocked, VerifyItem, VerifyResult
from totpd.store import FactorStore

TABLES = ("factors", "accounts", "audit_calls", "audit_events")
# Three failures in a row lock the account; no backoff, so each failure is compared.
POLICY = Policy(max_consecutive_failures=3, backoff_base_seconds=0)


@pytest.fixture
def service(engine: Engine, keyring: Keyring, clock: Clock) -> MfaService:
    return MfaService(FactorStore(engine), keyring, POLICY, clock)


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for `python -m totpd`: the package importable, no stray TOTPD_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOTPD_")}
    package_root = str(Path(totpd.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


def locked_account(service: MfaService, clock: Clock, account_id: str) -> list[Enrollment]:
    """Two factors, each with 3 failures; the account locked after its 3rd."""
    enrollments = enroll_many(service, clock, account_id, 2)
    wrong = wrong_for_all(enrollments, clock.now)
    outcomes = [service.verify(VerifyItem(account_id, wrong)) for _ in range(4)]
    assert outcomes[-1].result is VerifyResult.LOCKED and outcomes[-1].unlock_required
    return enrollments


def failures(service: MfaService, enrollment: Enrollment) -> int:
    factor_id = enrollment.factor.factor_id
    return service.deps.store.get_many([factor_id])[factor_id].failed_attempts


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as connection:
        return {
            table: sorted(
                (tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}"))), key=repr
            )
            for table in TABLES
        }


def unlock_events(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT caller, tenant, method, account_id, factor_id, verify_result,"
                f" error_reason, status_code FROM {AUDIT_TRAIL} WHERE method = 'Unlock' ORDER BY id"
            )
        )
        return [tuple(row) for row in rows]


def test_unlocking_the_account_clears_everything(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    first, second = locked_account(service, clock, account_id)
    unlocked = service.unlock(account_id)
    assert unlocked == Unlocked(
        lock_lifted=True, consecutive_failures_cleared=3, factors_cleared=2, budget_refilled=True
    )
    assert (failures(service, first), failures(service, second)) == (0, 0)
    state = service.deps.store.account_state(account_id)
    assert state is not None
    assert (state.locked_at, state.consecutive_failures, state.budget_tat) == (None, 0, 0)
    # The user signs in at once.
    outcome = service.verify(VerifyItem(account_id, code_at(first, clock.now)))
    assert outcome.result is VerifyResult.VALID
    assert unlock_events(engine) == [
        ("local", "default", "Unlock", account_id, None, None, None, "OK")
    ]


def test_unlocking_one_factor_leaves_the_others_failures(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    first, second = locked_account(service, clock, account_id)
    unlocked = service.unlock(account_id, first.factor.factor_id)
    assert unlocked == Unlocked(True, 3, 1, True)
    assert failures(service, first) == 0
    assert failures(service, second) == 3
    state = service.deps.store.account_state(account_id)
    assert state is not None and (state.locked_at, state.consecutive_failures) == (None, 0)
    assert unlock_events(engine) == [
        ("local", "default", "Unlock", account_id, first.factor.factor_id, None, None, "OK")
    ]


def test_an_account_with_nothing_to_clear_is_unlocked_with_nothing_cleared(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    enroll_many(service, clock, account_id, 1)
    assert service.unlock(account_id) == Unlocked(False, 0, 0, False)
    assert len(unlock_events(engine)) == 1


def test_unknown_accounts_and_factors_are_not_found_and_write_nothing(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    (mine,) = enroll_many(service, clock, account_id, 1)
    (theirs,) = enroll_many(service, clock, account_id + "-other", 1)
    before = snapshot(engine)
    cases = [
        (account_id + "-typo", None, ErrorReason.ACCOUNT_NOT_FOUND),
        (account_id, theirs.factor.factor_id, ErrorReason.FACTOR_NOT_FOUND),
        (account_id, "00000000-0000-4000-8000-000000000000", ErrorReason.FACTOR_NOT_FOUND),
        (account_id + "-typo", mine.factor.factor_id, ErrorReason.FACTOR_NOT_FOUND),
        ("", None, ErrorReason.INVALID_ARGUMENT),
        ("a b", None, ErrorReason.INVALID_ARGUMENT),
        (account_id, "not-a-uuid", ErrorReason.INVALID_ARGUMENT),
    ]
    for account, factor, reason in cases:
        with pytest.raises(TotpdError) as caught:
            service.unlock(account, factor)
        assert caught.value.reason is reason, (account, factor)
    assert snapshot(engine) == before


def test_totpd_unlock_clears_one_factor_and_records_the_operator(
    engine: Engine,
    service: MfaService,
    clock: Clock,
    account_id: str,
    subprocess_env: dict[str, str],
) -> None:
    first, second = locked_account(service, clock, account_id)
    url = engine.url.render_as_string(hide_password=False)

    def unlock(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "totpd", "unlock", "--database-url", url, *args]
        return subprocess.run(
            command, env=subprocess_env, capture_output=True, text=True, timeout=120, check=False
        )

    missing = unlock("--account", account_id, "--factor", "00000000-0000-4000-8000-000000000000")
    assert missing.returncode == 2
    assert "--factor: account" in missing.stderr and "has no factor" in missing.stderr
    bad = unlock("--account", account_id, "--factor", "nope")
    assert bad.returncode == 2 and "--factor:" in bad.stderr

    done = unlock("--account", account_id, "--factor", second.factor.factor_id)
    assert done.returncode == 0, done.stderr
    assert "1 factor(s) cleared" in done.stdout
    assert (failures(service, first), failures(service, second)) == (3, 0)
    (event,) = unlock_events(engine)
    assert event[0].startswith("cli:")
    assert event[2:5] == ("Unlock", account_id, second.factor.factor_id)
