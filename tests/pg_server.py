"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temp dir.

Runs as the `postgres` system user when the tests run as root (initdb refuses
root), listens on a free loopback port and a private socket dir, and is
removed when the test session ends. TOTPD_TEST_POSTGRES_URL points the tests at
an existing server instead.

By default it trades durability for speed, as a test database may: initdb
--no-sync, fsync=off, synchronous_commit=off, full_page_writes=off. `durable=True`
(the service benchmark's choice) keeps PostgreSQL's own defaults instead: every
COMMIT waits for its WAL flush, as on a production server.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.ports import free_loopback_port


class PostgresUnavailableError(Exception):
    pass


def _bin_dir() -> Path:
    # Debian keeps the server binaries out of PATH, one directory per major version.
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PostgresUnavailableError("PostgreSQL is not installed (apt-get install postgresql)")


# What the fast (default) mode changes; durable mode leaves PostgreSQL's defaults (all on).
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class ThrowawayPostgres:
    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self._bin = _bin_dir()
        self._dir = Path(tempfile.mkdtemp(prefix="totpd-pg-"))
        self.port = free_loopback_port()
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailableError(
                    "running as root needs the postgres system user"
                ) from None
            os.chown(self._dir, user.pw_uid, user.pw_gid)
            self._prefix = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://totpd@127.0.0.1:{self.port}/totpd"

    @property
    def data_dir(self) -> Path:
        return self._dir / "data"

    @property
    def postmaster_pid(self) -> int:
        """The server's main process (first line of its postmaster.pid)."""
        return int((self._dir / "data" / "postmaster.pid").read_text().split("\n", 1)[0])

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._prefix, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise PostgresUnavailableError(
                f"{Path(args[0]).name} failed: {done.stderr.strip()[-500:]}"
            )

    def start(self) -> None:
        data = self._dir / "data"
        self._run(
            str(self._bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "totpd",
            "--auth=trust",
            *([] if self.durable else ["--no-sync"]),
            "-E",
            "UTF8",
            "--locale=C",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self._dir} -c max_connections=200"
        )
        if not self.durable:
            options += "".join(f" -c {name}={value}" for name, value in FAST_SETTINGS.items())
        self._run(
            str(self._bin / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "-l",
            str(self._dir / "log"),
            "start",
        )
        self._run(
            str(self._bin / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "totpd",
            "totpd",
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise PostgresUnavailableError("PostgreSQL did not start listening")

    def stop(self) -> None:
        try:
            self._run(
                str(self._bin / "pg_ctl"), "-D", str(self._dir / "data"), "-m", "immediate", "stop"
            )
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
