"""The SQLite WAL checkpointer: it copies committed pages back while writers go
on, and it stops with the engine it serves."""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from totpd.store import migrate, open_engine
from totpd.store.checkpoints import WalCheckpointer, start_checkpointer
from totpd.store.database import SQLITE_BUSY_TIMEOUT_MS


def checkpointer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "totpd-wal-checkpoint"]


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

    def recording(self: WalCheckpointer, connection: sqlite3.Connection) -> tuple[int, int, int]:
        result = real(self, connection)
        seen.append(result)
        return result

    monkeypatch.setattr(WalCheckpointer, "checkpoint", recording)
    database = tmp_path / "totpd.sqlite3"
    engine = open_engine(f"sqlite:///{database}")
    migrate(engine)
    before = len(checkpointer_threads())
    checkpointer = start_checkpointer(engine, SQLITE_BUSY_TIMEOUT_MS)
    assert checkpointer is not None
    assert len(checkpointer_threads()) == before + 1
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
    del engine, checkpointer, connection
    gc.collect()
    deadline = time.monotonic() + 10
    while len(checkpointer_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(checkpointer_threads()) == before


def test_only_sqlite_files_get_a_checkpointer() -> None:
    memory = create_engine("sqlite://")
    assert start_checkpointer(memory, SQLITE_BUSY_TIMEOUT_MS) is None
    memory.dispose()
