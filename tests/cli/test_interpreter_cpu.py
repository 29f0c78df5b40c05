"""`pin_interpreter`: a `totpd serve` process runs its event loop and round threads
on one CPU, and leaves grpc's threads, its handler workers and the C core's pool on
every CPU it has (totpd/thread_cpus.py). Real processes, read back from /proc."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tests.cli.processes import GRACE_SECONDS, dev_server, log_records, run_totpd
from tests.cpu_lists import PROCESS_CPUS, cpus_of_task, needs_two_cpus, threads_of
from totpd.config import ConfigError, load_settings
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc

# The interpreter's threads: the loop, and the round threads it starts.
PINNED_PREFIXES = ("totpd-loop", "totpd-round")
# Threads that keep every CPU: grpc's own, the handler workers, and the log writer.
FREE_PREFIXES = ("event_engine", "totpd-rpc", "totpd-log-write")


def test_pin_interpreter_is_on_by_default_and_read_from_every_source(tmp_path: Path) -> None:
    assert load_settings(environ={}).pin_interpreter is True
    assert load_settings(environ={"TOTPD_PIN_INTERPRETER": "false"}).pin_interpreter is False
    config = tmp_path / "totpd.toml"
    config.write_text("pin_interpreter = false\n", encoding="utf-8")
    assert load_settings(config, environ={}).pin_interpreter is False
    assert load_settings(config, {"pin_interpreter": "true"}, environ={}).pin_interpreter


def test_a_pin_interpreter_that_is_not_a_boolean_is_a_config_error(
    subprocess_env: dict[str, str],
) -> None:
    with pytest.raises(ConfigError, match="pin_interpreter"):
        load_settings(environ={"TOTPD_PIN_INTERPRETER": "cpu0"})
    result = run_totpd("serve", "--pin-interpreter", "sometimes", env=subprocess_env)
    assert result.returncode == 2
    assert "pin_interpreter" in result.stderr
    assert "expected a boolean (true/false)" in result.stderr


@pytest.mark.slow  # a `totpd serve` process
@needs_two_cpus
@pytest.mark.parametrize("pinned", [True, False], ids=["default", "off"])
def test_the_loop_and_its_round_threads_share_one_cpu(
    tmp_path: Path, subprocess_env: dict[str, str], pinned: bool
) -> None:
    extra = () if pinned else ("--pin-interpreter", "false")
    with dev_server(tmp_path, subprocess_env, *extra) as (process, address):
        with grpc.insecure_channel(address) as channel:
            stub = totp_service_pb2_grpc.TotpServiceStub(channel)
            stub.Enroll(pb.EnrollRequest(account_id="cpu-test"), timeout=10)  # a worker
            try:  # a coalesced round (its factor is still pending: not found)
                stub.Verify(pb.VerifyRequest(account_id="cpu-test", code="000000"), timeout=10)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND
        threads = threads_of(process.pid)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=GRACE_SECONDS + 10)

    interpreter = [cpus for name, cpus in threads if name.startswith(PINNED_PREFIXES)]
    free = [cpus for name, cpus in threads if name.startswith(FREE_PREFIXES)]
    names = {name for name, _ in threads}
    assert {"totpd-loop", "totpd-round_0", "totpd-rpc_0", "event_engine"} <= names
    assert free and all(cpus == PROCESS_CPUS for cpus in free)
    serving = next(record for record in log_records(stderr) if record["msg"] == "serving")
    if pinned:
        assert all(cpus == {min(PROCESS_CPUS)} for cpus in interpreter)
        assert serving["interpreter_cpu"] == min(PROCESS_CPUS)
    else:
        assert all(cpus == PROCESS_CPUS for cpus in interpreter)
        assert serving["interpreter_cpu"] == ""


# A fresh process: the C core's pool is made by the first large batch, here from
# a pinned thread; its threads must run on every CPU all the same.
_CORE_POOL_SCRIPT = """
import sys, threading
from totpd import otp, thread_cpus
from totpd.domain import Algorithm

def large_batch_from_a_pinned_thread():
    assert thread_cpus.pin_this_thread(int(sys.argv[1]))
    table = otp.KeyTable()
    table.add(bytes(range(20)), Algorithm.SHA1, 6, 30)
    pairs = otp.THREAD_SPLIT + 1
    otp.verify_batch(table, [0] * pairs, [0] * pairs, 1, threads=2)

thread = threading.Thread(target=large_batch_from_a_pinned_thread)
thread.start()
thread.join()
print(*[t.native_id for t in threading.enumerate() if t.name.startswith("totpd-core")])
sys.stdout.flush()
sys.stdin.read()  # alive until the test has read the threads' CPUs
"""


@needs_two_cpus
def test_the_c_core_pool_runs_on_every_cpu_when_a_pinned_thread_starts_it(
    subprocess_env: dict[str, str],
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _CORE_POOL_SCRIPT, str(min(PROCESS_CPUS))],
        env=subprocess_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as script:
        assert script.stdout is not None and script.stdin is not None
        pool = [int(tid) for tid in script.stdout.readline().split()]
        cpus = [cpus_of_task(tid, script.pid) for tid in pool]
        script.stdin.close()
        assert script.wait(timeout=30) == 0
    assert pool, "the batch did not start the pool"
    assert all(each == PROCESS_CPUS for each in cpus)
