"""totpctl as a new user types it, against a real in-process server: codes grouped
as the app shows them, upper-case algorithm names, a forced disable, a closed pipe."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from tests.cli.conftest import Totpctl, field
from tests.rpc.conftest import Secrets
from tests.rpc.harness import LiveServer, failure
from tests.totp_oracle import wire_code_at
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb
from totpd_client.cli.commands import app_code
from totpd_client.cli.totpctl import EXIT_BROKEN_PIPE


def enroll_active(totpctl: Totpctl, secrets_seen: Secrets, account: str) -> tuple[str, str]:
    """An ACTIVE SHA1/6/30 factor, confirmed with the current code: (factor id, secret)."""
    enrolled = totpctl("enroll", account, "--no-qr")
    assert enrolled.exit_code == 0, enrolled.err
    secret, factor_id = field(enrolled.out, "secret"), field(enrolled.out, "factor id")
    secrets_seen.add(secret, field(enrolled.out, "uri"))
    first = step_code(secret, 0)
    secrets_seen.add(first)
    assert totpctl("confirm", account, factor_id, first).exit_code == 0
    return factor_id, secret


def step_code(secret: str, offset_steps: int) -> str:
    return wire_code_at(secret, factor_pb2.ALGORITHM_SHA1, 6, 30, time.time() + 30 * offset_steps)


def grouped(code: str) -> str:
    half = len(code) // 2
    return f"{code[:half]} {code[half:]}"


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        (["123 456"], "123456"),
        (["123", "456"], "123456"),
        (["1234 5678"], "12345678"),
        (["123456"], "123456"),
        (["12 34 56"], "12 34 56"),
        (["123  456"], "123  456"),
        ([" 123456"], " 123456"),
        (["123-456"], "123-456"),
        (["１２３ ４５６"], "１２３ ４５６"),  # full-width digits: the server explains
    ],
)
def test_only_one_grouping_space_between_ascii_digits_is_removed(
    typed: list[str], sent: str
) -> None:
    assert app_code(typed) == sent


@pytest.mark.parametrize("quoted", [True, False], ids=["in quotes", "as two words"])
def test_a_code_typed_as_the_app_shows_it_is_accepted(
    totpctl: Totpctl, secrets_seen: Secrets, quoted: bool
) -> None:
    _, secret = enroll_active(totpctl, secrets_seen, "spaced")
    code = step_code(secret, 1)
    secrets_seen.add(code)
    typed = [grouped(code)] if quoted else grouped(code).split()
    verified = totpctl("verify", "spaced", *typed)
    assert (verified.exit_code, verified.out.split()[0]) == (0, "VALID"), verified.err
    assert "step offset +1" in verified.out


def test_confirm_and_disable_take_a_grouped_code_too(
    totpctl: Totpctl, secrets_seen: Secrets
) -> None:
    enrolled = totpctl("enroll", "grouped", "--no-qr")
    secret, factor_id = field(enrolled.out, "secret"), field(enrolled.out, "factor id")
    secrets_seen.add(secret, field(enrolled.out, "uri"))
    first, later = step_code(secret, 0), step_code(secret, 1)
    secrets_seen.add(first, later)

    confirmed = totpctl("confirm", "grouped", factor_id, grouped(first))
    assert confirmed.exit_code == 0, confirmed.err
    assert field(confirmed.out, "state") == "ACTIVE"
    disabled = totpctl("disable", "grouped", "--code", grouped(later))
    assert disabled.exit_code == 0, disabled.err
    assert disabled.out.startswith("VALID")
    assert f"disabled {factor_id}" in disabled.out


def test_the_api_still_refuses_a_grouped_code(live: LiveServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        live.stub.Verify(pb.VerifyRequest(account_id="strict", code="123 456"), timeout=5)
    refused = failure(caught.value)
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_MALFORMED_CODE",
    )


def test_a_code_with_two_spaces_is_sent_as_typed_and_refused(totpctl: Totpctl) -> None:
    refused = totpctl("verify", "nobody", "12 34 56")
    assert refused.exit_code == 2
    assert "INVALID_ARGUMENT ERROR_REASON_MALFORMED_CODE" in refused.err
    assert "(field code)" in refused.err


@pytest.mark.parametrize(("typed", "shown"), [("SHA256", "SHA256"), ("Sha512", "SHA512")])
def test_the_algorithm_name_is_case_insensitive(
    totpctl: Totpctl, secrets_seen: Secrets, typed: str, shown: str
) -> None:
    enrolled = totpctl("enroll", "algo", "--algorithm", typed, "--no-qr")
    assert enrolled.exit_code == 0, enrolled.err
    secrets_seen.add(field(enrolled.out, "secret"), field(enrolled.out, "uri"))
    assert f"parameters:  {shown}, 6 digits, 30 s" in enrolled.out
    assert f"algorithm={shown}" in field(enrolled.out, "uri")


def test_an_unknown_algorithm_is_a_usage_error(
    totpctl: Totpctl, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        totpctl("enroll", "algo", "--algorithm", "MD5", "--no-qr")
    assert exited.value.code == 2
    assert "invalid choice: 'md5'" in capfd.readouterr().err


def test_a_forced_disable_says_so_instead_of_a_verdict(
    totpctl: Totpctl, secrets_seen: Secrets
) -> None:
    factor_id, _ = enroll_active(totpctl, secrets_seen, "forced")
    forced = totpctl("disable", "forced", "--force")
    assert forced.exit_code == 0, forced.err
    lines = forced.out.splitlines()
    assert lines[0] == "DISABLED BY FORCE (no code checked, 1 factor(s))"
    assert "VALID" not in forced.out and "step offset" not in forced.out
    assert lines[1:] == [f"disabled {factor_id} (Authenticator)"]
    assert totpctl("list", "forced").out.strip() == "no factors for forced"


@pytest.mark.parametrize("command", [["list", "piped", "--all"], ["enroll", "piped"]])
def test_a_reader_that_leaves_early_ends_totpctl_quietly(
    live: LiveServer,
    totpctl: Totpctl,
    secrets_seen: Secrets,
    subprocess_env: dict[str, str],
    command: list[str],
) -> None:
    enroll_active(totpctl, secrets_seen, "piped")
    script = Path(sys.executable).with_name("totpctl")  # installed by `make install`
    assert script.exists()
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before totpctl writes a byte
    try:
        proc = subprocess.run(
            [str(script), "--server", live.address, *command],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=subprocess_env,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    err = proc.stderr.decode()
    assert proc.returncode == EXIT_BROKEN_PIPE == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert err == ""


def test_enroll_without_segno_says_so_before_creating_a_factor(
    live: LiveServer, totpctl: Totpctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "segno", None)  # as if the [cli] extra were missing
    refused = totpctl("enroll", "no-segno")
    assert (refused.exit_code, refused.out) == (2, "")
    assert "pip install 'totpd-client[cli]', or pass --no-qr" in refused.err
    listed = live.stub.ListFactors(pb.ListFactorsRequest(account_id="no-segno"), timeout=5)
    assert list(listed.factors) == []
