"""Several processes, one scrape: the supervisor's contract (telemetry/metrics.py).

Processes that write to one PROMETHEUS_MULTIPROC_DIR are summed by the
listener: counters and histograms for good, live gauges while the process
lives (`worker_exited`). First with two small Python processes driving the
hooks, then with two real `totpd serve` processes told a supervisor serves
their metrics.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest

from tests.cli.processes import dev_server
from tests.telemetry.scrape import Delta, scrape, value
from totpd.telemetry.metrics import (
    LISTENER_ENV,
    MULTIPROC_ENV,
    MetricsListener,
    start_metrics_listener,
    worker_exited,
)
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc

# A worker's share: `valid` verdicts, one connection held, one RPC timed; then
# it waits for its stdin to close.
_WORKER = textwrap.dedent(
    """
    import sys
    from totpd.service.types import VerifyResult
    from totpd.telemetry import metrics
    metrics.count_verdicts([VerifyResult.VALID] * int(sys.argv[1]))
    metrics.connection_checked_out()
    metrics.RPC_DURATION.labels("totpd.v1.TotpService", "Verify").observe(0.002)
    print("ready", flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def multiproc_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "metrics"
    path.mkdir()
    monkeypatch.setenv(MULTIPROC_ENV, str(path))
    return path


@pytest.fixture
def supervisor_listener(multiproc_dir: Path) -> Iterator[MetricsListener]:
    listener = start_metrics_listener("127.0.0.1:0")
    try:
        yield listener
    finally:
        listener.close()


def _worker(valid: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(valid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def _stop(process: subprocess.Popen[str]) -> None:
    process.communicate(timeout=30)
    assert process.returncode == 0


def test_two_processes_are_summed_in_one_scrape(
    supervisor_listener: MetricsListener,
) -> None:
    first, second = _worker(3), _worker(4)
    try:
        text = scrape(supervisor_listener.port)
        assert value(text, "totpd_verdicts_total", result="valid") == 7
        assert value(text, "totpd_rpc_duration_seconds_count", method="Verify") == 2
        assert value(text, "totpd_store_pool_connections_in_use") == 2
        (build,) = [line for line in text.splitlines() if line.startswith("totpd_build_info{")]
        assert build.endswith(" 1.0")  # one series (livemax), not one per process
        _stop(first)
        worker_exited(first.pid)
        text = scrape(supervisor_listener.port)
    finally:
        for process in (first, second):
            if process.poll() is None:
                _stop(process)
    # The dead worker's counts stay in the totals; its connection is gone.
    assert value(text, "totpd_verdicts_total", result="valid") == 7
    assert value(text, "totpd_store_pool_connections_in_use") == 1


@pytest.mark.slow
def test_two_real_servers_under_one_supervisors_listener(
    tmp_path: Path, supervisor_listener: MetricsListener
) -> None:
    """Two `totpd serve` processes as a supervisor starts its workers: the shared
    directory and TOTPD_METRICS_LISTENER=supervisor in their environment."""
    env = {**os.environ, LISTENER_ENV: "supervisor"}
    delta = Delta(supervisor_listener.port)
    with ExitStack() as stack:
        servers = [stack.enter_context(dev_server(tmp_path / name, env)) for name in ("a", "b")]
        for calls, (_, address) in enumerate(servers, start=1):
            with grpc.insecure_channel(address) as channel:
                stub = totp_service_pb2_grpc.TotpServiceStub(channel)
                for _ in range(calls):
                    stub.ListFactors(pb.ListFactorsRequest(account_id="nobody"), timeout=10)
        delta.take()
        for process, _ in servers:
            process.terminate()
        logs = [process.communicate(timeout=30)[1] for process, _ in servers]
    assert delta("totpd_rpc_requests_total", method="ListFactors", code="OK") == 3
    assert all('"serving"' in log and "metrics listening" not in log for log in logs), logs
