"""SQLite WAL checkpoints off the write path.

Design notes: ARCHITECTURE.md, "Module notes", store/checkpoints.py.
"""

from __future__ import annotations

import logging
import sqlite3
import weakref

from sqlalchemy import Engine

from totpd.daemon import DaemonThread
from totpd.store.database import sqlite_file
from totpd.store.errors import first_line

_log = logging.getLogger("totpd.store")

CHECKPOINT_INTERVAL_SECONDS = 0.1
THREAD_NAME = "totpd-wal-checkpoint"


class WalCheckpointer(DaemonThread):
    """A daemon thread checkpointing one SQLite database file's WAL.

    It lives as long as the engine it serves: it holds only a weak reference,
    and stops once the engine is gone (or at `stop`). A failing checkpoint is
    logged once, not every interval, and tried again: meanwhile the commits'
    own inline checkpoints keep the WAL bounded.
    """

    def __init__(
        self, engine: Engine, busy_timeout_ms: int, interval: float = CHECKPOINT_INTERVAL_SECONDS
    ) -> None:
        database = sqlite_file(engine)
        if database is None:
            raise ValueError("a WAL checkpointer needs a SQLite database file")
        self._engine = weakref.ref(engine)
        self._database = database
        self._busy_timeout_ms = busy_timeout_ms
        self._interval = interval
        super().__init__(THREAD_NAME)

    def checkpoint(self, connection: sqlite3.Connection) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (busy, WAL frames, frames checkpointed)."""
        busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(busy), int(frames), int(copied)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._database, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        return connection

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        failing = False
        try:
            while not self._stopping.wait(self._interval) and self._engine() is not None:
                try:
                    connection = connection or self._connect()
                    self.checkpoint(connection)
                except Exception as error:  # the thread must outlive any one failure
                    if not failing:
                        _log.warning(
                            "background WAL checkpoints failing; commits checkpoint inline",
                            extra={"error_type": type(error).__name__, "cause": first_line(error)},
                        )
                    failing = True
                    if connection is not None:
                        connection.close()
                        connection = None
                    continue
                if failing:
                    _log.info("background WAL checkpoints work again")
                    failing = False
        finally:
            if connection is not None:
                connection.close()


def start_checkpointer(engine: Engine, busy_timeout_ms: int) -> WalCheckpointer | None:
    """Start checkpointing the engine's database in the background, if it is a
    SQLite file (PostgreSQL checkpoints on its own; memory databases have no WAL)."""
    if sqlite_file(engine) is None:
        return None
    return WalCheckpointer(engine, busy_timeout_ms).start()
