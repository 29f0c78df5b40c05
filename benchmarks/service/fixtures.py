"""What every service benchmark needs: databases, seeded factors, codes (the
server processes are in servers.py).

- `Database`: a SQLite file, a throwaway PostgreSQL (tests/pg_server.py, with
  PostgreSQL's durable defaults) or the disposable PostgreSQL database named by
  TOTPD_BENCH_POSTGRES_URL, with a SQLAlchemy URL for the server and a raw DB-API
  connection for the baselines. `postgres_settings` reads the durability
  settings the figures were measured with.
- `seed_factors`: N ACTIVE SHA1/6/30 factors written straight through the store's
  table (the row shape `MfaService.enroll` + confirm produce), sealed with the
  server's keyring. The raw secrets stay in the benchmark's memory.
- `FactorPool`: hands out (factor, step) pairs that the server will accept as
  VALID: each factor's steps ascend and stay within [now, now + 1], the window the
  server accepts, so replay protection never turns a measured call into REPLAYED.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, make_url, text

from totpd import otp
from totpd.calls import DEFAULT_TENANT
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
    pg_pid: int | None = None  # the postmaster; its children are the backends (throwaway only)
    source: str = ""  # PostgreSQL: "throwaway" (tests/pg_server.py) or "external" (the env var)
    data_dir: Path | None = None  # the throwaway PostgreSQL's data directory

    def connect_raw(self) -> Any:
        """A DB-API connection configured like the server's (for the baselines)."""
        if self.sqlite_path is not None:
            connection = sqlite3.connect(self.sqlite_path, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA busy_timeout=10000")
            connection.execute("PRAGMA synchronous=NORMAL")
            return connection
        import psycopg

        return psycopg.connect(libpq_url(self.url))


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as a libpq connection URI (for psycopg.connect)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def sqlite_database(directory: Path) -> Iterator[Database]:
    path = directory / "totpd.sqlite3"
    yield Database("sqlite", f"sqlite:///{path}", sqlite_path=path)


POSTGRES_URL_ENV = "TOTPD_BENCH_POSTGRES_URL"
# The benchmark's tables: migrate() creates them, an external database gets them dropped.
BENCH_TABLES = ("factors", "alembic_version")
BENCH_PREFIX = "bench"  # seed_factors' account ids: f"{BENCH_PREFIX}-{i:07d}"


@contextlib.contextmanager
def postgres_database() -> Iterator[Database]:
    """A throwaway PostgreSQL server with PostgreSQL's durable defaults, or the
    database named by TOTPD_BENCH_POSTGRES_URL.

    The throwaway server is the one the tests use (tests/pg_server.py), started
    with `durable=True`: fsync, synchronous_commit and full_page_writes stay on,
    so every COMMIT waits for its WAL flush as on a production server (the tests
    turn them off for speed).

    TOTPD_BENCH_POSTGRES_URL (a SQLAlchemy URL, e.g.
    postgresql+psycopg://user:password@host:5432/dbname; plain postgresql:// means
    psycopg too) must name a **disposable** database: the benchmark drops its
    tables (factors, alembic_version) before the run, creates and fills them, and
    drops them again at the end. It refuses to drop a factors table that holds
    any account the benchmark did not seed. The database's server is not the
    benchmark's to measure: its CPU (`db cpu`) reads `-`.
    """
    external = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if external:
        parsed = make_url(external)
        if parsed.get_backend_name() != "postgresql":
            raise ValueError(f"{POSTGRES_URL_ENV} must be a postgresql:// URL, not {external!r}")
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        database = Database(
            "postgresql", parsed.render_as_string(hide_password=False), source="external"
        )
        _drop_bench_tables(database)
        try:
            yield database
        finally:
            _drop_bench_tables(database)
        return

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.pg_server import ThrowawayPostgres

    server = ThrowawayPostgres(durable=True)
    server.start()
    try:
        yield Database(
            "postgresql",
            server.url,
            pg_pid=server.postmaster_pid,
            source="throwaway",
            data_dir=server.data_dir,
        )
    finally:
        server.stop()


def _drop_bench_tables(database: Database) -> None:
    """Drop the benchmark's tables from an external database, if they hold only its rows."""
    with database.connect_raw() as connection:
        exists = connection.execute("SELECT to_regclass('factors') IS NOT NULL").fetchone()[0]
        if exists:
            foreign = connection.execute(
                "SELECT count(*) FROM factors WHERE account_id NOT LIKE %s",
                (f"{BENCH_PREFIX}-%",),
            ).fetchone()[0]
            if foreign:
                raise RuntimeError(
                    f"{POSTGRES_URL_ENV}: the database's factors table holds {foreign} accounts"
                    " the benchmark did not seed; give it a disposable database (the benchmark"
                    " drops its tables)"
                )
        for table in BENCH_TABLES:
            connection.execute(f"DROP TABLE IF EXISTS {table}")
        connection.commit()


# The settings that decide what a COMMIT costs, and the server's shape.
POSTGRES_SETTINGS = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "wal_level",
    "commit_delay",
    "shared_buffers",
    "max_connections",
)


DURABILITY_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")


def postgres_settings(database: Database) -> dict[str, Any]:
    """What the PostgreSQL figures were measured with, read from the server itself."""
    with database.connect_raw() as connection:
        settings: dict[str, Any] = {
            name: connection.execute(f"SHOW {name}").fetchone()[0] for name in POSTGRES_SETTINGS
        }
        version = connection.execute("SHOW server_version").fetchone()[0]
    return {
        "source": database.source,
        "url": make_url(database.url).render_as_string(hide_password=True),
        "server_version": version,
        "durable": all(settings[name] == "on" for name in DURABILITY_SETTINGS),
        "settings": settings,
        "data_dir_filesystem": (
            None if database.data_dir is None else filesystem_of(database.data_dir)
        ),
    }


def sqlite_settings(database: Database) -> dict[str, Any]:
    """The pragmas the server's own engine sets (server/totpd/store/database.py)."""
    assert database.sqlite_path is not None
    engine = open_engine(database.url)
    try:
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            level = connection.exec_driver_sql("PRAGMA synchronous").scalar()
    finally:
        engine.dispose()
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return {
        "journal_mode": mode,
        "synchronous": names.get(int(level or 0), str(level)),
        "file_filesystem": filesystem_of(database.sqlite_path.parent),
    }


def filesystem_of(path: Path) -> str | None:
    """The filesystem type holding `path` (tmpfs makes fsync free), from /proc/self/mounts."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, kind = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


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


def seed_factors(
    engine: Engine, keyring: Keyring, count: int, *, prefix: str = BENCH_PREFIX
) -> Seeded:
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
        sealed = keyring.seal(factor_id, account_id, secret)
        factor_ids.append(factor_id)
        account_ids.append(account_id)
        secrets.append(secret)
        rows.append(
            {
                "id": factor_id,
                "account_id": account_id,
                "tenant": DEFAULT_TENANT,
                "label": "Authenticator",
                "issuer": "totpd",
                "algorithm": "SHA1",
                "digits": DIGITS,
                "period_seconds": PERIOD,
                "state": "active",
                "secret_key_id": sealed.key_id,
                "secret_nonce": sealed.nonce,
                "secret_ciphertext": sealed.ciphertext,
                "secret_format": 2,
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


def measure_on_seeded(
    db: str,
    factors: int,
    name: str,
    measure: Callable[[Database, Path, FactorPool], dict[str, Any]],
) -> dict[str, Any]:
    """`measure` on a throwaway database ("sqlite" or "postgresql") seeded with
    `factors` factors, in a temporary data directory removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"totpd-{name}-bench-{db}-"))
    opener = sqlite_database(data_dir) if db == "sqlite" else postgres_database()
    try:
        with opener as database:
            pool = FactorPool(seed_database(database, data_dir, factors))
            return measure(database, data_dir, pool)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


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
        self.order = list(range(len(self.last)))  # the order the cursor takes factors in
        self.cursor = 0
        self.waited_seconds = 0.0

    def scatter(self, seed: int = 16) -> None:
        """Take factors in a fixed random order instead of their seeding (and account
        id) order: a call's accounts then land anywhere in an account-keyed index,
        as real sign-ins do, not on neighbouring pages."""
        random.Random(seed).shuffle(self.order)

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
                index = self.order[self.cursor]
                self.cursor = (self.cursor + 1) % size
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
