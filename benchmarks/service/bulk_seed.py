"""Millions of factors, fast: the growth benchmark's seeding (benchmarks/service/growth.py).

Factor `i` is derived from one random master key (`DerivedFactors`): its secret, its id
(a random-looking UUID, so the primary key's pages fill as with real ids) and its
account `bench-<i>`. The benchmark therefore holds no per-factor state, and a database
grows from `have` to `want` factors by seeding only [have, want).

Every row is sealed by the server's keyring (`Keyring.seal`, as `seed_factors` does), in
a process pool. PostgreSQL loads the rows with COPY; when a load at least doubles the
table, its indexes (the primary key included) are dropped first and rebuilt afterwards
from their own definitions (one sort per index instead of millions of random inserts),
then VACUUM (FREEZE, ANALYZE) and CHECKPOINT leave the table as a long-running server
would have it: hint bits set, statistics fresh, the load's dirty pages written.
SQLite inserts with executemany in large transactions, then ANALYZE and a WAL checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.service.fixtures import (
    BENCH_PREFIX,
    DIGITS,
    PERIOD,
    Database,
    FactorPool,
    Seeded,
    current_step,
    libpq_url,
)
from totpd import otp
from totpd.calls import DEFAULT_TENANT
from totpd.crypto import Keyring
from totpd.service.types import Algorithm
from totpd.store import migrate, open_engine
from totpd.store.models import SECRET_FORMAT

# The factors table's columns in the order the loaders write them.
COLUMNS = (
    "id",
    "tenant",
    "account_id",
    "label",
    "issuer",
    "algorithm",
    "digits",
    "period_seconds",
    "state",
    "secret_key_id",
    "secret_nonce",
    "secret_ciphertext",
    "last_used_step",
    "failed_attempts",
    "blocked_until",
    "created_at",
    "confirmed_at",
    "last_used_at",
    "expires_at",
    "secret_format",
    "ended_at",
    "drift_steps",
)
CHUNK = 50_000  # rows per task of the process pool


@dataclass(frozen=True)
class DerivedFactors:
    """Factor i's secret, id and account, all derived from `master`."""

    master: bytes

    def _derive(self, purpose: bytes, index: int) -> bytes:
        return hmac.new(self.master, purpose + index.to_bytes(8, "big"), hashlib.sha256).digest()

    def secret(self, index: int) -> bytes:
        return self._derive(b"secret", index)[:20]  # SHA1's key size, as Enroll draws

    def factor_id(self, index: int) -> str:
        return str(uuid.UUID(bytes=self._derive(b"id", index)[:16], version=4))

    def account_id(self, index: int) -> str:
        return f"{BENCH_PREFIX}-{index:08d}"


class GrowthPool(FactorPool):
    """Fresh (factor, step) pairs for factors drawn at random from all `size` seeded.

    As `FactorPool`, a factor's steps ascend and stay in [now, now + 1]; only the
    factors handed out are remembered, so the pool costs nothing per seeded row.
    """

    def __init__(self, derived: DerivedFactors, size: int) -> None:  # no FactorPool state
        self.derived = derived
        self.size = size
        self.used: dict[int, int] = {}
        self.waited_seconds = 0.0
        self.random = random.Random()
        self.seeded = Seeded([], [], [], 0.0)  # unused: the factors are derived

    def __len__(self) -> int:
        return self.size

    def take(self, n: int) -> list[tuple[int, int]]:
        if n > self.size:
            raise ValueError(f"asked for {n} distinct factors, the pool has {self.size}")
        out: list[tuple[int, int]] = []
        taken: set[int] = set()
        while True:
            into = time.time() % PERIOD
            if into > PERIOD - 1:  # one second clear of a step boundary, as FactorPool
                time.sleep(PERIOD - into + 0.05)
            low = current_step()
            for index in self._candidates(n, taken):
                step = max(self.used.get(index, -1) + 1, low)
                if step <= low + 1:
                    self.used[index] = step
                    out.append((index, step))
                    taken.add(index)
                    if len(out) == n:
                        return out
            pause = PERIOD - time.time() % PERIOD + 0.05  # all used up to now + 1
            self.waited_seconds += pause
            time.sleep(pause)

    def _candidates(self, n: int, taken: set[int]) -> Iterator[int]:
        """Random factors not taken yet; then, if the pool is nearly used up, all of them."""
        for _ in range(4 * n):
            index = self.random.randrange(self.size)
            if index not in taken:
                yield index
        start = self.random.randrange(self.size)
        for offset in range(self.size):
            index = (start + offset) % self.size
            if index not in taken:
                yield index

    def code(self, index: int, step: int) -> str:
        return otp.hotp(self.derived.secret(index), step, DIGITS, Algorithm.SHA1)

    def account(self, index: int) -> str:
        return self.derived.account_id(index)

    def factor(self, index: int) -> str:
        return self.derived.factor_id(index)


def _row(derived: DerivedFactors, keyring: Keyring, index: int, now: int) -> tuple[Any, ...]:
    """One ACTIVE SHA1/6/30 factor as `MfaService.enroll` + confirm leave it."""
    factor_id, account_id = derived.factor_id(index), derived.account_id(index)
    sealed = keyring.seal(factor_id, account_id, derived.secret(index))
    return (
        factor_id, DEFAULT_TENANT, account_id, "Authenticator", "totpd", "SHA1", DIGITS, PERIOD,
        "active", sealed.key_id, sealed.nonce, sealed.ciphertext, -1, 0, 0, now, now, None,
        None, SECRET_FORMAT, None, 0,
    )  # fmt: skip


_worker_keyring: Keyring | None = None


def _load_keyring(path: str) -> None:
    global _worker_keyring  # one keyring per pool process
    _worker_keyring = Keyring.load(Path(path))


def _copy_text(value: Any) -> str:
    """A value in COPY's text format (no value here holds a tab, newline or backslash)."""
    if value is None:
        return "\\N"
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()
    return str(value)


def _chunk(master: bytes, start: int, stop: int, now: int, form: str) -> Any:
    """Rows [start, stop) sealed: COPY text (form "copy") or tuples for executemany."""
    assert _worker_keyring is not None
    derived = DerivedFactors(master)
    rows = [_row(derived, _worker_keyring, i, now) for i in range(start, stop)]
    if form == "copy":
        return "".join("\t".join(map(_copy_text, row)) + "\n" for row in rows).encode()
    return rows


def _sealed_chunks(
    derived: DerivedFactors, keyring_path: Path, start: int, stop: int, form: str, workers: int
) -> Iterator[Any]:
    """Chunks of sealed rows in order, at most 2 per worker waiting (bounded memory)."""
    now = int(time.time())
    ranges = iter(range(start, stop, CHUNK))
    pending: deque[Future[Any]] = deque()
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_load_keyring, initargs=(str(keyring_path),)
    ) as pool:
        while True:
            while len(pending) < 2 * workers:
                first = next(ranges, None)
                if first is None:
                    break
                last = min(stop, first + CHUNK)
                pending.append(pool.submit(_chunk, derived.master, first, last, now, form))
            if not pending:
                return
            yield pending.popleft().result()


def count_factors(database: Database) -> int:
    with database.connect_raw() as connection:
        return int(connection.execute("SELECT count(*) FROM factors").fetchone()[0])


def grow(
    database: Database,
    keyring_path: Path,
    derived: DerivedFactors,
    want: int,
    workers: int = 2,
    fillfactor: int | None = None,
) -> dict[str, Any]:
    """Seed factors [have, want) (the schema first, if new); the seconds each part took.

    `fillfactor` (PostgreSQL): the loaded pages are filled only this full, as pages
    whose rows were each updated once and vacuumed are; the table's own setting is
    restored after the load."""
    started = time.perf_counter()
    engine = open_engine(database.url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    have = count_factors(database)
    if have > want:
        raise ValueError(f"the database holds {have:,} factors, more than the {want:,} asked")
    figures: dict[str, Any] = {"from": have, "to": want, "rows": want - have}
    if want > have:
        form = "copy" if database.name == "postgresql" else "executemany"
        chunks = _sealed_chunks(derived, keyring_path, have, want, form, workers)
        if database.name == "postgresql":
            rebuild = want - have >= have
            figures.update(_load_postgres(database, chunks, rebuild, fillfactor))
        else:
            figures.update(_load_sqlite(database, chunks))
    figures["seconds"] = time.perf_counter() - started
    figures["rows_per_s"] = figures["rows"] / figures["seconds"]
    return figures


def _load_postgres(
    database: Database, chunks: Iterator[bytes], rebuild: bool, fillfactor: int | None
) -> dict[str, Any]:
    import psycopg

    timings: dict[str, Any] = {"indexes_rebuilt": rebuild, "fillfactor": fillfactor}
    with psycopg.connect(libpq_url(database.url)) as connection:
        connection.execute("SET maintenance_work_mem = '512MB'")  # this session's index builds
        indexes, primary = _postgres_indexes(connection) if rebuild else ([], None)
        if primary is not None:
            connection.execute(f'ALTER TABLE factors DROP CONSTRAINT "{primary[0]}"')
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        if fillfactor is not None:
            connection.execute(f"ALTER TABLE factors SET (fillfactor = {int(fillfactor)})")
        began = time.perf_counter()
        with connection.cursor().copy(f"COPY factors ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for chunk in chunks:
                copy.write(chunk)
        timings["copy_s"] = time.perf_counter() - began
        if fillfactor is not None:
            connection.execute("ALTER TABLE factors RESET (fillfactor)")
        began = time.perf_counter()
        if primary is not None:
            connection.execute(f'ALTER TABLE factors ADD CONSTRAINT "{primary[0]}" {primary[1]}')
        for _, definition in indexes:
            connection.execute(definition)
        timings["index_build_s"] = time.perf_counter() - began
        connection.commit()
    began = time.perf_counter()
    with psycopg.connect(libpq_url(database.url), autocommit=True) as connection:
        _vacuum_and_checkpoint(connection)
    timings["vacuum_checkpoint_s"] = time.perf_counter() - began
    return timings


def _vacuum_and_checkpoint(connection: Any) -> None:
    """The factors table frozen and analysed, then a checkpoint: the measurement
    pays neither hint bits nor the load's checkpoint."""
    connection.execute("VACUUM (FREEZE, ANALYZE) factors")
    connection.execute("CHECKPOINT")
    # The vacuum's page reads reach the table's statistics now, not after the
    # measurement has read them (a backend flushes when idle, at most once a second).
    connection.execute("SELECT pg_stat_force_next_flush()")
    connection.execute("SELECT 1")


def refill(database: Database, fillfactor: int) -> None:
    """Rewrite the factors table (PostgreSQL) with its pages filled only `fillfactor`
    percent, as the loads of `grow` fill them: a table whose rows were each updated
    and vacuumed has room on its pages, and its updates can be HOT. The table's own
    setting is restored afterwards."""
    import psycopg

    with psycopg.connect(libpq_url(database.url), autocommit=True) as connection:
        connection.execute(f"ALTER TABLE factors SET (fillfactor = {int(fillfactor)})")
        connection.execute("VACUUM FULL factors")
        connection.execute("ALTER TABLE factors RESET (fillfactor)")
        _vacuum_and_checkpoint(connection)


def _postgres_indexes(connection: Any) -> tuple[list[tuple[str, str]], tuple[str, str] | None]:
    """The factors table's indexes (name, CREATE statement) and its primary key
    constraint (name, definition), as the migrations made them."""
    primary = connection.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'factors'::regclass AND contype = 'p'"
    ).fetchone()
    rows = connection.execute(
        "SELECT indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = current_schema() AND tablename = 'factors' ORDER BY indexname"
    ).fetchall()
    skip = primary[0] if primary else None
    return [(name, definition) for name, definition in rows if name != skip], (
        (primary[0], primary[1]) if primary else None
    )


def postgres_index_definitions(database: Database) -> list[str]:
    """Every index of the factors table (for checking that a rebuild kept them)."""
    with database.connect_raw() as connection:
        rows = connection.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'factors' ORDER BY indexname"
        ).fetchall()
    return [row[0] for row in rows]


def _load_sqlite(database: Database, chunks: Iterator[list[tuple[Any, ...]]]) -> dict[str, Any]:
    assert database.sqlite_path is not None
    statement = (
        f"INSERT INTO factors ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
    )
    began = time.perf_counter()
    connection = sqlite3.connect(database.sqlite_path, isolation_level=None)
    try:
        connection.execute("PRAGMA cache_size = -524288")  # 512 MB for this load's index pages
        for chunk in chunks:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(statement, chunk)
            connection.execute("COMMIT")
        insert_s = time.perf_counter() - began
        began = time.perf_counter()
        connection.execute("ANALYZE")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return {"insert_s": insert_s, "analyze_checkpoint_s": time.perf_counter() - began}


def check_sample(
    database: Database, keyring: Keyring, derived: DerivedFactors, size: int, count: int = 200
) -> int:
    """Open `count` random seeded rows with the keyring; raise unless each holds its
    factor's account and secret. The number of rows checked."""
    p = "?" if database.name == "sqlite" else "%s"
    picks = random.sample(range(size), min(count, size))
    with database.connect_raw() as connection:
        for index in picks:
            row = connection.execute(
                "SELECT account_id, tenant, secret_key_id, secret_nonce, secret_ciphertext,"
                f" state FROM factors WHERE id = {p}",
                (derived.factor_id(index),),
            ).fetchone()
            if row is None or row[0] != derived.account_id(index) or row[5] != "active":
                raise RuntimeError(f"seeded factor {index} is missing or not as seeded")
            secret = keyring.open_parts(
                derived.factor_id(index), row[0], row[2], bytes(row[3]), bytes(row[4])
            )
            if not hmac.compare_digest(secret, derived.secret(index)):
                raise RuntimeError(f"seeded factor {index} opens to another secret")
    return len(picks)
