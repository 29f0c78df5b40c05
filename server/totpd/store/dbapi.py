"""Statements on the DB-API cursor: compiled once per dialect, run without SQLAlchemy's
per-execution work.

Design notes: ARCHITECTURE.md, "Module notes", store/dbapi.py.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from sqlalchemy import Dialect, Engine, Insert, Select, Update
from sqlalchemy.pool import PoolProxiedConnection

from totpd import deadlines
from totpd.store import deadline
from totpd.store.errors import RoundAbortedError, acquiring, ending, wrap_driver_error

# PostgreSQL's "deadlock detected": a multi-row write (whose row order is the
# plan's) met another round holding rows in the opposite order.
_DEADLOCK_SQLSTATE = "40P01"


class CompiledStatement(NamedTuple):
    """A statement's SQL for one dialect, and how to lay out its parameters."""

    sql: str
    defaults: dict[str, object]  # the values bound at build time (literals)
    order: tuple[str, ...] | None  # parameter names by position; None: by name

    def parameters(self, values: dict[str, object]) -> Sequence[object] | dict[str, object]:
        """The DB-API parameters: `values` and the literals, laid out for the driver."""
        merged = {**self.defaults, **values}
        return merged if self.order is None else [merged[name] for name in self.order]


# The JSON text a statement binds (a round's keys, rows and events): compact, and
# without the encoder's check for lists that contain themselves, which values
# built from rows cannot, and which was most of the encoding's cost.
json_text: Callable[[object], str] = json.JSONEncoder(
    check_circular=False, separators=(",", ":")
).encode

_COMPILED: dict[tuple[int, str], CompiledStatement] = {}
_CURSOR = "totpd.store.cursor"  # key of the reusable cursor in a connection's info
_PIPELINE_CURSORS = "totpd.store.pipeline_cursors"  # and of a pipeline's cursors
_BEGIN_IMMEDIATE = CompiledStatement("BEGIN IMMEDIATE", {}, ())


def compiled(statement: Select[Any] | Update | Insert, dialect: Dialect) -> CompiledStatement:
    """Compile a cached statement once per dialect (the statements live forever)."""
    key = (id(statement), dialect.name)
    found = _COMPILED.get(key)
    if found is None:
        result = statement.compile(dialect=dialect)
        defaults = {name: bind.value for bind, name in result.bind_names.items()}
        order = tuple(result.positiontup or ()) if result.positional else None
        found = _COMPILED[key] = CompiledStatement(result.string, defaults, order)
    return found


def run_compiled(
    dialect: Dialect,
    connection: PoolProxiedConnection,
    statement: CompiledStatement,
    values: dict[str, object],
) -> Sequence[tuple[Any, ...]]:
    """Run the statement on a DB-API cursor of the pooled connection.

    The parameters and columns are plain ints, strings and bytes, which need
    no processing. Driver errors become the store's own (`_mapped_errors`).
    """
    parameters = statement.parameters(values)
    cursor = _cursor(connection)
    with _mapped_errors(dialect, connection, cursor):
        cursor.execute(statement.sql, parameters)
        rows: Sequence[tuple[Any, ...]] = cursor.fetchall()
        return rows


def run_compiled_each(
    dialect: Dialect,
    connection: PoolProxiedConnection,
    statement: CompiledStatement,
    rows: Sequence[dict[str, object]],
) -> list[Sequence[tuple[Any, ...]]]:
    """PostgreSQL: the statement once per row of values, all sent before any
    answer is read (psycopg's executemany pipelines them: one round trip);
    each execution's returned rows."""
    parameters = [statement.parameters(row) for row in rows]
    returned: list[Sequence[tuple[Any, ...]]] = []
    cursor = _cursor(connection)
    with _mapped_errors(dialect, connection, cursor):
        if dialect.is_async:
            # SQLAlchemy's asyncio adapter (the benchmarks' loop probe) takes no
            # `returning`: one statement at a time there.
            for one in parameters:
                cursor.execute(statement.sql, one)
                returned.append(cursor.fetchall())
            return returned
        cursor.executemany(statement.sql, parameters, returning=True)
        returned.append(cursor.fetchall())
        while cursor.nextset():
            returned.append(cursor.fetchall())
        return returned


def copy_rows(
    dialect: Dialect,
    connection: PoolProxiedConnection,
    into: CopyInto,
    rows: Iterable[Sequence[object]],
) -> int:
    """PostgreSQL: `rows` appended by one binary COPY; the number of rows copied."""
    cursor = _cursor(connection)
    with _mapped_errors(dialect, connection, cursor):
        with cursor.copy(into.sql) as copy:
            copy.set_types(into.types)
            for row in rows:
                copy.write_row(row)
        return int(cursor.rowcount)


class CopyInto(NamedTuple):
    """A binary COPY into some of a table's columns, with their PostgreSQL types."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]

    @property
    def sql(self) -> str:
        return f"COPY {self.table} ({', '.join(self.columns)}) FROM STDIN (FORMAT BINARY)"


def _cursor(connection: PoolProxiedConnection) -> Any:
    """The connection's reusable cursor."""
    # One cursor per connection, kept with it (`info` lives as long as the
    # DB-API connection): a new psycopg cursor per statement cost ~12 µs.
    cursor = connection.info.get(_CURSOR)
    if cursor is None:
        cursor = connection.info[_CURSOR] = connection.cursor()
    return cursor


@contextmanager
def _mapped_errors(
    dialect: Dialect, connection: PoolProxiedConnection, cursor: Any = None
) -> Iterator[None]:
    """The block's driver errors made the store's (`wrap_driver_error`: a dropped
    connection is invalidated, so it leaves the pool), without the parameters;
    the time spent reported to the benchmarks' timer."""
    dbapi = dialect.loaded_dbapi
    timer = _statement_timer
    started = time.perf_counter() if timer is not None else 0.0
    try:
        yield
    except dbapi.Error as error:
        if getattr(error, "sqlstate", None) == _DEADLOCK_SQLSTATE:
            raise RoundAbortedError(
                "the database broke a deadlock by aborting the round", error
            ) from error
        raise wrap_driver_error(dialect, connection, error, cursor) from error
    finally:
        if timer is not None:
            timer(time.perf_counter() - started)


class Pipeline:
    """PostgreSQL: statements sent one after another, none waiting for the answer
    of the one before (psycopg's pipeline mode); `RawConnection.pipeline` reads
    every answer in one round trip at the end of its block. A cursor per statement,
    so each keeps its answer; kept with the connection for the next block."""

    def __init__(self, dialect: Dialect, connection: PoolProxiedConnection) -> None:
        self._dialect = dialect
        self._connection = connection
        self._cursors: list[Any] = connection.info.setdefault(_PIPELINE_CURSORS, [])
        self._used = 0

    def send(self, statement: Select[Any] | Update | Insert, values: dict[str, object]) -> Any:
        """Send a statement; its cursor, whose rows are there after the block."""
        compiled_ = compiled(statement, self._dialect)
        cursor = self._next_cursor()
        cursor.execute(compiled_.sql, compiled_.parameters(values))
        return cursor

    def send_each(self, statement: Update, rows: Sequence[dict[str, object]]) -> Any:
        """Send a statement once per row of values; its cursor, whose `rowcount`
        after the block is the rows all of them touched."""
        compiled_ = compiled(statement, self._dialect)
        cursor = self._next_cursor()
        # Not `returning`: psycopg would wait for those answers before going on.
        cursor.executemany(compiled_.sql, [compiled_.parameters(row) for row in rows])
        return cursor

    def _next_cursor(self) -> Any:
        """The block's next cursor, one per statement (not the connection's `_cursor`)."""
        if self._used == len(self._cursors):
            self._cursors.append(self._connection.cursor())
        cursor = self._cursors[self._used]
        self._used += 1
        return cursor


class RawConnection:
    """A pooled DB-API connection for one round, in autocommit mode or not.

    SQLite's connections are in autocommit mode already (database.py); a
    transaction is an explicit `BEGIN IMMEDIATE`, the write lock up front.
    psycopg's autocommit flag is set for the round and restored before the
    connection goes back to the pool, where the ORM expects transactions.
    """

    def __init__(self, engine: Engine, *, autocommit: bool) -> None:
        self.dialect = engine.dialect
        self._engine = engine
        self._autocommit = autocommit
        self._postgres = engine.dialect.name == "postgresql"

    def __enter__(self) -> RawConnection:
        # The pool raises the driver's own errors here (SQLAlchemy wraps only
        # statements): made the store's, so an outage is never taken for a bug.
        with acquiring(self.dialect):
            self._connection = self._engine.raw_connection()
        if self._postgres and self._autocommit:
            self._connection.dbapi_connection.autocommit = True  # type: ignore[union-attr]
        return self

    def __exit__(self, *exc_info: object) -> None:
        connection = self._connection
        try:
            dbapi = connection.dbapi_connection
            if self._postgres and self._autocommit and dbapi is not None and not dbapi.closed:
                dbapi.autocommit = False
        finally:
            connection.close()  # back to the pool, which rolls back what was left open

    def set_autocommit(self, on: bool) -> None:
        """Autocommit mode on or off for what follows (between transactions: a
        connection kept for a round's read and then its write)."""
        if self._postgres and on != self._autocommit:
            self._connection.dbapi_connection.autocommit = on  # type: ignore[union-attr]
            self._autocommit = on

    def run(
        self, statement: Select[Any] | Update | Insert, values: dict[str, object]
    ) -> Sequence[Any]:
        return run_compiled(
            self.dialect, self._connection, compiled(statement, self.dialect), values
        )

    def run_count(self, statement: Update | Insert, values: dict[str, object]) -> int:
        """Run a statement that returns no rows; the number of rows it changed
        (the driver's count on the connection's cursor)."""
        self.run(statement, values)
        return int(self._connection.info[_CURSOR].rowcount)

    def run_each(self, statement: Update, rows: Sequence[dict[str, object]]) -> list[Sequence[Any]]:
        return run_compiled_each(
            self.dialect, self._connection, compiled(statement, self.dialect), rows
        )

    @contextmanager
    def pipeline(self) -> Iterator[Pipeline]:
        """PostgreSQL: what the block sends goes out without waiting, and every
        answer comes back in one round trip as the block ends (the first
        statement that fails raises then; the ones after it did not run)."""
        with _mapped_errors(self.dialect, self._connection):
            with self._connection.dbapi_connection.pipeline():  # type: ignore[union-attr]
                yield Pipeline(self.dialect, self._connection)

    def begin(self) -> None:
        # psycopg begins on the first statement; SQLite needs it said.
        if not self._postgres:
            run_compiled(self.dialect, self._connection, _BEGIN_IMMEDIATE, {})

    @property
    def postgres(self) -> bool:
        return self._postgres

    @property
    def info(self) -> dict[Any, Any]:
        """Kept with the DB-API connection, as long as it lives."""
        return self._connection.info

    def run_sql(self, statement: CompiledStatement) -> Sequence[Any]:
        return run_compiled(self.dialect, self._connection, statement, {})

    def copy(self, into: CopyInto, rows: Iterable[Sequence[object]]) -> int:
        return copy_rows(self.dialect, self._connection, into, rows)

    def commit(self) -> None:
        deadline.check()  # after its deadline a transaction is rolled back instead
        with ending(self.dialect, self._connection):
            self._connection.commit()

    def rollback(self) -> None:
        with ending(self.dialect, self._connection):
            self._connection.rollback()


# -- timing statements (benchmarks) --------------------------------------------

# Set only inside `timed_statements`; a server never sets it.
_statement_timer: Callable[[float], None] | None = None


@contextmanager
def timed_statements(record: Callable[[float], None]) -> Iterator[None]:
    """Pass `record` the seconds each statement spends in the driver while the block runs.

    The seam for benchmarks (benchmarks/service/breakdown.py) that tell the
    database's and driver's time (the cursor's execute and fetch) from the
    store's own work around it. Process-wide, one block at a time.
    """
    global _statement_timer
    if _statement_timer is not None:
        raise RuntimeError("statements are already being timed")
    _statement_timer = record
    try:
        yield
    finally:
        _statement_timer = None


# -- the deadline on the database's clock --------------------------------------

_CLOCK_OFFSET = "totpd.store.clock_offset"  # (offset, measured at), in a connection's info
_CLOCK_OFFSET_TTL = 60.0  # seconds before the offset is measured again
_POSTGRES_CLOCK = CompiledStatement(
    "SELECT extract(epoch FROM clock_timestamp())::float8", {}, None
)


def deadline_on_database_clock(connection: RawConnection) -> float:
    """The call's deadline as the database's clock reads it: seconds since the
    epoch (infinity without a deadline); DeadlineExceededError once it passed.

    SQLite runs in this process, on this clock. PostgreSQL's clock may be off
    ours: its offset is measured per connection, with the round trip counted
    against the deadline, so the deadline in SQL falls no later than ours.
    """
    left = deadline.wait_limit(math.inf)
    ends = deadlines.current()
    if ends is None:
        return math.inf
    if not connection.postgres:
        return time.time() + left
    measured = connection.info.get(_CLOCK_OFFSET)
    if measured is None or time.monotonic() - measured[1] > _CLOCK_OFFSET_TTL:
        ((database_now,),) = connection.run_sql(_POSTGRES_CLOCK)
        now = time.monotonic()
        # The database read its clock before we received it: `now` is late,
        # so the offset is low, never high.
        measured = connection.info[_CLOCK_OFFSET] = (float(database_now) - now, now)
    offset: float = measured[0]
    return ends + offset


def forget_clock_offset(connection: RawConnection) -> None:
    """Measure the database clock's offset again before the connection's next write."""
    connection.info.pop(_CLOCK_OFFSET, None)
