"""Databases that stop answering, for the deadline tests.

PostgreSQL: a dedicated throwaway server whose postmaster and every child
(the backends of the pooled connections included) get SIGSTOP, and always
SIGCONT afterwards. Its connections stay open; the kernel still takes the
bytes the client sends, and the server reads them when it resumes.

SQLite has no server process: "hung" means another holder of the lock a
writer waits for, either another connection in `BEGIN IMMEDIATE` (SQLite's
write lock: a writer waits in its busy handler) or another process holding
totpd's writer queue (the flock of store/database.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import Engine, text

from tests.conftest import IN_CI
from tests.pg_server import PostgresUnavailableError, ThrowawayPostgres
from totpd.store import Attempts, migrate, open_engine


class HangingDatabase(Protocol):
    kind: str
    url: str

    def hung(self) -> AbstractContextManager[None]: ...

    def settle(self, statement: str = "UPDATE factors") -> None:
        """After `hung`: wait until `statement`, received while hung, has run."""


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry))
    return found


@dataclass
class PausedPostgres:
    """A dedicated PostgreSQL that logs every statement it finished (with its duration)."""

    server: ThrowawayPostgres
    kind: str = "postgresql"

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def log_file(self) -> Path:
        return self.server.data_dir.parent / "log"

    @contextmanager
    def hung(self) -> Iterator[None]:
        postmaster = self.server.postmaster_pid
        stopped = [postmaster, *_children(postmaster)]
        self._log_before_resume = ""
        try:
            for pid in stopped:
                # A backend may exit between the listing and the signal: nothing to stop.
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            yield
            self._log_before_resume = self.log_file.read_text(errors="replace")
        finally:
            for pid in stopped:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def settle(self, statement: str = "UPDATE factors") -> None:
        """Wait until `statement`, sent while the server was stopped, has run.

        Proves the late write reached the server and was executed there (the
        log line comes when it finished): the test then shows it changed nothing.
        """
        before = len(self._log_before_resume)
        pattern = re.compile(rf"duration: [^\n]*: {re.escape(statement)}", re.IGNORECASE)
        for _ in range(200):
            if pattern.search(self.log_file.read_text(errors="replace"), before):
                return
            time.sleep(0.05)
        raise AssertionError(f"{statement!r}, sent while the server was stopped, never ran")


@dataclass
class LockedSqlite:
    """An SQLite file whose write lock (`how` = "write-lock") or writer queue
    (`how` = "writer-queue") another holder keeps."""

    path: Path
    how: str

    @property
    def kind(self) -> str:
        return f"sqlite-{self.how}"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    @contextmanager
    def hung(self) -> Iterator[None]:
        if self.how == "write-lock":
            import sqlite3

            other = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                other.execute("BEGIN IMMEDIATE")
                yield
                other.execute("ROLLBACK")
            finally:
                other.close()
            return
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_FLOCK, f"{self.path}.writers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == b"locked\n"
            yield
        finally:
            holder.kill()
            holder.wait(timeout=10)

    def settle(self, statement: str = "UPDATE factors") -> None:
        """Nothing runs late: SQLite has no server to catch up."""


_HOLD_FLOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def enable_statement_log(engine: Engine) -> None:
    """Make the dedicated server log every finished statement (`settle` reads it)."""
    with engine.connect() as connection:
        driver = connection.connection.dbapi_connection
        assert driver is not None
        driver.autocommit = True  # type: ignore[attr-defined]
        cursor = driver.cursor()
        cursor.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
        cursor.execute("SELECT pg_reload_conf()")
        cursor.close()
        driver.autocommit = False  # type: ignore[attr-defined]


# -- fixtures (imported by the deadline test modules) ---------------------------


@pytest.fixture(scope="module")
def paused_postgres() -> Iterator[PausedPostgres]:
    """A PostgreSQL of this module's own: the tests stop and resume it."""
    try:
        server = ThrowawayPostgres()
        server.start()
    except (PostgresUnavailableError, OSError) as error:
        if IN_CI:
            pytest.fail(f"CI needs PostgreSQL for the deadline tests: {error}")
        pytest.skip(f"PostgreSQL tests skipped: {error}")
    try:
        engine = open_engine(server.url)
        migrate(engine)
        enable_statement_log(engine)
        engine.dispose()
        yield PausedPostgres(server)
    finally:
        server.stop()


@pytest.fixture(
    params=[
        "sqlite-write-lock",
        "sqlite-writer-queue",
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> HangingDatabase:
    """A migrated, empty database of each kind, and a way to hang it."""
    if request.param == "postgresql":
        paused: PausedPostgres = request.getfixturevalue("paused_postgres")
        engine = open_engine(paused.url)
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE factors"))
        engine.dispose()
        return paused
    locked = LockedSqlite(tmp_path / "totpd.sqlite3", request.param.removeprefix("sqlite-"))
    engine = open_engine(locked.url)
    migrate(engine)
    engine.dispose()
    return locked


@pytest.fixture
def hung_engine(database: HangingDatabase) -> Iterator[Engine]:
    """An engine on `database` (hang it with `database.hung()`)."""
    engine = open_engine(database.url)
    yield engine
    engine.dispose()


def hang_before_write(
    monkeypatch: pytest.MonkeyPatch, database: HangingDatabase, stack: ExitStack, write: int = 1
) -> None:
    """Hang the database just before the `write`-th round write: its read was answered."""
    real = Attempts.write_if_unchanged
    made = 0

    def write_after_hanging(self: Attempts, *args: Any, **kwargs: Any) -> Any:
        nonlocal made
        made += 1
        if made == write:
            stack.enter_context(database.hung())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Attempts, "write_if_unchanged", write_after_hanging)
