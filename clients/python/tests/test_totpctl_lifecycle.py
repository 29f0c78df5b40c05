"""totpctl recovery-codes, unlock, resync and list's new columns on the scripted server:
output, exit codes, and recovery codes on stdout only."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from fake_totpd import RECOVERY_CODES, Fail, FakeTotpd, serving

from totpd_client.cli.totpctl import main
from totpd_client.v1 import factor_pb2, lifecycle_pb2

INVALID = factor_pb2.VerifyOutcome(result=factor_pb2.VERIFY_RESULT_INVALID, attempts_left=7)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOTPCTL_TOKEN", "TOTPCTL_TENANT", "TOTPCTL_SERVER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> FakeTotpd:
    return FakeTotpd()


@pytest.fixture
def target(fake: FakeTotpd) -> Iterator[str]:
    with serving(fake) as address:
        yield address


def run(capsys: pytest.CaptureFixture[str], target: str, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--server", target, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_prints_the_codes_on_stdout_and_the_warning_on_stderr(
    capsys: pytest.CaptureFixture[str], target: str
) -> None:
    code, out, err = run(capsys, target, "recovery-codes", "generate", "alice")
    assert code == 0
    assert out.splitlines() == RECOVERY_CODES
    assert "shown only this once: store them somewhere safe" in err
    assert not any(c in err for c in RECOVERY_CODES)


def test_generate_json(capsys: pytest.CaptureFixture[str], target: str) -> None:
    code, out, err = run(capsys, target, "recovery-codes", "generate", "alice", "--json")
    assert code == 0
    assert json.loads(out) == {
        "codes": RECOVERY_CODES,
        "remaining": 10,
        "issued": 10,
        "generated_at": "2025-12-02T08:00:00.000000Z",
    }
    assert "store them somewhere safe" in err and RECOVERY_CODES[0] not in err


def test_verify_exit_codes_and_the_typed_words_rejoined(
    capsys: pytest.CaptureFixture[str], fake: FakeTotpd, target: str
) -> None:
    code, out, _ = run(capsys, target, "recovery-codes", "verify", "alice", "k7q2", "9xmf", "w000")
    assert (code, out) == (0, "VALID (recovery codes: 9 of 10 left)\n")
    assert fake.received[0].request.code == "k7q2 9xmf w000"
    fake.outcome = INVALID
    code, out, _ = run(capsys, target, "recovery-codes", "verify", "alice", "k7q2-9xmf-w999")
    assert (code, out) == (1, "INVALID (attempts left 7, recovery codes: 9 of 10 left)\n")
    fake.outcome = factor_pb2.VerifyOutcome(
        result=factor_pb2.VERIFY_RESULT_LOCKED, unlock_required=True
    )
    code, out, _ = run(capsys, target, "recovery-codes", "verify", "alice", "k7q2-9xmf-w001")
    assert code == 1
    assert out.startswith("LOCKED (attempts left 0, locked until an operator unlocks")


def test_unlock_says_what_it_cleared(
    capsys: pytest.CaptureFixture[str], fake: FakeTotpd, target: str
) -> None:
    code, out, _ = run(capsys, target, "unlock", "alice", "--factor", "f-1")
    assert code == 0
    assert out == (
        "UNLOCKED alice (lock lifted, 10 consecutive failure(s) cleared, 1 factor(s) cleared)\n"
    )
    assert fake.received[0].request.factor_id == "f-1"
    fake.unlocked = lifecycle_pb2.UnlockResponse()
    code, out, _ = run(capsys, target, "unlock", "bob")
    assert (code, out) == (0, "NOTHING TO UNLOCK (bob had no lock, failures or spent budget)\n")


def test_unlock_refused_exits_2_with_the_reason(
    capsys: pytest.CaptureFixture[str], fake: FakeTotpd, target: str
) -> None:
    fake.script = [Fail(grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_PERMISSION_DENIED")]
    code, out, err = run(capsys, target, "unlock", "alice")
    assert (code, out) == (2, "")
    assert "PERMISSION_DENIED ERROR_REASON_PERMISSION_DENIED" in err


def test_resync_shows_the_drift_and_takes_grouped_codes(
    capsys: pytest.CaptureFixture[str], fake: FakeTotpd, target: str
) -> None:
    fake.drift_steps = 10
    fake.outcome = factor_pb2.VerifyOutcome(
        result=factor_pb2.VERIFY_RESULT_VALID, factor_id="f-1", step_offset=10
    )
    code, out, _ = run(capsys, target, "resync", "alice", "f-1", "123 456", "654321")
    assert code == 0
    assert out.splitlines()[0] == "VALID (factor f-1, drift +10)"
    assert "drift:       +10 step(s)" in out
    req = fake.received[0].request
    assert (req.code1, req.code2) == ("123456", "654321")
    fake.outcome = INVALID
    code, out, _ = run(capsys, target, "resync", "alice", "f-1", "111111", "222222")
    assert (code, out.splitlines()[0]) == (1, "INVALID (attempts left 7)")


def test_list_shows_drift_and_recovery_codes_left(
    capsys: pytest.CaptureFixture[str], fake: FakeTotpd, target: str
) -> None:
    fake.drift_steps = -2
    code, out, _ = run(capsys, target, "list", "alice")
    assert code == 0
    header, row, recovery = out.splitlines()
    assert header.split() == [
        "FACTOR",
        "ID",
        "LABEL",
        "ISSUER",
        "PARAMETERS",
        "STATE",
        "DRIFT",
        "LAST",
        "USED",
    ]
    assert row.split()[:6] == ["f-1", "Pixel", "8", "totpd", "SHA1/6/30s", "ACTIVE"]
    assert row.split()[6] == "-2"
    assert recovery == "recovery codes: 9 of 10 left (generated 2025-12-02 08:00:00 UTC)"
    fake.recovery_status = lifecycle_pb2.RecoveryCodesStatus()
    assert run(capsys, target, "list", "alice")[1].splitlines()[-1] == "recovery codes: none"


def test_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["recovery-codes"], ["unlock"], ["resync"]):
        with pytest.raises(SystemExit):
            main([*args, "--help"])
        assert "usage: totpctl" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["recovery-codes"])
    assert exited.value.code == 2
