"""Shared fixtures: databases (SQLite and a real PostgreSQL), a settable clock,
and a fully wired MfaService on the real store, keyring and native core."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.pg_server import PostgresUnavailableError, ThrowawayPostgres
from totpd.crypto import Keyring, write_new_keyring
from totpd.service.faults import FAULT_LOG
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.store import FactorStore, audit_sql, migrate, open_engine

IN_CI = os.environ.get("CI", "").lower() == "true"
# Servers the tests start as processes (`totpd serve`) put their metrics
# listener on a free port, not the default 9464 that any other totpd on this
# machine may hold (a taken port is only a warning, but a test reads logs).
os.environ.setdefault("TOTPD_METRICS_ADDRESS", "127.0.0.1:0")

# A fixed, realistic start time: 2026-11-28, past 2^31 seconds is tested in the core.
START_TIME = 1_795_000_000.0


class Clock:
    """The server clock, under the test's control."""

    def __init__(self, now: float = START_TIME) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    external = os.environ.get("TOTPD_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    try:
        server = ThrowawayPostgres()
        server.start()
    except (PostgresUnavailableError, OSError) as error:
        if IN_CI:
            pytest.fail(f"CI needs PostgreSQL for the store tests: {error}")
        pytest.skip(f"PostgreSQL tests skipped: {error}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _postgres_engine(postgres_url: str) -> Iterator[Engine]:
    engine = open_engine(postgres_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        sqlite_engine = open_engine(f"sqlite:///{tmp_path / 'totpd.sqlite3'}")
        migrate(sqlite_engine)
        yield sqlite_engine
        sqlite_engine.dispose()
        return
    pg_engine: Engine = request.getfixturevalue("_postgres_engine")
    with pg_engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE factors, accounts, request_records, audit_events, audit_calls, "
                "recovery_codes"
            )
        )
    yield pg_engine


@pytest.fixture(params=["insert", "copy"])
def audit_writes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """PostgreSQL appends a round's events by INSERT or, from a number of them
    on, by COPY (store/audit_sql.py): "copy" takes COPY from the first event, so
    a test's few events go that way too. SQLite inserts either way."""
    if request.param == "copy":
        monkeypatch.setattr(audit_sql, "COPY_FROM_EVENTS", 1)
    return str(request.param)


@pytest.fixture(autouse=True)
def _fresh_fault_log() -> None:
    """Store-fault log lines are rate-limited per process: each test starts afresh."""
    FAULT_LOG.reset()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    path = tmp_path / "keyring.json"
    write_new_keyring(path)
    return Keyring.load(path)


@pytest.fixture
def policy() -> Policy:
    return Policy()


@pytest.fixture
def service(engine: Engine, keyring: Keyring, policy: Policy, clock: Clock) -> MfaService:
    return MfaService(FactorStore(engine), keyring, policy, clock)


@pytest.fixture
def account_id() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"
