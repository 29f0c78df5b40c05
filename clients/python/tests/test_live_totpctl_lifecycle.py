"""totpctl recovery-codes, unlock, resync and list end to end: the console script in a
subprocess against a real totpd, its output and exit codes, and no code in any stderr
or in the server's log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_flow import account, enroll_active, totp

from totpd_client import TotpdClient


@dataclass
class Totpctl:
    """`totpctl --server TARGET ...` as a person runs it; remembers every stderr."""

    target: str
    log: Path
    stderr: list[str] = field(default_factory=list)

    def __call__(self, *args: str) -> tuple[int, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOTPCTL_")}
        done = subprocess.run(  # noqa: S603 (our own console script)
            [sys.executable, "-m", "totpd_client.cli.totpctl", "--server", self.target, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
        self.stderr.append(done.stderr)
        return done.returncode, done.stdout


@pytest.fixture
def totpctl(strict_totpd: tuple[str, Path]) -> Totpctl:
    return Totpctl(*strict_totpd)


def appears(value: str, text: str) -> bool:
    """`value` as a whole token: a 6-digit code inside a longer number does not count."""
    return re.search(rf"(?<![0-9A-Za-z.]){re.escape(value)}(?![0-9A-Za-z])", text) is not None


def test_recovery_codes_from_generate_to_replayed(
    totpctl: Totpctl, strict_client: TotpdClient
) -> None:
    alice = account("ctl-recovery")
    enroll_active(strict_client, alice)
    exit_code, out = totpctl("recovery-codes", "generate", alice)
    assert exit_code == 0, totpctl.stderr[-1]
    codes = out.splitlines()
    assert len(codes) >= 10 and all(re.fullmatch(r"[0-9a-z-]+", c) for c in codes), codes
    assert "store them somewhere safe" in totpctl.stderr[-1]

    exit_code, out = totpctl("recovery-codes", "verify", alice, codes[0])
    left = f"{len(codes) - 1} of {len(codes)} left"
    assert (exit_code, out.strip()) == (0, f"VALID (recovery codes: {left})")
    exit_code, out = totpctl("recovery-codes", "verify", alice, codes[0].upper())
    assert (exit_code, out.split()[0]) == (1, "REPLAYED")
    exit_code, out = totpctl("recovery-codes", "verify", alice, *codes[1].split("-"))
    assert (exit_code, out.split()[0]) == (0, "VALID")

    exit_code, out = totpctl("list", alice)
    assert exit_code == 0
    assert f"recovery codes: {len(codes) - 2} of {len(codes)} left" in out

    exit_code, out = totpctl("recovery-codes", "generate", alice, "--json")
    assert exit_code == 0
    renewed = json.loads(out)
    assert renewed["remaining"] == renewed["issued"] == len(renewed["codes"])
    exit_code, out = totpctl("recovery-codes", "verify", alice, codes[2])
    assert (exit_code, out.split()[0]) == (1, "INVALID")

    seen = [*codes, *renewed["codes"]]
    assert not [c for c in seen for err in totpctl.stderr if c.lower() in err.lower()]
    log = totpctl.log.read_text()
    assert not [c for c in seen if c in log], "a recovery code reached the server's log"


def test_resync_then_lock_then_unlock(totpctl: Totpctl, strict_client: TotpdClient) -> None:
    bob = account("ctl-resync")
    e = enroll_active(strict_client, bob)
    factor_id, app = e.factor.factor_id, totp(e)
    ahead = time.time() + 300
    code1, code2 = app.at(ahead), app.at(ahead + 30)
    exit_code, out = totpctl("resync", bob, factor_id, f"{code1[:3]} {code1[3:]}", code2)
    assert exit_code == 0, totpctl.stderr[-1]
    head = re.fullmatch(rf"VALID \(factor {factor_id}, drift \+(\d+)\)", out.splitlines()[0])
    assert head and 9 <= int(head.group(1)) <= 11, out
    assert re.search(r"^drift:\s+\+\d+ step\(s\)$", out, re.M)
    exit_code, out = totpctl("resync", bob, factor_id, code1, code2)
    assert (exit_code, out.split()[0]) == (1, "REPLAYED")
    exit_code, out = totpctl("list", bob)
    assert re.search(rf"^{factor_id}\s.*\sACTIVE\s+\+{head.group(1)}\s", out, re.M), out

    later = app.at(ahead + 60)
    wrong = f"{(int(later) + 1) % 10**6:06d}"
    verdicts = [totpctl("verify", bob, wrong)[0] for _ in range(3)]
    assert verdicts == [1, 1, 1]
    exit_code, out = totpctl("verify", bob, later)
    assert (exit_code, out.split()[0]) == (1, "LOCKED")

    exit_code, out = totpctl("unlock", bob)
    assert exit_code == 0, totpctl.stderr[-1]
    assert out.startswith(f"UNLOCKED {bob} (lock lifted, "), out
    exit_code, out = totpctl("unlock", bob, "--factor", factor_id)
    assert (exit_code, out.split()[:3]) == (0, ["NOTHING", "TO", "UNLOCK"])
    exit_code, out = totpctl("verify", bob, later)
    assert (exit_code, out.split()[0]) == (0, "VALID"), "the drift still applies after unlock"

    log = totpctl.log.read_text()
    for secret in (code1, code2, later, e.secret_base32):
        assert not any(appears(secret, err) for err in totpctl.stderr)
        assert not appears(secret, log), "a code or secret reached the server's log"
