"""Health tells the truth: the store probe turns health NOT_SERVING while the
database is down or hung, SERVING when it answers again, logs one line per
change, and never brings SERVING back once the server began shutting down.

The probe's logic runs against a real grpc HealthServicer with a ping the test
controls; the wiring against a real server and a real PostgreSQL (stopped, and
paused with SIGSTOP) and SQLite (its file made unopenable).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.pg_faults import FaultyPostgres, faulty_postgres
from tests.rpc.conftest import make_settings, mfa_service, sqlite_file_gone
from tests.rpc.harness import LiveServer, LogCapture, running_server
from totpd.config import Settings
from totpd.rpc.health_probe import StoreHealthProbe
from totpd.rpc.server import SERVICE_NAME, start_health_probe
from totpd.store import migrate, open_engine
from totpd.store.errors import StoreUnavailableError

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
NAMES = ("", SERVICE_NAME)
WAIT_SECONDS = 20.0


class _Context:
    """What HealthServicer.Check needs of a servicer context."""

    def set_code(self, code: grpc.StatusCode) -> None:
        raise AssertionError(f"unknown service: {code}")


def statuses(servicer: health.HealthServicer) -> set[int]:
    """The status of every name the probe sets, as one set (one value if they agree)."""
    return {
        servicer.Check(health_pb2.HealthCheckRequest(service=name), _Context()).status
        for name in NAMES
    }


class Ping:
    """A store ping the test controls: answers, fails, or hangs until released."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.release = threading.Event()
        self.release.set()
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        self.release.wait()
        if self.error is not None:
            raise self.error

    def hang(self) -> None:
        self.release.clear()


def serving() -> health.HealthServicer:
    """A servicer as create_server leaves it: every name SERVING."""
    servicer = health.HealthServicer()
    for name in NAMES:
        servicer.set(name, SERVING)
    return servicer


def probe_of(ping: Ping, servicer: health.HealthServicer, timeout: float = 0.2) -> StoreHealthProbe:
    return StoreHealthProbe(ping, servicer, NAMES, interval=0.05, timeout=timeout)


def probe_lines(capture: LogCapture) -> list[str]:
    records = [json.loads(line) for line in capture.lines]
    return [f"{r['level']} {r['msg']}" for r in records if r["logger"] == "totpd.health"]


DOWN = StoreUnavailableError("the database does not answer", ConnectionRefusedError("refused"))


def test_a_failing_ping_turns_health_not_serving_and_an_answer_turns_it_back(
    no_secrets_in_logs: LogCapture,
) -> None:
    servicer, ping = serving(), Ping()
    probe = probe_of(ping, servicer)

    assert probe.check() is True
    assert statuses(servicer) == {SERVING}
    ping.error = DOWN
    assert [probe.check() for _ in range(3)] == [False, False, False]
    assert statuses(servicer) == {NOT_SERVING}
    ping.error = None
    assert [probe.check() for _ in range(3)] == [True, True, True]
    assert statuses(servicer) == {SERVING}

    # One line per change, none while the state holds; the cause, no stack.
    assert probe_lines(no_secrets_in_logs) == [
        "WARNING store unreachable: health NOT_SERVING",
        "INFO store reachable again: health SERVING",
    ]
    (warning,) = [json.loads(line) for line in no_secrets_in_logs.lines if "unreachable" in line]
    assert warning["cause"] == "ConnectionRefusedError: refused"
    assert "exc" not in warning


def test_a_ping_that_hangs_turns_health_not_serving_and_is_not_started_twice() -> None:
    servicer, ping = serving(), Ping()
    probe = probe_of(ping, servicer, timeout=0.1)
    ping.hang()

    assert probe.check() is False
    assert statuses(servicer) == {NOT_SERVING}
    assert probe.check() is False  # waits again for the same ping
    assert ping.calls == 1

    ping.release.set()  # the database answers again
    assert probe.check() is True
    assert statuses(servicer) == {SERVING}
    assert probe.check() is True
    assert ping.calls == 2


def test_the_probe_never_brings_serving_back_after_graceful_shutdown() -> None:
    servicer, ping = serving(), Ping()
    probe = probe_of(ping, servicer)
    ping.error = DOWN
    probe.check()
    servicer.enter_graceful_shutdown()
    ping.error = None

    assert probe.check() is True  # the store answers, but the server is shutting down
    assert statuses(servicer) == {NOT_SERVING}

    healthy = serving()
    healthy_probe = probe_of(Ping(), healthy)
    healthy.enter_graceful_shutdown()
    healthy_probe.check()
    assert statuses(healthy) == {NOT_SERVING}


def test_a_stopped_probe_sets_nothing_and_its_thread_ends() -> None:
    servicer, ping = serving(), Ping()
    probe = probe_of(ping, servicer).start()
    wait_until(lambda: ping.calls >= 2)

    probe.stop()
    ping.error = DOWN
    assert probe.check() is False
    assert statuses(servicer) == {SERVING}
    assert not any(t.name == "totpd-health-probe" for t in threading.enumerate())
    probe.stop()  # idempotent


def test_the_probe_thread_follows_the_store_on_its_own() -> None:
    servicer, ping = serving(), Ping()
    probe = probe_of(ping, servicer).start()
    try:
        ping.error = DOWN
        wait_until(lambda: statuses(servicer) == {NOT_SERVING})
        ping.error = None
        wait_until(lambda: statuses(servicer) == {SERVING})
        ping.hang()
        wait_until(lambda: statuses(servicer) == {NOT_SERVING})
        ping.release.set()
        wait_until(lambda: statuses(servicer) == {SERVING})
    finally:
        ping.release.set()
        probe.stop()


def wait_until(condition: Callable[[], bool], seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {seconds:g} s")
        time.sleep(0.02)


# -- a real server on a real database -------------------------------------------


def checked(live: LiveServer) -> set[int]:
    """Health as a client sees it, for both names."""
    stub = health_pb2_grpc.HealthStub(live.channel)
    return {
        stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status for name in NAMES
    }


@pytest.fixture
def probe_settings(tmp_path: Path) -> Settings:
    return replace(
        make_settings(tmp_path),
        health_probe_interval_seconds=0.1,
        health_probe_timeout_seconds=0.5,
    )


@contextmanager
def probed_server(
    settings: Settings, engine: Engine
) -> Iterator[tuple[LiveServer, StoreHealthProbe]]:
    """A real server on `engine` with the store probe running, as `serve` runs it."""
    service = mfa_service(engine, settings, Clock())
    with running_server(settings, service) as live:
        probe = start_health_probe(settings, service, live.health)
        try:
            yield live, probe
        finally:
            probe.stop()


@pytest.fixture(scope="module")
def pg() -> Iterator[FaultyPostgres]:
    with faulty_postgres() as server:
        yield server


@pytest.mark.postgres
def test_health_is_not_serving_while_postgresql_is_stopped_or_paused(
    pg: FaultyPostgres, probe_settings: Settings, no_secrets_in_logs: LogCapture
) -> None:
    engine = open_engine(pg.url)
    migrate(engine)
    try:
        with probed_server(probe_settings, engine) as (live, probe):
            assert checked(live) == {SERVING}
            pg.halt()
            try:
                wait_until(lambda: checked(live) == {NOT_SERVING})
            finally:
                pg.restart()
            wait_until(lambda: checked(live) == {SERVING})

            with pg.paused():  # hung, not down: only the probe's timeout notices
                wait_until(lambda: checked(live) == {NOT_SERVING})
            wait_until(lambda: checked(live) == {SERVING})

            live.health.enter_graceful_shutdown()
            assert checked(live) == {NOT_SERVING}
            pg.halt()
            try:
                wait_until(lambda: not probe.healthy)
            finally:
                pg.restart()
            wait_until(lambda: probe.healthy)  # the probe saw the store answer again...
            assert checked(live) == {NOT_SERVING}  # ...and health stayed NOT_SERVING
    finally:
        engine.dispose()

    lines = probe_lines(no_secrets_in_logs)
    assert (
        lines[:4]
        == [
            "WARNING store unreachable: health NOT_SERVING",
            "INFO store reachable again: health SERVING",
        ]
        * 2
    )
    records = [json.loads(line) for line in no_secrets_in_logs.lines]
    assert not [r for r in records if "exc" in r or "stack" in r]
    causes = [r["cause"] for r in records if r["msg"].startswith("store unreachable")]
    assert causes[1] == "no answer within 0.5 s"


def test_health_is_not_serving_while_the_sqlite_file_cannot_be_opened(
    tmp_path: Path, probe_settings: Settings
) -> None:
    database = tmp_path / "probed.sqlite3"
    engine = open_engine(f"sqlite:///{database}")
    migrate(engine)
    try:
        with probed_server(probe_settings, engine) as (live, _probe):
            assert checked(live) == {SERVING}
            engine.dispose()
            with sqlite_file_gone(database):
                wait_until(lambda: checked(live) == {NOT_SERVING})
            wait_until(lambda: checked(live) == {SERVING})
    finally:
        engine.dispose()


# -- settings --------------------------------------------------------------------


def test_the_probe_settings_default_to_two_seconds_and_are_bounded() -> None:
    from totpd.config import ConfigError, load_settings

    defaults = load_settings(environ={})
    assert (defaults.health_probe_interval_seconds, defaults.health_probe_timeout_seconds) == (
        2.0,
        2.0,
    )
    tuned = load_settings(
        environ={
            "TOTPD_HEALTH_PROBE_INTERVAL_SECONDS": "0.5",
            "TOTPD_HEALTH_PROBE_TIMEOUT_SECONDS": "3",
        }
    )
    assert (tuned.health_probe_interval_seconds, tuned.health_probe_timeout_seconds) == (0.5, 3.0)
    for key, value in [
        ("TOTPD_HEALTH_PROBE_INTERVAL_SECONDS", "0"),
        ("TOTPD_HEALTH_PROBE_TIMEOUT_SECONDS", "-1"),
        ("TOTPD_HEALTH_PROBE_TIMEOUT_SECONDS", "soon"),
    ]:
        with pytest.raises(ConfigError, match=key.removeprefix("TOTPD_").lower()):
            load_settings(environ={key: value})
