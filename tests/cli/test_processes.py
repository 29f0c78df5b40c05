"""`totpd serve --processes N` as real processes: a supervisor and its workers on
one port. Which worker answered a call is read from its access line (`worker`);
which processes exist, from /proc."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.cli.processes import dev_server, log_records, run_totpd
from tests.cpu_lists import PROCESS_CPUS, threads_of
from tests.ports import free_loopback_port
from tests.telemetry.scrape import scrape, value
from tests.tls_certs import TlsFiles
from totpd.cli.serve import build_parser, main
from totpd.cli.workers import available_cores
from totpd.v1 import factor_pb2, totp_service_pb2_grpc
from totpd.v1 import totp_service_pb2 as pb

POLLS = 600  # bounded waits of 50 ms: 30 s


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> set[int]:
    """The live processes whose parent is `pid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def listening(pid: int, port: int) -> bool:
    """`pid` holds a TCP socket listening on `port` (its fds against /proc/net/tcp*)."""
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return False
    inodes = {link[8:-1] for link in links if link.startswith("socket:[")}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[3] == "0A" and local_port == port and fields[9] in inodes:
                return True
    return False


def wait_until(condition: Any, what: str) -> None:
    for _ in range(POLLS):
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting until {what}")


def enroll_on_new_connections(address: str, count: int, prefix: str) -> None:
    """`count` Enroll calls, each on its own TCP connection (the kernel picks the worker)."""
    for k in range(count):
        # Its own subchannel pool: a new connection, not the process-wide shared one.
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(address, options=options) as channel:
            stub = totp_service_pb2_grpc.TotpServiceStub(channel)
            enrolled = stub.Enroll(pb.EnrollRequest(account_id=f"{prefix}-{k}"), timeout=15)
            assert enrolled.factor.state == factor_pb2.FACTOR_STATE_PENDING


# --- the flag ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "", "100000"])
def test_bad_process_counts_are_refused_with_a_clear_message(
    value: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", f"--processes={value}"])
    assert exited.value.code == 2
    err = capfd.readouterr().err
    assert f"argument --processes: {value!r} is not a number of processes" in err
    assert "'auto' for one per core" in err


def test_auto_is_one_process_per_available_core_and_the_default_is_one() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve", "--processes", "auto"]).processes == available_cores()
    assert available_cores() == len(os.sched_getaffinity(0))
    assert parser.parse_args(["serve", "--processes", "3"]).processes == 3
    assert parser.parse_args(["serve"]).processes == 1


# --- the supervisor ---------------------------------------------------------------


@pytest.mark.slow  # a supervisor and two workers
def test_two_workers_share_the_port_and_sigterm_drains_both_leaving_no_process(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    with dev_server(tmp_path, subprocess_env, "--processes", "2") as (supervisor, address):
        workers = children(supervisor.pid)
        assert len(workers) == 2
        # Connections are spread by the kernel: 30 of them all on one worker is 2**-29.
        enroll_on_new_connections(address, 30, "spread")
        loops = [cpus for pid in workers for name, cpus in threads_of(pid) if name == "totpd-loop"]
        assert len(loops) == len(workers)  # each worker has its event loop thread
        supervisor.send_signal(signal.SIGTERM)
        _, stderr = supervisor.communicate(timeout=60)

    assert supervisor.returncode == 0, stderr
    assert not any(alive(pid) for pid in workers)
    # Each worker's event loop on a CPU of its own (pin_interpreter), as far as there are.
    cpus = sorted(PROCESS_CPUS)
    if len(cpus) > 1:
        assert set(loops) == {frozenset({cpus[0]}), frozenset({cpus[1 % len(cpus)]})}
    lines = log_records(stderr)
    answered = {r["worker"] for r in lines if r["logger"] == "totpd.access"}
    assert answered == {0, 1}
    supervising = next(r for r in lines if r["msg"] == "supervising")
    assert supervising["address"] == address and set(supervising["pids"]) == workers
    # Each worker drained and stopped; the supervisor stopped last.
    for index in (0, 1):
        phases = [
            r["msg"] for r in lines if r.get("worker") == index and r["logger"] == "totpd.server"
        ]
        assert phases[0] == "serving" and phases[-1] == "stopped"
        serving = next(r for r in lines if r.get("worker") == index and r["msg"] == "serving")
        if len(cpus) > 1:
            assert serving["interpreter_cpu"] == cpus[index % len(cpus)]
        assert "draining: health is NOT_SERVING, still serving" in phases
    assert lines[-1]["logger"] == "totpd.supervisor" and lines[-1]["msg"] == "stopped"
    # The one-time startup ran once: one development key, one "created" line.
    assert sum("DEVELOPMENT key" in r["msg"] for r in lines) == 1


@pytest.mark.slow  # a supervisor and two workers, one killed
def test_a_killed_worker_is_started_again_and_calls_keep_succeeding(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    with dev_server(tmp_path, subprocess_env, "--processes", "2") as (supervisor, address):
        workers = children(supervisor.pid)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        # Reaped: all its threads ended, so its listening socket is closed (its first
        # thread is a zombie earlier, while the others still hold the socket).
        wait_until(lambda: not Path(f"/proc/{victim}").exists(), "the killed worker is reaped")
        # New connections reach the other worker.
        enroll_on_new_connections(address, 5, "meanwhile")
        wait_until(lambda: len(children(supervisor.pid) - {victim}) == 2, "a new worker runs")
        (replacement,) = children(supervisor.pid) - workers
        port = int(address.rsplit(":", 1)[1])
        wait_until(lambda: listening(replacement, port), "the new worker listens")
        enroll_on_new_connections(address, 10, "after")
        supervisor.send_signal(signal.SIGTERM)
        _, stderr = supervisor.communicate(timeout=60)

    assert supervisor.returncode == 0, stderr
    assert not alive(replacement)
    lines = log_records(stderr)
    (restart,) = [r for r in lines if r["msg"] == "worker exited; starting it again"]
    assert restart["pid"] == victim and restart["exit"] == "killed by SIGKILL"
    assert restart["restart_in_s"] == 0.5
    index = restart["worker"]
    serving = [r for r in lines if r["msg"] == "serving" and r.get("worker") == index]
    assert len(serving) == 2  # the first worker and its replacement
    again = next(r for r in lines if r["msg"] == "worker serving")
    assert again["pid"] == replacement and again["worker"] == index


@pytest.mark.slow  # a supervisor whose restarted worker cannot start
def test_a_worker_that_cannot_start_again_stops_the_supervisor_with_exit_1(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    with dev_server(tmp_path, subprocess_env, "--processes", "2") as (supervisor, _):
        workers = children(supervisor.pid)
        # From now on no worker can load the keyring.
        (tmp_path / "data" / "totpd.key").write_text("not a keyring")
        os.kill(min(workers), signal.SIGKILL)
        _, stderr = supervisor.communicate(timeout=90)

    assert supervisor.returncode == 1
    assert not any(alive(pid) for pid in workers)
    lines = log_records(stderr)
    (gave_up,) = [r for r in lines if r["level"] == "ERROR" and r["logger"] == "totpd.supervisor"]
    assert (
        gave_up["msg"].startswith("worker ")
        and "failed to start 3 times in a row" in gave_up["msg"]
    )
    assert "giving up" in gave_up["msg"]
    # The other worker was drained, not killed.
    stopping = next(r for r in lines if r["msg"] == "stopping: every worker drains")
    assert stopping["reason"] == "giving up"
    assert sum(r["msg"] == "stopped" and r["logger"] == "totpd.server" for r in lines) == 1
    restarts = [r for r in lines if r["msg"] == "worker exited; starting it again"]
    assert [r["restart_in_s"] for r in restarts] == [0.5, 1.0, 2.0]
    # Each failed start said why, without the key file's content.
    assert stderr.count("totpd: error:") == 3


@pytest.mark.slow  # a supervisor and two workers draining
def test_a_second_signal_is_forwarded_and_cuts_every_drain_short(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    # A drain far longer than the test: only the second signal can end it in time.
    long_drain = ("--processes=2", "--drain-seconds=3600")
    with dev_server(tmp_path, subprocess_env, *long_drain) as (supervisor, address):
        workers = children(supervisor.pid)
        supervisor.send_signal(signal.SIGTERM)
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="")
            wait_until(
                lambda: (
                    health.Check(request, timeout=5).status
                    == health_pb2.HealthCheckResponse.NOT_SERVING
                ),
                "health is NOT_SERVING",
            )
        assert supervisor.poll() is None and all(alive(pid) for pid in workers)  # draining
        supervisor.send_signal(signal.SIGINT)
        _, stderr = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 0, stderr
    cut = [r for r in log_records(stderr) if r["msg"] == "drain cut short by a second signal"]
    assert sorted(r["worker"] for r in cut) == [0, 1]


@pytest.mark.slow  # a supervisor killed with SIGKILL
def test_workers_stop_when_the_supervisor_is_killed(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    with dev_server(tmp_path, subprocess_env, "--processes", "2") as (supervisor, _):
        workers = children(supervisor.pid)
        supervisor.kill()
        supervisor.communicate(timeout=30)
        wait_until(lambda: not any(alive(pid) for pid in workers), "every worker stopped")


@pytest.mark.slow  # a `totpd serve --processes 2` process
def test_a_port_in_use_stops_the_start_with_exit_2_before_any_worker(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_totpd(
            "serve",
            "--dev",
            "--processes=2",
            f"--listen=127.0.0.1:{port}",
            f"--data-dir={tmp_path / 'data'}",
            env=subprocess_env,
        )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"totpd: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert "--listen HOST:PORT" in last
    assert '"serving"' not in result.stderr


@pytest.mark.slow  # a `totpd serve --processes 2` process
def test_a_bad_keyring_stops_the_start_once_in_the_supervisor(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    key_file = tmp_path / "bad.key"
    key_file.write_text("{}")
    result = run_totpd(
        "serve",
        "--processes=2",
        "--listen=127.0.0.1:0",
        f"--data-dir={tmp_path / 'data'}",
        f"--key-file={key_file}",
        env=subprocess_env,
    )
    assert result.returncode == 2
    assert result.stderr.count("totpd: error:") == 1
    assert result.stderr.strip().splitlines()[-1].startswith("totpd: error: ")
    assert "supervising" not in result.stderr and '"worker"' not in result.stderr


@pytest.mark.slow  # a supervisor and two TLS workers
def test_tls_workers_serve_on_one_port(
    tmp_path: Path, tls_files: TlsFiles, subprocess_env: dict[str, str]
) -> None:
    tls = (f"--tls-cert-file={tls_files.server_cert}", f"--tls-key-file={tls_files.server_key}")
    with dev_server(tmp_path, subprocess_env, "--processes=2", *tls) as (supervisor, address):
        creds = grpc.ssl_channel_credentials(root_certificates=tls_files.ca.read_bytes())
        for _ in range(10):
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.secure_channel(address, creds, options=options) as channel:
                check = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=10
                )
                assert check.status == health_pb2.HealthCheckResponse.SERVING
        supervisor.send_signal(signal.SIGTERM)
        _, stderr = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 0, stderr
    serving = [r for r in log_records(stderr) if r["msg"] == "serving"]
    assert sorted(r["worker"] for r in serving) == [0, 1]
    assert {r["tls"] for r in serving} == {"tls"}


@pytest.mark.slow  # a supervisor and two workers, one killed
def test_one_scrape_of_the_supervisor_sums_every_worker_and_keeps_a_dead_ones_counts(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    metrics_port = free_loopback_port()
    flags = ("--processes", "2", "--metrics-address", f"127.0.0.1:{metrics_port}")
    with dev_server(tmp_path, subprocess_env, *flags) as (supervisor, address):
        enroll_on_new_connections(address, 30, "counted")
        enrolled = value(scrape(metrics_port), "totpd_rpc_requests_total", method="Enroll")
        victim = min(children(supervisor.pid))
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(children(supervisor.pid) - {victim}) == 2, "a new worker runs")
        after_death = value(scrape(metrics_port), "totpd_rpc_requests_total", method="Enroll")
        supervisor.send_signal(signal.SIGTERM)
        _, stderr = supervisor.communicate(timeout=60)

    assert supervisor.returncode == 0, stderr
    lines = log_records(stderr)
    answered = {r["worker"] for r in lines if r["logger"] == "totpd.access"}
    assert answered == {0, 1}  # the 30 calls were spread, yet one scrape counts them all
    assert enrolled == 30
    assert after_death == 30  # a dead worker's counters stay in the sum
    assert not any(r.get("worker") is not None and "metrics listening" in r["msg"] for r in lines)
