"""A real grpcurl, knowing nothing but what reflection serves: list, describe
(service, method, message, enum, enum value) and calls (grpc/grpc#34743 broke
the method lookups). grpcurl tries reflection v1 first and falls back to v1alpha;
the access log shows which one it used.

grpcurl is built with `go install` by clients/install-grpcurl.sh (once, cached
under .cache/); without Go the tests skip, or fail under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.rpc.conftest import Secrets
from tests.rpc.harness import LiveServer, LogCapture
from tests.totp_oracle import wire_code_at
from totpd.v1 import factor_pb2

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def grpcurl() -> str:
    if os.environ.get("TOTPD_GRPCURL"):
        return os.environ["TOTPD_GRPCURL"]
    if shutil.which("go") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Go is needed to build grpcurl (clients/install-grpcurl.sh)")
        pytest.skip("Go is needed to build grpcurl (clients/install-grpcurl.sh)")
    built = subprocess.run(
        [ROOT / "clients" / "install-grpcurl.sh"],
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    return built.stdout.strip()


def run(grpcurl: str, live: LiveServer, *args: str, data: Any = None) -> str:
    command = [grpcurl, "-plaintext", "-max-time", "20"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    done = subprocess.run(
        [*command, live.address, *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, f"grpcurl {' '.join(args)}: {done.stderr[-1000:]}"
    return done.stdout


def test_list_and_describe(grpcurl: str, live: LiveServer) -> None:
    assert run(grpcurl, live, "list").split() == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "totpd.v1.TotpService",
    ]
    methods = run(grpcurl, live, "list", "totpd.v1.TotpService").split()
    assert "totpd.v1.TotpService.Verify" in methods
    assert "totpd.v1.TotpService.BatchVerify" in methods
    expected = {
        "totpd.v1.TotpService": ("is a service:", "rpc Verify ( .totpd.v1.VerifyRequest )"),
        "totpd.v1.TotpService.Verify": (
            "is a method:",
            "rpc Verify ( .totpd.v1.VerifyRequest ) returns ( .totpd.v1.VerifyResponse );",
        ),
        "totpd.v1.VerifyRequest": ("is a message:", "string code = 2;"),
        "totpd.v1.VerifyResult": ("is an enum:", "VERIFY_RESULT_REPLAYED = 3;"),
        "totpd.v1.VERIFY_RESULT_LOCKED": ("is an enum value:", "VERIFY_RESULT_LOCKED = 4;"),
        "grpc.health.v1.Health.Check": ("is a method:", "rpc Check ("),
    }
    for symbol, (kind, line) in expected.items():
        described = run(grpcurl, live, "describe", symbol)
        assert kind in described.splitlines()[0], described
        assert line in described, described


def test_enroll_and_confirm_by_reflection_alone(
    grpcurl: str, live: LiveServer, secrets_seen: Secrets, no_secrets_in_logs: LogCapture
) -> None:
    enrolled = json.loads(
        run(grpcurl, live, "totpd.v1.TotpService/Enroll", data={"account_id": "grpcurl"})
    )
    secrets_seen.add(enrolled["secret_base32"], enrolled["otpauth_uri"])
    factor = enrolled["factor"]
    assert factor["state"] == "FACTOR_STATE_PENDING"
    secret, digits, period = enrolled["secret_base32"], factor["digits"], factor["period_seconds"]
    code = wire_code_at(secret, factor_pb2.ALGORITHM_SHA1, digits, period, time.time())
    secrets_seen.add(code)
    confirm = {"account_id": "grpcurl", "factor_id": factor["factor_id"], "code": code}
    confirmed = json.loads(
        run(grpcurl, live, "totpd.v1.TotpService/ConfirmEnrollment", data=confirm)
    )
    assert confirmed["outcome"]["result"] == "VERIFY_RESULT_VALID"
    again = {"account_id": "grpcurl", "code": code}
    replayed = json.loads(run(grpcurl, live, "totpd.v1.TotpService/Verify", data=again))
    assert replayed["outcome"]["result"] == "VERIFY_RESULT_REPLAYED"
    used = {json.loads(line).get("method") for line in no_secrets_in_logs.lines}
    assert "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo" in used
