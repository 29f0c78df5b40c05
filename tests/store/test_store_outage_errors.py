"""Where driver, SQLAlchemy and OS errors cross into the store's callers, they become
the store's own (StoreUnavailableError, StoreOverloadedError), which the fault
classifier knows: never a psycopg, sqlite3, SQLAlchemy or OS error.

The paths: taking a DB-API connection from the pool (verification rounds),
COMMIT and ROLLBACK on it, SQLite's locked read cut midway, the SQLite writers'
lock file, and the health ping.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.ports import free_loopback_port
from tests.store.conftest import invalidations
from totpd.domain import FactorState
from totpd.service.errors import ErrorReason
from totpd.service.faults import is_store_fault, store_fault
from totpd.service.mfa import MfaService
from totpd.store import AttemptRequest, FactorStore, open_engine, rounds
from totpd.store.database import SqliteWriterQueue
from totpd.store.errors import StoreOverloadedError, StoreUnavailableError

NOBODY = [AttemptRequest("nobody", 6, None)]


def _unreachable(kind: str, tmp_path: Path) -> Engine:
    """An engine whose every connection attempt fails: nothing listens on the
    PostgreSQL port; the SQLite path is a directory (unopenable, as root too)."""
    if kind == "postgresql":
        return open_engine(f"postgresql+psycopg://totpd@127.0.0.1:{free_loopback_port()}/totpd")
    (tmp_path / "gone.sqlite3").mkdir()
    return open_engine(f"sqlite:///{tmp_path / 'gone.sqlite3'}")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_connection_the_pool_cannot_open_is_store_unavailable_on_every_round_path(
    kind: str, tmp_path: Path
) -> None:
    engine = _unreachable(kind, tmp_path)
    attempts = FactorStore(engine).attempts
    try:
        with pytest.raises(StoreUnavailableError) as read:
            attempts.read(NOBODY, state=FactorState.ACTIVE, now=0)
        with pytest.raises(StoreUnavailableError), attempts.locked():
            pass
    finally:
        engine.dispose()
    assert is_store_fault(read.value)
    driver = "OperationalError: "
    assert read.value.cause.startswith(driver)
    assert "SELECT" not in read.value.cause
    fault = store_fault(read.value, "Verify")
    assert fault is not None
    assert fault.reason is ErrorReason.STORE_UNAVAILABLE


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_ping_of_an_unreachable_database_is_store_unavailable(
    kind: str, tmp_path: Path
) -> None:
    engine = _unreachable(kind, tmp_path)
    try:
        with pytest.raises(StoreUnavailableError) as caught:
            FactorStore(engine).ping()
    finally:
        engine.dispose()
    assert caught.value.cause.startswith("OperationalError: ")


def test_the_ping_of_a_reachable_database_returns(engine: Engine) -> None:
    FactorStore(engine).ping()


def test_a_pool_with_no_free_connection_is_store_overloaded(engine: Engine) -> None:
    small = create_engine(engine.url, pool_size=1, max_overflow=0, pool_timeout=0.05)
    held = small.raw_connection()
    try:
        with pytest.raises(StoreOverloadedError) as caught:
            FactorStore(small).attempts.read(NOBODY, state=FactorState.ACTIVE, now=0)
    finally:
        held.close()
        small.dispose()
    assert not isinstance(caught.value, StoreUnavailableError)
    fault = store_fault(caught.value, "Verify")
    assert fault is not None
    assert fault.reason is ErrorReason.OVERLOADED


def test_an_unopenable_writers_lock_file_is_store_unavailable_and_releases_the_queue(
    tmp_path: Path,
) -> None:
    """A read-only filesystem refuses to create the lock file; a directory in its
    place refuses it too, as root, where file modes would not."""
    database = tmp_path / "ro.sqlite3"
    Path(f"{database}.writers").mkdir()
    queue = SqliteWriterQueue(str(database))
    for _ in range(2):  # the thread lock was released: the second try fails alike
        with pytest.raises(StoreUnavailableError) as caught, queue:
            pass
        assert caught.value.cause.startswith("IsADirectoryError: ")
        assert is_store_fault(caught.value)


@pytest.mark.postgres
def test_a_commit_on_a_dropped_postgres_connection_is_an_outage_without_a_pool_stack(
    postgres_url: str, _postgres_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    engine = open_engine(f"{postgres_url}?application_name=totpd-commit-drop-test")
    attempts = FactorStore(engine).attempts
    try:
        with (
            invalidations(engine) as invalidated,
            pytest.raises(StoreUnavailableError) as caught,
            attempts.locked() as locked,
        ):
            assert locked.read(NOBODY, state=FactorState.ACTIVE, now=0) == []
            with _postgres_engine.begin() as admin:
                admin.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = 'totpd-commit-drop-test'"
                    )
                )
        # the pool replaced the dropped connection: the next round works
        assert attempts.read(NOBODY, state=FactorState.ACTIVE, now=0) == []
    finally:
        engine.dispose()
    assert len(invalidated) == 1
    assert not isinstance(caught.value, SQLAlchemyError)
    assert is_store_fault(caught.value)
    assert not [r for r in caplog.records if r.exc_info is not None]


def test_a_locked_sqlite_read_cut_midway_is_an_outage_and_frees_the_write_lock(
    service: MfaService,
    engine: Engine,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQLite's locked bulk read (one row of JSON, store/rounds.py) stopped by the
    database in the middle of its statement, as `sqlite3_interrupt` stops it: the
    store's outage, the write lock and the writers' queue given back, and the
    pooled connection usable by the next round."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's locked read only")
    accounts = [f"{account_id}-{n}" for n in range(3)]
    for account in accounts:
        enroll_active(service, clock, account)
    requests = [AttemptRequest(account, 6, None) for account in accounts]
    real = rounds._rows_in_one_step
    cut: list[int] = []

    def cut_midway(connection: Any, *args: Any) -> Any:
        sqlite = connection._connection.dbapi_connection
        sqlite.set_progress_handler(lambda: cut.append(1) or 1, 20)  # stop after 20 steps
        try:
            return real(connection, *args)
        finally:
            sqlite.set_progress_handler(None, 0)

    monkeypatch.setattr(rounds, "_rows_in_one_step", cut_midway)
    attempts = service.deps.store.attempts
    with pytest.raises(StoreUnavailableError) as caught, attempts.locked() as locked:
        locked.read(requests, state=FactorState.ACTIVE, now=int(clock.now))
    assert cut and caught.value.cause == "OperationalError: interrupted"
    assert store_fault(caught.value, "BatchVerify") is not None
    # No lock left behind: another writer gets SQLite's at once.
    other = sqlite3.connect(engine.url.database or "", timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.rollback()
    finally:
        other.close()
    monkeypatch.undo()
    with attempts.locked() as locked:  # the queue and the pool give the next round its turn
        found = locked.read(requests, state=FactorState.ACTIVE, now=int(clock.now))
    assert sorted(factor.account_id for factor in found) == accounts
