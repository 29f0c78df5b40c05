"""A throwaway PostgreSQL a fault test may stop, restart, pause and resume.

Stopping is `pg_ctl stop -m fast` (open sessions end with "terminating
connection due to administrator command") or `-m immediate` (every process
killed, the sockets just close); either way new connections are refused.
Pausing is SIGSTOP on the postmaster and every child, as a hung host or a
frozen VM looks: connections are accepted by the kernel but never answered,
and statements on open ones never return. `paused()` always resumes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.pg_server import FAST_SETTINGS, PostgresUnavailableError, ThrowawayPostgres

IN_CI = os.environ.get("CI", "").lower() == "true"


class FaultyPostgres(ThrowawayPostgres):
    def __init__(self) -> None:
        # Durable: an immediate stop kills the server like a crash, and with the
        # fast settings (synchronous_commit off) it lost commits the test had seen.
        super().__init__(durable=True)

    def _options(self) -> str:
        # The options ThrowawayPostgres.start gives the server: a restart must listen alike.
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self._dir} -c max_connections=200"
        )
        if self.durable:
            return options
        return options + "".join(f" -c {name}={value}" for name, value in FAST_SETTINGS.items())

    def halt(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data for `restart`. "fast" ends sessions with
        a goodbye; "immediate" kills every process, so clients see the socket die."""
        self._run(str(self._bin / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self._run(
            str(self._bin / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-o",
            self._options(),
            "-w",
            "-t",
            "60",
            "-l",
            str(self._dir / "log"),
            "start",
        )

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def processes(self) -> list[int]:
        """The postmaster first, then its children (backends and helpers)."""
        postmaster = self.postmaster_pid
        return [postmaster, *_children(postmaster)]

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Every server process stopped (SIGSTOP) for the block, then continued."""
        stopped: list[int] = []
        try:
            for pid in self.processes():
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            yield
        finally:
            for pid in reversed(stopped):
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass


def _children(parent: int) -> list[int]:
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def start_faulty_postgres() -> FaultyPostgres:
    """A started server, or the test skipped (failed in CI) when PostgreSQL is missing."""
    try:
        server = FaultyPostgres()
        server.start()
    except (PostgresUnavailableError, OSError) as error:
        if IN_CI:
            pytest.fail(f"CI needs PostgreSQL for the fault tests: {error}")
        pytest.skip(f"PostgreSQL fault tests skipped: {error}")
    return server


@contextmanager
def faulty_postgres() -> Iterator[FaultyPostgres]:
    """A started server for the block; stopped after it (restarted first if a test halted it)."""
    server = start_faulty_postgres()
    try:
        yield server
    finally:
        if not server.is_running():
            server.restart()
        server.stop()
