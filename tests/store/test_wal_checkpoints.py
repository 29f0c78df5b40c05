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

from totpd.store import database as database_module
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

    engine = open_engine(f"sqlite:///{tmp_path / 'totpd.sqlite3'}")
    migrate(engine)
    checkpointer = WalCheckpointer(engine, SQLITE_BUSY_TIMEOUT_MS, interval=0.01)
    # This checkpointer only: another test's service may still run one of its own.
    monkeypatch.setattr(checkpointer, "checkpoint", flaky.__get__(checkpointer))
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


def _write_pages(engine: Engine, rows: int) -> None:
    """One commit of `rows` rows of about a page each."""
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS pages (x BLOB)"))
        connection.exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO pages SELECT zeroblob(3000) FROM n",
            (rows,),
        )


def test_a_large_commit_leaves_its_pages_to_the_background_checkpointer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past SQLite's default of 1,000 pages, and still below totpd's threshold, a
    commit copies nothing back itself: its pages wait in the WAL, and the
    database file grows only when a checkpoint (the thread's; here one from
    another connection) copies them."""
    monkeypatch.setattr(database_module, "WAL_AUTOCHECKPOINT_PAGES", 5_000)
    database = tmp_path / "totpd.sqlite3"
    engine = open_engine(f"sqlite:///{database}")
    try:
        _write_pages(engine, 1_500)
        written = 1_500 * 3_000
        assert database.stat().st_size < written  # nothing copied back inline
        outside = sqlite3.connect(database, isolation_level=None)
        busy, frames, copied = outside.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        outside.close()
        assert busy == 0 and frames > 1_500 and copied == frames
        assert database.stat().st_size > written
    finally:
        engine.dispose()


def test_the_inline_checkpoint_still_bounds_the_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits past the threshold checkpoint inline and restart the WAL, so its
    file never grows far beyond the threshold and one commit, however much is
    written in all."""
    threshold, per_commit = 200, 50
    monkeypatch.setattr(database_module, "WAL_AUTOCHECKPOINT_PAGES", threshold)
    database = tmp_path / "totpd.sqlite3"
    engine = open_engine(f"sqlite:///{database}")
    wal = Path(f"{database}-wal")
    try:
        with engine.connect() as connection:
            page = connection.exec_driver_sql("PRAGMA page_size").scalar_one()
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == threshold
        largest = 0
        for _ in range(40):  # 2,000 pages written in all: 10x the threshold
            _write_pages(engine, per_commit)
            largest = max(largest, wal.stat().st_size)
        frame = page + 24  # each WAL frame: its page and a 24-byte header
        assert largest <= 32 + (threshold + 2 * per_commit) * frame
    finally:
        engine.dispose()
