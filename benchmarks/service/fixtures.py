"""What every service benchmark needs: databases, seeded factors, codes, server processes.

- `Database`: a SQLite file or a throwaway PostgreSQL (tests/pg_server.py), with
  a SQLAlchemy URL for the server and a raw DB-API connection for the baselines.
- `seed_factors`: N ACTIVE SHA1/6/30 factors written straight through the store's
  table (the row shape `MfaService.enroll` + confirm produce), sealed with the
  server's keyring. The raw secrets stay in the benchmark's memory.
- `FactorPool`: hands out (factor, step) pairs that the server will accept as
  VALID: each factor's steps ascend and stay within [now, now + 1], the window the
  server accepts, so replay protection never turns a measured call into REPLAYED.
- `ServerProcess`: `python -m totpd serve` on 127.0.0.1:0 with a ready file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, text

from totpd import otp
from totpd.crypto import Keyring, write_new_keyring
from totpd.service.types import Algorithm
from totpd.store import migrate, open_engine
from totpd.store.models import FactorRow

ROOT = Path(__file__).resolve().parents[2]
PERIOD = 30
DIGITS = 6


# --- databases ---------------------------------------------------------------


@dataclass
class Database:
    name: str  # "sqlite" or "postgresql"
    url: str  # SQLAlchemy URL, also given to `totpd serve --database-url`
    sqlite_path: Path | None = None
    pg_port: int | None = None
    pg_pid: int | None = None  # the postmaster; its children are the backends

    def connect_raw(self) -> Any:
        """A DB-API connection configured like the server's (for the baselines)."""
        if self.sqlite_path is not None:
            connection = sqlite3.connect(self.sqlite_path, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA busy_timeout=10000")
            connection.execute("PRAGMA synchronous=NORMAL")
            return connection
        import psycopg

        return psycopg.connect(f"host=127.0.0.1 port={self.pg_port} user=totpd dbname=totpd")


@contextlib.contextmanager
def sqlite_database(directory: Path) -> Iterator[Database]:
    path = directory / "totpd.sqlite3"
    yield Database("sqlite", f"sqlite:///{path}", sqlite_path=path)


@contextlib.contextmanager
def postgres_database() -> Iterator[Database]:
    """A throwaway PostgreSQL server (the one the tests use), or TOTPD_BENCH_POSTGRES_URL."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.pg_server import ThrowawayPostgres

    server = ThrowawayPostgres()
    server.start()
    try:
        yield Database("postgresql", server.url, pg_port=server.port, pg_pid=server.postmaster_pid)
    finally:
        server.stop()


# --- seeding -----------------------------------------------------------------


@dataclass
class Seeded:
    factor_ids: list[str]
    account_ids: list[str]
    secrets: list[bytes]
    seconds: float


def make_keyring(data_dir: Path) -> Keyring:
    """The keyring file `totpd serve --data-dir data_dir` will load."""
    path = data_dir / "totpd.key"
    if not path.exists():
        write_new_keyring(path)
    return Keyring.load(path)


def seed_factors(engine: Engine, keyring: Keyring, count: int, *, prefix: str = "bench") -> Seeded:
    """Insert `count` ACTIVE SHA1/6/30 factors, one per account, in bulk."""
    started = time.perf_counter()
    migrate(engine)
    now = int(time.time())
    factor_ids: list[str] = []
    account_ids: list[str] = []
    secrets: list[bytes] = []
    rows: list[dict[str, object]] = []
    for i in range(count):
        factor_id = str(uuid.uuid4())
        account_id = f"{prefix}-{i:07d}"
        secret = os.urandom(20)
        sealed = keyring.seal(factor_id, secret)
        factor_ids.append(factor_id)
        account_ids.append(account_id)
        secrets.append(secret)
        rows.append(
            {
                "id": factor_id,
                "account_id": account_id,
                "label": "Authenticator",
                "issuer": "totpd",
                "algorithm": "SHA1",
                "digits": DIGITS,
                "period_seconds": PERIOD,
                "state": "active",
                "secret_key_id": sealed.key_id,
                "secret_nonce": sealed.nonce,
                "secret_ciphertext": sealed.ciphertext,
                "last_used_step": -1,
                "failed_attempts": 0,
                "blocked_until": 0,
                "created_at": now,
                "confirmed_at": now,
                "last_used_at": None,
                "expires_at": None,
            }
        )
    with engine.begin() as connection:
        for start in range(0, len(rows), 5000):
            connection.execute(insert(FactorRow), rows[start : start + 5000])
    with engine.begin() as connection:
        # Fresh statistics, as autovacuum would have them on a long-running server.
        connection.execute(
            text("ANALYZE factors" if engine.dialect.name != "sqlite" else "ANALYZE")
        )
    return Seeded(factor_ids, account_ids, secrets, time.perf_counter() - started)


def seed_database(database: Database, data_dir: Path, count: int) -> Seeded:
    keyring = make_keyring(data_dir)
    engine = open_engine(database.url)
    try:
        return seed_factors(engine, keyring, count)
    finally:
        engine.dispose()


# --- codes the server accepts ------------------------------------------------


def current_step() -> int:
    return int(time.time()) // PERIOD


class FactorPool:
    """Fresh (factor index, step) pairs, each accepted exactly once by the server.

    A factor's step may be the current one or the next (window 1); it must be
    greater than the last step used. Cycling through all factors spreads the use,
    and when every factor has used step now + 1 we wait for the next step.
    """

    def __init__(self, seeded: Seeded) -> None:
        self.seeded = seeded
        self.last = array("q", [-1]) * len(seeded.factor_ids)
        self.cursor = 0
        self.waited_seconds = 0.0

    def __len__(self) -> int:
        return len(self.last)

    def take(self, n: int) -> list[tuple[int, int]]:
        """n pairs with distinct factors; each factor's steps only ever ascend."""
        size = len(self.last)
        if n > size:
            raise ValueError(f"asked for {n} distinct factors, the pool has {size}")
        out: list[tuple[int, int]] = []
        while True:
            # Stay one second clear of a step boundary, so "now" at the server is
            # the same step or the next one (both inside window 1 of our choice).
            into = time.time() % PERIOD
            if into > PERIOD - 1:
                time.sleep(PERIOD - into + 0.05)
            low = current_step()
            high = low + 1
            scanned = 0
            taken: set[int] = {index for index, _ in out}
            while len(out) < n and scanned < size:
                index = self.cursor
                self.cursor = (index + 1) % size
                scanned += 1
                step = max(self.last[index] + 1, low)
                if step <= high and index not in taken:
                    self.last[index] = step
                    out.append((index, step))
                    taken.add(index)
            if len(out) == n:
                return out
            # Every factor has used step now + 1: wait for the clock.
            pause = PERIOD - time.time() % PERIOD + 0.05
            self.waited_seconds += pause
            time.sleep(pause)

    def code(self, index: int, step: int) -> str:
        return otp.hotp(self.seeded.secrets[index], step, DIGITS, Algorithm.SHA1)

    def account(self, index: int) -> str:
        return self.seeded.account_ids[index]

    def factor(self, index: int) -> str:
        return self.seeded.factor_ids[index]


# --- server processes --------------------------------------------------------


class ServerProcess:
    """`python -m totpd serve` on a free loopback port; `address` once it is serving."""

    def __init__(self, data_dir: Path, database_url: str, name: str = "totpd") -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.name = name
        self.ready_file = data_dir / f"{name}.ready"
        self.log_path = data_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self, timeout: float = 90.0) -> str:
        self.ready_file.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        command = [
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
        ]
        self.process = subprocess.Popen(command, stdout=log, stderr=log, cwd=self.data_dir)
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

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/<pid>/stat after the command name: state, ppid, ... (Linux)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    return _cpu(_stat_fields(pid))


def database_cpu_seconds(database: Database) -> float | None:
    """CPU seconds used so far by a PostgreSQL server: the postmaster and every
    process it started (backends, WAL writer, autovacuum). None for SQLite,
    which runs inside the server processes. A backend that exited takes its
    seconds with it: the servers keep their pooled connections open."""
    if database.pg_pid is None:
        return None
    total = cpu_seconds(database.pg_pid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(entry.name)
            if int(fields[1]) == database.pg_pid:
                total += _cpu(fields)
    return total
