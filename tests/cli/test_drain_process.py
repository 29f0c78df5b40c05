"""The shutdown timeline of a real `totpd serve` process: on SIGTERM health turns
NOT_SERVING while the server keeps serving for `drain_seconds`; then the port
refuses new connections, health Watch streams end, the calls in flight finish,
and the process exits 0. A second signal cuts the drain short.

The call in flight is held inside the server by the SQLite write lock, which
the test takes on the server's database: it is in flight when the stop begins
by construction, not by timing."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.cli.processes import NOT_SERVING, SERVING, dev_server, log_records
from tests.rpc.conftest import Secrets
from tests.totp_oracle import wire_code_at
from totpd.v1 import factor_pb2, totp_service_pb2_grpc
from totpd.v1 import totp_service_pb2 as pb

DRAIN_SECONDS = 3.0
GRACE_SECONDS = 20.0
POLLS = 200  # bounded polls of 25 ms


class Watcher:
    """Follows a health Watch stream in a thread: the statuses, then how it ended."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.statuses: list[int] = []
        self.end_code: grpc.StatusCode | None = None
        self._call = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="")
        )
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            self.statuses.extend(response.status for response in self._call)
            self.end_code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            self.end_code = error.code()  # type: ignore[attr-defined]

    def wait_for(self, count: int) -> None:
        for _ in range(POLLS):
            if len(self.statuses) >= count:
                return
            time.sleep(0.025)
        pytest.fail(f"the Watch stream sent {self.statuses}, expected {count} statuses")

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


@contextmanager
def sqlite_writes_blocked(database: Path) -> Iterator[None]:
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def activate(stub: Any, secrets: Secrets, account: str) -> tuple[pb.EnrollResponse, str]:
    """An active factor; returns it and a valid code of the next step (unused)."""
    enrolled = stub.Enroll(pb.EnrollRequest(account_id=account), timeout=10)
    factor = enrolled.factor
    now = time.time()
    code, next_code = (
        wire_code_at(
            enrolled.secret_base32, factor.algorithm, factor.digits, factor.period_seconds, t
        )
        for t in (now, now + factor.period_seconds)
    )
    secrets.add(enrolled.secret_base32, enrolled.otpauth_uri, code, next_code)
    confirmed = stub.ConfirmEnrollment(
        pb.ConfirmEnrollmentRequest(account_id=account, factor_id=factor.factor_id, code=code),
        timeout=10,
    )
    assert confirmed.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    return enrolled, next_code


def health_status(channel: grpc.Channel) -> int:
    check = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="totpd.v1.TotpService"), timeout=5
    )
    status: int = check.status
    return status


def wait_for_not_serving(channel: grpc.Channel) -> None:
    for _ in range(POLLS):
        if health_status(channel) == NOT_SERVING:
            return
        time.sleep(0.025)
    pytest.fail("health never turned NOT_SERVING after the signal")


def lifecycle(stderr: str) -> list[str]:
    records = log_records(stderr)
    return [r["msg"] for r in records if r["logger"] == "totpd.server"]


@pytest.mark.slow  # a `totpd serve` process draining for seconds
def test_sigterm_drains_then_refuses_new_connections_and_finishes_calls_in_flight(
    tmp_path: Path, subprocess_env: dict[str, str], secrets_seen: Secrets
) -> None:
    drain = ("--drain-seconds", str(DRAIN_SECONDS), "--shutdown-grace-seconds", str(GRACE_SECONDS))
    with dev_server(tmp_path, subprocess_env, *drain) as (process, address):
        with grpc.insecure_channel(address) as channel:
            stub = totp_service_pb2_grpc.TotpServiceStub(channel)
            enrolled, next_code = activate(stub, secrets_seen, "drain-user")
            get_factor = pb.GetFactorRequest(
                account_id="drain-user", factor_id=enrolled.factor.factor_id
            )
            watcher = Watcher(channel)
            watcher.wait_for(1)
            assert watcher.statuses == [SERVING]

            with sqlite_writes_blocked(tmp_path / "data" / "totpd.sqlite3"):
                in_flight = stub.Verify.future(
                    pb.VerifyRequest(account_id="drain-user", code=next_code), timeout=60
                )
                process.send_signal(signal.SIGTERM)
                wait_for_not_serving(channel)

                # The drain window: new connections and calls are still served.
                with grpc.insecure_channel(address) as during_drain:
                    during = totp_service_pb2_grpc.TotpServiceStub(during_drain)
                    assert during.GetFactor(get_factor, timeout=5).factor.state == (
                        factor_pb2.FACTOR_STATE_ACTIVE
                    )

                # The stop: the Watch stream got NOT_SERVING and then ended.
                assert watcher.join(timeout=DRAIN_SECONDS + 15)
                assert watcher.statuses == [SERVING, NOT_SERVING]
                assert watcher.end_code is grpc.StatusCode.UNAVAILABLE

                # The port refuses new connections...
                with grpc.insecure_channel(address) as after_drain:
                    late = totp_service_pb2_grpc.TotpServiceStub(after_drain)
                    with pytest.raises(grpc.RpcError) as refused:
                        late.GetFactor(get_factor, timeout=5)
                    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
                # ...while the call in flight keeps the process alive.
                assert process.poll() is None
                assert not in_flight.done()

            # Released: the call in flight completes with its verdict.
            assert in_flight.result(timeout=30).outcome.result == factor_pb2.VERIFY_RESULT_VALID
        _, stderr = process.communicate(timeout=DRAIN_SECONDS + GRACE_SECONDS + 30)

    assert process.returncode == 0, stderr
    phases = lifecycle(stderr)
    assert phases == [
        "serving",
        "draining: health is NOT_SERVING, still serving",
        "stopping: new calls refused, calls in flight finishing",
        "stopped",
    ]
    records = log_records(stderr)
    stopping = next(r for r in records if r["msg"].startswith("stopping"))
    assert stopping["health_watches_ended"] == 1
    assert next(r for r in records if r["msg"].startswith("draining"))["signal"] == "SIGTERM"


# Not slow: the one drain test of the fast run (rpc/drain.py runs only in a process).
def test_a_second_signal_cuts_the_drain_short_and_the_process_exits_0(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    # A drain far longer than the test: only the second signal can end it in time.
    with dev_server(tmp_path, subprocess_env, "--drain-seconds", "3600") as (process, address):
        with grpc.insecure_channel(address) as channel:
            assert health_status(channel) == SERVING
            process.send_signal(signal.SIGTERM)
            wait_for_not_serving(channel)
            assert process.poll() is None  # draining, still serving
            stub = totp_service_pb2_grpc.TotpServiceStub(channel)
            enrolled = stub.Enroll(pb.EnrollRequest(account_id="impatient"), timeout=10)
            assert enrolled.factor.state == factor_pb2.FACTOR_STATE_PENDING
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    assert lifecycle(stderr) == [
        "serving",
        "draining: health is NOT_SERVING, still serving",
        "drain cut short by a second signal",
        "stopping: new calls refused, calls in flight finishing",
        "stopped",
    ]


@pytest.mark.slow  # a `totpd serve` process
def test_with_no_drain_window_the_process_stops_at_once_and_exits_0(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    with dev_server(tmp_path, subprocess_env, "--drain-seconds", "0") as (process, address):
        with grpc.insecure_channel(address) as channel:
            watcher = Watcher(channel)
            watcher.wait_for(1)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
            assert watcher.join(timeout=15)
    assert process.returncode == 0, stderr
    assert watcher.statuses[0] == SERVING
    assert watcher.end_code is grpc.StatusCode.UNAVAILABLE
    assert lifecycle(stderr)[-1] == "stopped"
