"""`totpd audit export`: JSON lines with stable keys, selected by time and tenant, on
both databases; never a secret or a code; bad times and an existing file refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.totp_oracle import code_at, wrong_code
from totpd import calls
from totpd.cli.audit import EXPORT_KEYS
from totpd.service.mfa import MfaService
from totpd.service.types import VerifyItem


def export(env: dict[str, str], url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "totpd", "audit", "export", "--database-url", url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_export_writes_one_line_per_event(
    engine: Engine,
    service: MfaService,
    clock: Clock,
    account_id: str,
    subprocess_env: dict[str, str],
    tmp_path: Path,
) -> None:
    with calls.scoped(calls.CallScope(calls.LOCAL_CALLER, "bank")):
        phone = enroll_active(service, clock, account_id)  # Enroll, ConfirmEnrollment
    code = code_at(phone, clock.now)
    with calls.scoped(calls.CallScope("payments", "bank", "ipv4:10.1.2.3:4")):
        service.verify(VerifyItem(account_id, wrong_code(code)))
        service.verify(VerifyItem(account_id, code))
    url = engine.url.render_as_string(hide_password=False)

    done = export(subprocess_env, url, "--since", "2026-11-01T00:00:00Z")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4
    events = [json.loads(line) for line in lines]
    assert all(tuple(event) == EXPORT_KEYS for event in events)
    assert [e["method"] for e in events] == ["Enroll", "ConfirmEnrollment", "Verify", "Verify"]
    assert [e["verify_result"] for e in events] == [None, "VALID", "INVALID", "VALID"]
    assert events[3]["caller"] == "payments" and events[3]["tenant"] == "bank"
    assert events[3]["peer"] == "ipv4:10.1.2.3:4"
    assert events[3]["time"].startswith("2026-11-")
    assert events[3]["time"].endswith("Z")
    for secret in (phone.secret_base32, phone.otpauth_uri, code, wrong_code(code)):
        assert secret not in done.stdout

    only_bank = export(subprocess_env, url, "--since", "30d", "--tenant", "bank")
    assert only_bank.stdout.splitlines() == lines  # the account lives in tenant bank
    assert {e["tenant"] for e in events} == {"bank"}
    other = export(subprocess_env, url, "--since", "30d", "--tenant", "default")
    assert other.returncode == 0 and other.stdout == ""
    until = export(subprocess_env, url, "--since", "2026-11-01", "--until", "2026-11-02")
    assert until.returncode == 0 and until.stdout == ""

    out = tmp_path / "audit.jsonl"
    assert export(subprocess_env, url, "--since", "2026-11-01", "--out", str(out)).returncode == 0
    assert out.read_text().splitlines() == lines
    again = export(subprocess_env, url, "--since", "2026-11-01", "--out", str(out))
    assert again.returncode == 2 and "never overwritten" in again.stderr


def test_a_bad_time_is_refused_with_the_forms_it_takes(
    engine: Engine, subprocess_env: dict[str, str]
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    done = export(subprocess_env, url, "--since", "yesterday")
    assert done.returncode == 2
    assert "ISO 8601" in done.stderr and "24h" in done.stderr
