"""`totpd serve` runs the store probe: health follows a real PostgreSQL that is
stopped and restarted, and the process still shuts down cleanly on SIGTERM."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.cli.processes import GRACE_SECONDS, dev_server, log_records
from tests.pg_faults import FaultyPostgres, faulty_postgres

pytestmark = pytest.mark.slow  # a `totpd serve` process and a PostgreSQL server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def pg() -> Iterator[FaultyPostgres]:
    with faulty_postgres() as server:
        yield server


def wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {seconds:g} s")
        time.sleep(0.05)


@pytest.mark.postgres
def test_served_health_follows_the_database_and_sigterm_still_stops(
    tmp_path: Path, subprocess_env: dict[str, str], pg: FaultyPostgres
) -> None:
    probe = ("--health-probe-interval-seconds", "0.1", "--health-probe-timeout-seconds", "0.5")
    with dev_server(tmp_path, subprocess_env, "--database-url", pg.url, *probe) as (
        process,
        address,
    ):
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            def status() -> int:
                request = health_pb2.HealthCheckRequest(service="totpd.v1.TotpService")
                return int(health.Check(request, timeout=5).status)

            assert status() == SERVING
            pg.halt()
            try:
                wait_until(lambda: status() == NOT_SERVING)
            finally:
                pg.restart()
            wait_until(lambda: status() == SERVING)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=GRACE_SECONDS + 10)

    assert process.returncode == 0, stderr
    records = log_records(stderr)
    probe_lines = [r["msg"] for r in records if r["logger"] == "totpd.health"]
    assert probe_lines == [
        "store unreachable: health NOT_SERVING",
        "store reachable again: health SERVING",
    ]
    lifecycle = [r["msg"] for r in records if r["logger"] != "totpd.access"]
    assert lifecycle[-1] == "stopped"
    assert "Traceback" not in stderr
