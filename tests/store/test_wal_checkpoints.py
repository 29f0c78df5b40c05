"""The SQLite WAL checkpointer: it copies committed pages back while writers go
on, and it stops with the engine it serves."""

from __future__ import annotations

import gc
import logging
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from totpd.store import migrate, open_engine
from totpd.store.checkpoints import WalCheckpointer, start_checkpointer
from totpd.store.database import SQLITE_BUSY_TIMEOUT_MS


def test_a_passive_checkpoint_copies_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    database = tmp_path / "totpd.sqlite3"
    engine = open_engine(f"sqlite:///{database}")
    try:
        migrate(engine)
        writer = sqlite3.connect(database, isolation_level=None)
        writer.execute("PRAGMA wal_autocheckpoint=0")  # only our checkpoint copies
        writer.execute("CREATE TABLE t (x)")
        writer.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(200)])
        # A writer now holds SQLite's write lock; a PASSIVE checkpoint goes on.
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO t VALUES (-1)")
        checkpointer = WalCheckpointer(engine, SQLITE_BUSY_TIMEOUT_MS)
        reader = sqlite3.connect(database, isolation_level=None, timeout=0.5)
        started = time.monotonic()
        busy, frames, copied = checkpointer.checkpoint(reader)
        assert time.monotonic() - started < 0.4  # did not wait for the write lock
        assert busy == 0 and frames > 0 and copied == frames
        writer.execute("COMMIT")
        writer.close()
        reader.close()
    finally:
        engine.dispose()


def test_the_background_thread_keeps_the_wal_copied_and_stops_with_its_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int, int]] = []
    real = WalCheckpointer.checkpoint
    mine: list[WalCheckpointer] = []

    def recording(self: WalCheckpointer, connection: sqlite3.Connection) -> tuple[int, int, int]:
        result = real(self, connection)
        if self in mine:  # other tests' servers may still be checkpointing
            seen.append(result)
        return result

    monkeypatch.setattr(WalCheckpointer, "checkpoint", recording)
    database = tmp_path / "totpd.sqlite3"
    engine = open_engine(f"sqlite:///{database}")
    migrate(engine)
    checkpointer = start_checkpointer(engine, SQLITE_BUSY_TIMEOUT_MS)
    assert checkpointer is not None and checkpointer.is_running()
    mine.append(checkpointer)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x)"))
        for n in range(100):
            connection.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
    deadline = time.monotonic() + 10
    # Bounded: the thread checkpoints every 0.1 s; the commit's pages are copied.
    while not any(frames and copied == frames for _, frames, copied in seen):
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    engine.dispose()
    del engine, connection
    gc.collect()
    deadline = time.monotonic() + 10
    while checkpointer.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not checkpointer.is_running()


def test_a_failing_checkpoint_is_logged_once_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def flaky(self: WalCheckpointer, connection: sqlite3.Connection) -> tuple[int, int, int]:
        nonlocal calls
        calls += 1
        if calls <= 5:
            raise sqlite3.OperationalError("disk I/O error")
        return (0, 0, 0)

    monkeypatch.setattr(WalCheckpointer, "checkpoint", flaky)
    engine = open_engine(f"sqlite:///{tmp_path / 'totpd.sqlite3'}")
    migrate(engine)
    checkpointer = WalCheckpointer(engine, SQLITE_BUSY_TIMEOUT_MS, interval=0.01)
    with caplog.at_level(logging.INFO, logger="totpd.store"):
        checkpointer.start()
        deadline = time.monotonic() + 10
        while calls < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        checkpointer.stop()
    engine.dispose()
    messages = [record.getMessage() for record in caplog.records]
    assert calls >= 7
    assert messages.count("background WAL checkpoints failing; commits checkpoint inline") == 1
    assert messages.count("background WAL checkpoints work again") == 1
    failing = next(r for r in caplog.records if "failing" in r.getMessage())
    assert failing.__dict__["cause"] == "disk I/O error"


def test_the_server_starts_one_for_its_sqlite_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from totpd import app
    from totpd.config import Settings
    from totpd.crypto import write_new_keyring

    started: list[WalCheckpointer | None] = []

    def recording(engine: Engine, busy_timeout_ms: int) -> WalCheckpointer | None:
        started.append(start_checkpointer(engine, busy_timeout_ms))
        return started[-1]

    monkeypatch.setattr(app, "start_checkpointer", recording)
    settings = Settings(data_dir=tmp_path, key_file=tmp_path / "totpd.key")
    write_new_keyring(settings.key_file)
    service = app.build_service(settings)
    (checkpointer,) = started
    assert checkpointer is not None and checkpointer.is_running()
    checkpointer.stop()
    del service


def test_only_sqlite_files_get_a_checkpointer() -> None:
    memory = create_engine("sqlite://")
    assert start_checkpointer(memory, SQLITE_BUSY_TIMEOUT_MS) is None
    memory.dispose()
