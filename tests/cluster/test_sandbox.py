"""The hardening of deploy/systemd/totpd.service holds for totpd's code.

MemoryDenyWriteExecute= refuses memory that is (or becomes) both writable and
executable, which would break code that makes machine code at run time (a JIT,
libffi closures). Linux's PR_SET_MDWE (6.3+) is the same rule, inherited across
exec, and the one systemd uses where the kernel has it: the C core on every CPU
path, and a whole `totpd serve` answering gRPC calls, run under it here. The unit
file itself is checked with `systemd-analyze verify` where that tool exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from tests.totp_oracle import wire_code_at
from totpd.v1 import factor_pb2, totp_service_pb2_grpc
from totpd.v1 import totp_service_pb2 as pb

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "totpd.service"
# Sets PR_SET_MDWE (65) to PR_MDWE_REFUSE_EXEC_GAIN (1), then execs the command.
UNDER_MDWE = """
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(97)
os.execv(sys.argv[1], sys.argv[1:])
"""
CORE_ON_EVERY_PATH = """
import ctypes, mmap
from totpd import otp
from totpd.domain import Algorithm
assert ctypes.CDLL(None).prctl(66, 0, 0, 0, 0) == 1, "MDWE is not on"
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    raise SystemExit("a writable and executable mapping was allowed: MDWE not enforced")
except PermissionError:
    pass
seeds = {Algorithm.SHA1: 20, Algorithm.SHA256: 32, Algorithm.SHA512: 64}
expected = {Algorithm.SHA1: "94287082", Algorithm.SHA256: "46119246", Algorithm.SHA512: "90693936"}
for path in otp.cpu_paths():
    for algorithm, size in seeds.items():
        key = (b"1234567890" * 7)[:size]
        assert otp.totp(key, 59, 30, 8, algorithm, path=path) == expected[algorithm], path
        assert otp.verify(key, algorithm, 8, 1, int(expected[algorithm]), 1, path=path) == 1
print("paths", ",".join(otp.cpu_paths()))
"""


def mdwe_supported() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", UNDER_MDWE, sys.executable, "-c", "pass"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return probe.returncode == 0


@pytest.fixture(scope="module")
def mdwe() -> list[str]:
    if not mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    return [sys.executable, "-c", UNDER_MDWE, sys.executable]


def test_the_c_core_runs_on_every_cpu_path_under_memory_deny_write_execute(
    mdwe: list[str],
) -> None:
    done = subprocess.run(
        [*mdwe, "-c", CORE_ON_EVERY_PATH], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("paths ")


@pytest.mark.parametrize("processes", [1, 2])
def test_totpd_serves_under_memory_deny_write_execute(
    mdwe: list[str], tmp_path: Path, processes: int
) -> None:
    ready = tmp_path / "ready"
    log = (tmp_path / "serve.log").open("wb")
    command = [*mdwe, "-m", "totpd", "serve", "--dev", "--listen", "127.0.0.1:0"]
    command += ["--processes", str(processes)]
    command += ["--data-dir", str(tmp_path), "--ready-file", str(ready)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOTPD_")}
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "totpd serve did not start"
            time.sleep(0.05)
        with grpc.insecure_channel(ready.read_text()) as channel:
            stub = totp_service_pb2_grpc.TotpServiceStub(channel)
            enrolled = stub.Enroll(pb.EnrollRequest(account_id="mdwe"), timeout=10)
            factor = enrolled.factor
            code = wire_code_at(
                enrolled.secret_base32,
                factor.algorithm,
                factor.digits,
                factor.period_seconds,
                time.time(),
            )
            confirm = pb.ConfirmEnrollmentRequest(
                account_id="mdwe", factor_id=factor.factor_id, code=code
            )
            assert stub.ConfirmEnrollment(confirm, timeout=10).outcome.result == (
                factor_pb2.VERIFY_RESULT_VALID
            )
            items = [pb.BatchVerifyItem(account_id="mdwe", code=code)] * 3
            batch = stub.BatchVerify(pb.BatchVerifyRequest(items=items), timeout=10)
            assert [r.outcome.result for r in batch.results] == [
                factor_pb2.VERIFY_RESULT_REPLAYED
            ] * 3
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_the_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify wants ExecStart's program to exist: point it at a stand-in.
    unit = tmp_path / "totpd.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/totpd", "/bin/true"))
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    complaints = [line for line in done.stderr.splitlines() if "totpd.service" in line]
    assert done.returncode == 0 and not complaints, done.stderr
