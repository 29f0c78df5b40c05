"""Recovery codes, unlock and resync against a real totpd; TOTP codes come from pyotp."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import grpc
import pytest
from test_flow import account, enroll_active, totp

from totpd_client import ErrorReason, FactorState, TotpdClient, TotpdError, VerifyResult

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_recovery_codes_generate_verify_replayed(client: TotpdClient) -> None:
    alice = account("recovery")
    enroll_active(client, alice)
    generated = client.generate_recovery_codes(alice)
    codes, status = generated.codes, generated.status
    assert len(codes) >= 10 and len(set(codes)) == len(codes)
    assert (status.remaining, status.issued) == (len(codes), len(codes))
    assert status.generated_at is not None
    assert not any(code in repr(generated) for code in codes)
    assert client.mfa_status(alice).recovery_codes == status

    first = client.verify_recovery_code(alice, codes[0])
    assert first.outcome.result is VerifyResult.VALID, first.outcome
    assert first.status.remaining == len(codes) - 1
    again = client.verify_recovery_code(alice, codes[0])
    assert again.outcome.result is VerifyResult.REPLAYED, again.outcome
    assert again.status.remaining == len(codes) - 1

    # Typed by hand: either case, without separators or with spaces.
    typed = codes[1].upper().replace("-", "")
    assert client.verify_recovery_code(alice, typed).outcome.result is VerifyResult.VALID
    spaced = codes[2].replace("-", " ")
    assert client.verify_recovery_code(alice, spaced).outcome.result is VerifyResult.VALID
    assert client.mfa_status(alice).recovery_codes.remaining == len(codes) - 3

    renewed = client.generate_recovery_codes(alice)
    assert not set(renewed.codes) & set(codes)
    old = client.verify_recovery_code(alice, codes[3])
    assert old.outcome.result is VerifyResult.INVALID, "a replaced set must stop working"
    assert old.status.remaining == len(renewed.codes)


def test_malformed_recovery_codes_are_invalid_argument_and_not_counted(
    strict_client: TotpdClient,
) -> None:
    bob = account("recovery-bad")
    enroll_active(strict_client, bob)
    codes = strict_client.generate_recovery_codes(bob).codes
    code = codes[0]
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in code)
    for bad in (code[:4] + "_" + code[4:], full_width, code + "\x00", "x" * 10_000, ""):
        with pytest.raises(TotpdError) as info:
            strict_client.verify_recovery_code(bob, bad)
        assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT, bad
        assert (info.value.reason, info.value.field) == (ErrorReason.MALFORMED_CODE, "code")
        if bad:
            assert bad not in str(info.value)
    # Five refusals, and three failures would have locked the account.
    checked = strict_client.verify_recovery_code(bob, code)
    assert checked.outcome.result is VerifyResult.VALID, checked.outcome
    assert checked.status.remaining == len(codes) - 1


def test_recovery_codes_need_an_account_with_an_active_factor(client: TotpdClient) -> None:
    nobody = account("recovery-nobody")
    with pytest.raises(TotpdError) as info:
        client.generate_recovery_codes(nobody)
    assert info.value.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)


def test_resync_with_codes_from_a_clock_five_minutes_ahead(client: TotpdClient) -> None:
    carol = account("resync")
    e = enroll_active(client, carol)
    factor_id = e.factor.factor_id
    ahead = time.time() + 300
    app = totp(e)
    lost = client.verify(carol, app.at(ahead))
    assert lost.result is VerifyResult.INVALID, "5 minutes ahead is outside the window"

    result = client.resync(carol, factor_id, app.at(ahead), app.at(ahead + 30))
    assert result.outcome.result is VerifyResult.VALID, result.outcome
    drift = result.factor.drift_steps
    assert 9 <= drift <= 11  # +10 or +11 steps, whichever the server counts from
    assert result.outcome.step_offset == drift
    assert client.get_factor(carol, factor_id).drift_steps == drift
    assert [f.drift_steps for f in client.list_factors(carol)] == [drift]

    later = client.verify(carol, app.at(ahead + 60))
    assert later.result is VerifyResult.VALID, later
    replayed = client.resync(carol, factor_id, app.at(ahead), app.at(ahead + 30))
    assert replayed.outcome.result is VerifyResult.REPLAYED, "used steps stay used"
    assert replayed.factor.drift_steps == drift


def test_resync_with_unrelated_codes_is_invalid_and_keeps_the_drift(client: TotpdClient) -> None:
    dave = account("resync-bad")
    e = enroll_active(client, dave)
    app = totp(e)
    far = time.time() + 3 * 3600  # beyond any search range
    result = client.resync(dave, e.factor.factor_id, app.at(far), app.at(far + 30))
    assert result.outcome.result is VerifyResult.INVALID, result.outcome
    assert result.factor.drift_steps == 0
    assert result.factor.state is FactorState.ACTIVE


def test_unlock_after_a_lock(strict_client: TotpdClient) -> None:
    erin = account("unlock")
    e = enroll_active(strict_client, erin)
    app = totp(e)
    wrong = f"{(int(app.at(time.time() + 30)) + 1) % 10**6:06d}"  # not the next code
    for _ in range(3):
        strict_client.verify(erin, wrong)
    locked = strict_client.verify(erin, app.at(time.time() + 30))
    assert locked.result is VerifyResult.LOCKED, locked

    result = strict_client.unlock(erin)
    assert result.lock_lifted
    assert result.consecutive_failures_cleared == 3
    assert result.factors_cleared == 1
    assert result.budget_refilled
    assert strict_client.unlock(erin).cleared_anything is False, "nothing left to clear"
    after = strict_client.verify(erin, app.at(time.time() + 30))
    assert after.result is VerifyResult.VALID, after


def test_wrong_recovery_codes_lock_the_account_and_a_right_one_opens_it(
    strict_client: TotpdClient,
) -> None:
    frank = account("recovery-lock")
    app = totp(enroll_active(strict_client, frank))
    codes = strict_client.generate_recovery_codes(frank).codes
    wrong = codes[0][::-1]  # well-formed, of no set
    assert wrong not in codes
    verdicts = [strict_client.verify_recovery_code(frank, wrong).outcome for _ in range(3)]
    assert [v.result for v in verdicts] == [VerifyResult.INVALID] * 3
    assert verdicts[2].unlock_required, "the third failure in a row locks the account"
    locked = strict_client.verify(frank, app.at(time.time() + 30))
    assert locked.result is VerifyResult.LOCKED and locked.unlock_required
    # The lock stops TOTP codes, not the recovery code: it is the way back in.
    opened = strict_client.verify_recovery_code(frank, codes[0])
    assert opened.outcome.result is VerifyResult.VALID, opened.outcome
    assert opened.status.remaining == len(codes) - 1
    after = strict_client.verify(frank, app.at(time.time() + 30))
    assert after.result is VerifyResult.VALID, after


def test_the_step_up_example_takes_app_and_recovery_codes(
    client: TotpdClient, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("step_up", EXAMPLES / "step_up.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    grace = account("step-up")
    e = enroll_active(client, grace)
    codes = client.generate_recovery_codes(grace).codes
    assert example.step_up(client, grace, totp(e).at(time.time() + 30)) is True
    assert example.step_up(client, grace, codes[0]) is True
    assert example.step_up(client, grace, codes[0]) is False
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "step-up granted",
        f"step-up granted; {len(codes) - 1} recovery codes left",
        "that recovery code was already used",
    ]
