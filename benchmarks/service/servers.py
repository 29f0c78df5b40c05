"""The servers the benchmarks measure, and the CPU they use.

- `ServerProcess`: `python -m totpd serve --processes N` on 127.0.0.1:0 with a
  ready file: one process when N is 1, else a supervisor and N workers on one
  port (SO_REUSEPORT; the kernel spreads connections, not calls, over them).
- `cpu_seconds`: the CPU a process and everything it started used, so a
  supervisor's figure is its workers' (a replaced worker's seconds included).
- `thread_cpu_seconds`: the same per kind of thread (`totpd serve` names its OS
  threads: `totpd-loop`, `totpd-round`, ...).
- `database_cpu_seconds`: the same for a throwaway PostgreSQL server.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.service.fixtures import Database

# A thread's number: a pool's (`totpd-round_0`) or Python's default name's
# (`Thread-2 (_poll_wrapper)`, grpc's poller): one kind of thread across processes.
_NUMBERED = re.compile(r"_[0-9]+$|(?<=^Thread)-[0-9]+")


class ServerProcess:
    """`python -m totpd serve` on a free loopback port; `address` once it is serving."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str,
        name: str = "totpd",
        processes: int | str = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.name = name
        self.processes = processes
        self.env = env  # extra TOTPD_* settings, e.g. TOTPD_AUDIT_ENABLED=false
        self.ready_file = data_dir / f"{name}.ready"
        self.log_path = data_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self, timeout: float = 90.0) -> str:
        self.ready_file.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        environment = {**os.environ, **self.env} if self.env else None
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=log, cwd=self.data_dir, env=environment
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            if self.ready_file.exists():
                self.address = self.ready_file.read_text().strip()
                return self.address
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready; see {self.log_path}")

    def command(self) -> list[str]:
        """The server's command line; it writes its address to `ready_file` once serving."""
        return [
            sys.executable,
            "-m",
            "totpd",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(self.data_dir),
            "--database-url",
            self.database_url,
            "--ready-file",
            str(self.ready_file),
            "--processes",
            str(self.processes),
            # No load balancer to drain for: stop as soon as asked.
            "--drain-seconds",
            "0",
        ]

    @property
    def pid(self) -> int:
        """The process `cpu_seconds` reads: the only one, or the supervisor."""
        assert self.process is not None
        return self.process.pid

    @property
    def workers(self) -> int:
        """How many processes serve: one, or the supervisor's children."""
        return max(1, len(children(self.pid)))

    def connections(self, wanted: int) -> list[str]:
        """The address once per client connection: one for a single process; for
        workers `wanted` but at least two per worker, as the kernel spreads
        connections over them at random."""
        workers = self.workers
        return [self.address] * (1 if workers == 1 else max(wanted, 2 * workers))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()  # its workers get SIGTERM when it dies
            self.process.wait(timeout=10)


def _stat_fields(of: int | str | Path) -> list[str]:
    """/proc/<pid>/stat, or a thread's (`of` its /proc/<pid>/task/<tid> directory),
    after the command name: state, ppid, ... (Linux)."""
    stat = of / "stat" if isinstance(of, Path) else Path(f"/proc/{of}/stat")
    return stat.read_text().rsplit(")", 1)[1].split()


def _cpu(fields: list[str], *, reaped: bool = True) -> float:
    """utime + stime, and with `reaped` cutime + cstime: the seconds of the children
    it has reaped (a worker that was replaced; a thread has none)."""
    end = 15 if reaped else 13
    return sum(int(value) for value in fields[11:end]) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The live children of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(entry.name)
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a process, its live children and
    the children it reaped (Linux /proc): a supervisor's figure covers its workers."""
    total = _cpu(_stat_fields(pid))
    for child in children(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += _cpu(_stat_fields(child))
    return total


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU seconds used so far by each kind of thread of a process and
    of its live children, by the thread's OS name without its number
    (`totpd-round_0` counts as `totpd-round`): where a server's CPU goes. A thread
    that ended takes its seconds with it."""
    totals: dict[str, float] = {}
    for process in (pid, *children(pid)):
        for task in Path(f"/proc/{process}/task").glob("*"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                name = _NUMBERED.sub("", (task / "comm").read_text().strip())
                seconds = _cpu(_stat_fields(task), reaped=False)
                totals[name] = totals.get(name, 0.0) + seconds
    return totals


def database_cpu_seconds(database: Database) -> float | None:
    """CPU seconds used so far by a PostgreSQL server: the postmaster and every
    process it started (backends, WAL writer, autovacuum). None for SQLite,
    which runs inside the server processes."""
    if database.pg_pid is None:
        return None
    return cpu_seconds(database.pg_pid)
