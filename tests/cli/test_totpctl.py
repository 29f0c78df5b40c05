"""totpctl against a real in-process server: the README walkthrough, exit codes
(0 success/VALID, 1 negative verdict, 2 error with its reason) and the files."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.cli.conftest import Totpctl, field
from tests.rpc.conftest import Secrets
from tests.totp_oracle import wire_code_at, wrong_code
from totpd.v1 import factor_pb2
from totpd_client.cli.totpctl import main


def now_code(secret: str, offset_steps: int = 0) -> str:
    return wire_code_at(secret, factor_pb2.ALGORITHM_SHA1, 6, 30, time.time() + 30 * offset_steps)


def test_walkthrough_enroll_confirm_verify_list_disable(
    totpctl: Totpctl, secrets_seen: Secrets, tmp_path: Path
) -> None:
    png, svg = tmp_path / "qr.png", tmp_path / "qr.svg"
    enrolled = totpctl(
        "enroll", "alice", "--label", "Pixel 8", "--png", str(png), "--svg", str(svg)
    )
    assert enrolled.exit_code == 0, enrolled.err
    secret, uri = field(enrolled.out, "secret"), field(enrolled.out, "uri")
    secrets_seen.add(secret, uri)
    factor_id = field(enrolled.out, "factor id")
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    assert "▀" in enrolled.out or "█" in enrolled.out  # the terminal QR code
    assert field(enrolled.out, "state") == "PENDING"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert ET.parse(svg).getroot().tag.endswith("svg")
    assert f"totpctl confirm alice {factor_id}" in enrolled.out

    first = now_code(secret)
    secrets_seen.add(first)
    confirmed = totpctl("confirm", "alice", factor_id, first)
    assert confirmed.exit_code == 0, confirmed.err
    assert confirmed.out.startswith("VALID")
    assert field(confirmed.out, "state") == "ACTIVE"

    following = now_code(secret, 1)
    secrets_seen.add(following)
    valid = totpctl("verify", "alice", following)
    assert (valid.exit_code, valid.out.split()[0]) == (0, "VALID")
    replayed = totpctl("verify", "alice", following)
    assert (replayed.exit_code, replayed.out.split()[0]) == (1, "REPLAYED")
    invalid = totpctl("verify", "alice", wrong_code(following), "--factor", factor_id)
    assert (invalid.exit_code, invalid.out.split()[0]) == (1, "INVALID")
    assert "attempts left 8" in invalid.out  # the replay counted as a failure too

    listed = totpctl("list", "alice")
    assert listed.exit_code == 0
    assert re.search(rf"^{factor_id}\s+Pixel 8\s+totpd\s+SHA1/6/30s\s+ACTIVE", listed.out, re.M)
    got = totpctl("get", "alice", factor_id)
    assert got.exit_code == 0
    assert "label:       Pixel 8" in got.out
    for output in (listed.out, got.out):
        assert secret not in output and "otpauth" not in output

    disabling = now_code(secret, -1)
    secrets_seen.add(disabling)
    refused = totpctl("disable", "alice", "--code", disabling)  # an older step: a replay
    assert refused.exit_code == 1
    assert totpctl("list", "alice").out.count("ACTIVE") == 1
    forced = totpctl("disable", "alice", "--factor", factor_id, "--force")
    assert forced.exit_code == 0, forced.err
    assert f"disabled {factor_id} (Pixel 8)" in forced.out
    assert totpctl("list", "alice").out.strip() == "no factors for alice"
    assert "DISABLED" in totpctl("list", "alice", "--all").out


def test_errors_exit_2_with_the_reason(totpctl: Totpctl) -> None:
    malformed = totpctl("verify", "nobody", "12 345")
    assert malformed.exit_code == 2
    assert malformed.out == ""
    assert "INVALID_ARGUMENT ERROR_REASON_MALFORMED_CODE" in malformed.err
    assert "(field code)" in malformed.err

    missing = totpctl("get", "nobody", "0f8fad5b-d9cb-469f-a165-70867728950e")
    assert missing.exit_code == 2
    assert "NOT_FOUND ERROR_REASON_FACTOR_NOT_FOUND" in missing.err

    bad_issuer = totpctl("enroll", "bob", "--issuer", "Acme:Corp", "--no-qr")
    assert bad_issuer.exit_code == 2
    assert "ERROR_REASON_INVALID_ARGUMENT" in bad_issuer.err and "(field issuer)" in bad_issuer.err


def test_unreachable_server_exits_2(capfd: pytest.CaptureFixture[str]) -> None:
    exit_code = main(["--server", "127.0.0.1:1", "--timeout", "2", "list", "alice"])
    _, err = capfd.readouterr()
    assert exit_code == 2
    assert "UNAVAILABLE" in err
    assert "is totpd running at 127.0.0.1:1? see --server or TOTPCTL_SERVER" in err


def test_disable_needs_code_or_force(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["disable", "alice"])
    assert exited.value.code == 2
    assert "one of the arguments --code --force is required" in capfd.readouterr().err
