"""Engine creation and migrations for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import fcntl
import math
import os
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from totpd import deadlines
from totpd.store import faults
from totpd.store.deadline import DeadlineExceededError, DeadlinePool, wait_limit
from totpd.store.errors import unusable_file
from totpd.store.flock_waiter import FlockWaiter
from totpd.store.watchdog import WATCHDOG, Watch
from totpd.telemetry import metrics

_MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# WAL pages past which a commit checkpoints inline (SQLite's default: 1,000).
# Several of the largest batches' pages: a large commit leaves its pages to the
# background checkpointer instead of copying them back on its caller's time,
# with totpd's writer queue held. The inline checkpoint, the one that lets the
# WAL restart, still comes every so many pages: it bounds the file.
WAL_AUTOCHECKPOINT_PAGES = 20_000
# Execution option: this transaction reads and then writes what it read, so on
# SQLite it takes the write lock up front (BEGIN IMMEDIATE).
IMMEDIATE_TRANSACTION = "totpd_immediate_transaction"
# PostgreSQL connections per engine: kept open, and opened on demand beyond them.
POOL_SIZE = 20
POOL_OVERFLOW = 20


def open_engine(url: str) -> Engine:
    """Create an engine with the settings each backend needs for concurrent use."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        in_memory = parsed.database in (None, "", ":memory:")
        # A checkout waits at most until the call's deadline (DeadlinePool);
        # an in-memory database keeps SQLAlchemy's per-thread pool.
        pool: dict[str, Any] = {} if in_memory else {"poolclass": DeadlinePool}
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **pool,
        )
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_sqlite)
        event.listen(engine, "checkout", _bound_sqlite_busy_wait)
        _count_connections(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the supported driver; plain postgresql:// means it too.
        parsed = parsed.set(drivername="postgresql+psycopg")
    # No pre-ping: it is one more round trip on every checkout, a large share of
    # a unary Verify. A connection the database dropped fails its next
    # statement instead, is invalidated there, and the call answers UNAVAILABLE
    # (never a verdict), which clients retry; the retry gets a fresh connection.
    engine = create_engine(
        parsed, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, poolclass=DeadlinePool
    )
    _watch_postgres(engine)
    _count_connections(engine)
    return engine


def _count_connections(engine: Engine) -> None:
    """The pool's connections in use, for the metrics (telemetry/metrics.py)."""
    event.listen(engine, "checkout", lambda *_: metrics.connection_checked_out())
    event.listen(engine, "checkin", lambda *_: metrics.connection_checked_in())


# -- bounding every wait by the call's deadline (store/deadline.py) ------------

_BUSY_MS = "totpd.busy_timeout_ms"  # the busy timeout last set on a connection
_BUSY_STEP_MS = 100
_WATCH = "totpd.watch"


def _bound_sqlite_busy_wait(
    dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    """SQLite waits for another writer's lock at most until the call's deadline.

    Rounded up to `_BUSY_STEP_MS`, and set only when that changes: calls
    capped by the same maximum then share one value, and a checkout costs no
    pragma. A wait may so end up to a step after the deadline; a write never
    commits after it (store/rounds.py).
    """
    left = deadlines.remaining()
    busy_ms = SQLITE_BUSY_TIMEOUT_MS
    if left is not None:
        steps = max(1, math.ceil(left * 1000 / _BUSY_STEP_MS))
        busy_ms = min(busy_ms, steps * _BUSY_STEP_MS)
    if record.info.get(_BUSY_MS) != busy_ms:
        dbapi_connection.execute(f"PRAGMA busy_timeout={busy_ms}")
        record.info[_BUSY_MS] = busy_ms


def _watch_postgres(engine: Engine) -> None:
    """Bound every PostgreSQL wait of a call by its deadline (store/watchdog.py).

    A connection is watched while a call with a deadline has it checked out,
    reset-on-return included; one cut at the deadline is invalidated when it
    comes back, so the pool never hands it out again. Opening a connection is
    bounded by libpq's connect_timeout, which counts whole seconds, at least 2.
    """

    @event.listens_for(engine, "do_connect")
    def bound_connect(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        if deadlines.current() is not None:
            params["connect_timeout"] = max(2, math.ceil(wait_limit(math.inf)))

    @event.listens_for(engine, "connect")
    def remember_socket(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_WATCH] = Watch(dbapi_connection.fileno())

    @event.listens_for(engine, "checkout")
    def arm(_dbapi: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        deadline = deadlines.current()
        if deadline is not None:
            WATCHDOG.arm(record.info[_WATCH], deadline)

    @event.listens_for(engine, "checkin")
    def disarm(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        watch = record.info.get(_WATCH)
        if watch is not None and WATCHDOG.disarm(watch) and dbapi_connection is not None:
            record.invalidate()  # its socket is shut: never reused

    @event.listens_for(engine, "close")
    def forget(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        watch = record.info.get(_WATCH)
        if watch is not None:
            WATCHDOG.disarm(watch)  # the fd is about to be closed, maybe reused


def _configure_sqlite(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    # SQLAlchemy, not the driver, begins transactions (see _begin_sqlite).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the single writer; the busy timeout makes
    # writers queue instead of failing; NORMAL is durable at every WAL checkpoint.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    record.info[_BUSY_MS] = SQLITE_BUSY_TIMEOUT_MS  # a checkout sets it again only if it differs
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin_sqlite(connection: Connection) -> None:
    """Reads BEGIN (deferred); a transaction that writes what it read BEGINs
    IMMEDIATE (verification rounds say so themselves, store/rounds.py)."""
    immediate = connection.get_execution_options().get(IMMEDIATE_TRANSACTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class SqliteWriterQueue:
    """Queues writers of one SQLite database, across threads and processes.

    SQLite admits one writer; the others wait in its busy handler, which sleeps
    longer and longer between retries and, under load, made millisecond
    verifications take a hundred times longer. Here threads queue on a lock and
    processes on an flock(2) of a file beside the database, and the kernel
    wakes the next one at once.
    """

    def __init__(self, database: str | None) -> None:
        """`database`: the SQLite file (`sqlite_file`); None for one in memory."""
        self._threads = threading.Lock()
        self._path = f"{database}.writers" if database else None
        self._fd: int | None = None
        self._flock: FlockWaiter | None = None

    def __enter__(self) -> None:
        # Both waits end by the call's deadline (store/flock_waiter.py says
        # why the flock is waited for in a thread of its own).
        if not self._threads.acquire(blocking=False):
            started = time.perf_counter()
            acquired = self._threads.acquire(timeout=wait_limit(threading.TIMEOUT_MAX))
            metrics.store_waited("sqlite_writers", time.perf_counter() - started)
            if not acquired:
                raise DeadlineExceededError
        if self._path is None:
            return
        try:
            if self._flock is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                self._flock = FlockWaiter(self._fd)
            if not self._flock.acquire(wait_limit(threading.TIMEOUT_MAX)):
                raise DeadlineExceededError
        except BaseException as error:
            self._threads.release()
            if isinstance(error, OSError):  # a read-only or full filesystem: an outage
                raise unusable_file(error, "the writers' lock file beside the database") from error
            raise

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()


def sqlite_file(engine: Engine) -> str | None:
    """The path of the engine's SQLite database file; None for PostgreSQL or memory."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return database


def writer_queue(engine: Engine) -> AbstractContextManager[object]:
    """What verification rounds hold while they write: a queue for SQLite, nothing
    for PostgreSQL, whose row locks already order writers of the same rows."""
    if engine.dialect.name == "sqlite":
        return SqliteWriterQueue(sqlite_file(engine))
    return nullcontext()


@faults.translated
def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
