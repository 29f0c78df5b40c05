"""totpctl's --token, --token-file, TOTPCTL_TOKEN, --tenant and `audit`, on a recording fake."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from fake_totpd import Fail, FakeTotpd, serving
from test_audit import events

from totpd_client.cli.commands import moment
from totpd_client.cli.totpctl import main

TOKEN = "tok_cli_0123456789"  # noqa: S105 (a test token)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOTPCTL_TOKEN", "TOTPCTL_TENANT", "TOTPCTL_SERVER"):
        monkeypatch.delenv(name, raising=False)


def test_env_token_and_tenant_option_reach_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOTPCTL_TOKEN", TOKEN)
    fake = FakeTotpd()
    with serving(fake) as target:
        assert main(["--server", target, "--tenant", "shop", "verify", "alice", "123456"]) == 0
    md = fake.received[0].metadata
    assert md["authorization"] == f"Bearer {TOKEN}"
    assert md["x-totpd-tenant"] == "shop"


def test_token_file_wins_and_is_stripped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOTPCTL_TOKEN", "from-env")
    (tmp_path / "token").write_text(TOKEN + "\n")
    fake = FakeTotpd()
    with serving(fake) as target:
        main(["--server", target, "--token-file", str(tmp_path / "token"), "verify", "a", "1"])
    assert fake.received[0].metadata["authorization"] == f"Bearer {TOKEN}"


def test_a_denied_call_prints_the_reason_but_never_the_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeTotpd(
        script=[Fail(grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_PERMISSION_DENIED")]
    )
    with serving(fake) as target:
        code = main(["--server", target, "--token", TOKEN, "verify", "alice", "123456"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "PERMISSION_DENIED ERROR_REASON_PERMISSION_DENIED" in err
    assert TOKEN not in out + err


def test_no_token_in_plaintext_beyond_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--server", "192.0.2.1:50051", "--token", TOKEN, "verify", "alice", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "refusing to send the token in plaintext to 192.0.2.1:50051" in err
    assert TOKEN not in err


def test_an_empty_token_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "token").write_text("\n")
    code = main(["--token-file", str(tmp_path / "token"), "verify", "alice", "1"])
    assert code == 2
    assert "is empty" in capsys.readouterr().err


def test_audit_pages_through_everything_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeTotpd(audit_events=events(230))
    with serving(fake) as target:
        assert main(["--server", target, "audit", "--tenant", "shop", "--method", "Verify"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 230
    assert lines[0] == (
        "2025-12-02T08:00:00.123456Z #1 method=Verify caller=payments tenant=shop account=user-0"
        " result=VALID offset=+0 status=OK peer=ipv4:127.0.0.1:4242"
    )
    assert len(fake.received) == 3
    first = fake.received[0]
    assert (first.request.tenant, first.request.method) == ("shop", "Verify")
    assert first.metadata["x-totpd-tenant"] == "shop"  # audit --tenant names the call's tenant


def test_audit_json_lines_with_limit_and_time_range(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeTotpd(audit_events=events(5))
    with serving(fake) as target:
        args = ["--server", target, "audit", "--json", "--limit", "2"]
        args += ["--account", "user-1", "--caller", "payments"]
        args += ["--since", "2025-12-01", "--until", "2025-12-02T09:00:00+01:00"]
        assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["event_id"] for r in rows] == [1, 2]
    assert rows[0]["time"] == "2025-12-02T08:00:00.123456Z"
    assert rows[0]["verify_result"] == "VALID"
    assert rows[0]["error_reason"] == ""
    req = fake.received[0].request
    assert (req.account_id, req.caller, req.page_size) == ("user-1", "payments", 2)
    assert req.start_time_unix_micros == 1_764_547_200_000_000
    assert req.end_time_unix_micros == 1_764_662_400_000_000


def test_ages_and_bad_times() -> None:
    assert abs(moment("2h") - (datetime.now(UTC) - timedelta(hours=2))) < timedelta(seconds=5)
    assert moment("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(Exception, match="not a time"):
        moment("yesterday")
