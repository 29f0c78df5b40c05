"""The store's own errors: every error that leaves the store is one of these (or
DeadlineExceededError), never SQLAlchemy's, a driver's or the OS's.

Design notes: ARCHITECTURE.md, "Module notes", store/errors.py, store/faults.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.pool import PoolProxiedConnection


class StoreError(Exception):
    """The root of the store's own errors; never a subclass of SQLAlchemy's classes.

    `cause` is the underlying error's type and first line, safe to log (without one,
    this error's own type).
    """

    def __init__(self, message: str = "", cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = describe(cause) if cause is not None else type(self).__name__


class LabelTakenError(StoreError):
    """Another live factor of the account already has this label."""


class StoreFaultError(StoreError):
    """The database or its files failed for a reason outside the request."""


class StoreInternalError(StoreError):
    """The database refused a statement for a reason that is not an outage (a constraint
    the code should have kept, a missing table), or SQLAlchemy was used wrongly: a bug."""


class StoreUnavailableError(StoreFaultError):
    """The database refused, dropped or failed the connection, or its files cannot be used."""


class StoreOverloadedError(StoreFaultError):
    """No pooled connection freed up in time: every one is busy."""


class RoundAbortedError(StoreUnavailableError):
    """The database aborted a verification round's transaction (a deadlock it broke,
    or an account row that changed under the round's lock).

    Nothing of the round was written; it can be decided again, and a caller
    that gives up answers UNAVAILABLE.
    """


@contextmanager
def acquiring(dialect: Dialect) -> Iterator[None]:
    """Around taking a connection from the pool: the driver's and the pool's
    errors become the store's own (the connection does not exist yet, so
    there is nothing to invalidate)."""
    try:
        yield
    except sa_exc.TimeoutError as error:
        raise StoreOverloadedError("no database connection freed up in time", error) from error
    except dialect.loaded_dbapi.Error as error:
        raise StoreUnavailableError("cannot connect to the database", error) from error


@contextmanager
def ending(dialect: Dialect, connection: PoolProxiedConnection) -> Iterator[None]:
    """Around COMMIT or ROLLBACK on a pooled DB-API connection: the driver's
    errors become the store's (a dropped connection is invalidated, so the pool
    does not try to reset it and log a stack trace)."""
    try:
        yield
    except dialect.loaded_dbapi.Error as error:
        raise wrap_driver_error(dialect, connection, error) from error


def wrap_driver_error(
    dialect: Dialect,
    connection: PoolProxiedConnection,
    error: Any,  # the driver's own Error
    cursor: DBAPICursor | None = None,
) -> StoreError:
    """A driver's error on a statement (never quoted) as the store's own: an
    outage if the connection is lost (then invalidated, so it leaves the pool) or the
    driver calls it operational, a bug otherwise."""
    lost = dialect.is_disconnect(error, connection.dbapi_connection, cursor)
    if lost:
        connection.invalidate()
    if lost or isinstance(error, dialect.loaded_dbapi.OperationalError):
        return StoreUnavailableError("the database failed a statement", error)
    return StoreInternalError("the database refused a statement", error)


def describe(cause: BaseException) -> str:
    """An error's type and first line, safe to log: never a statement or parameters."""
    return f"{type(cause).__name__}: {first_line(cause)}"[:200]


def first_line(error: BaseException) -> str:
    """The first line of an error's message, at most 200 characters: for log
    lines about a driver's own error ("database is locked", "disk I/O error"),
    never SQLAlchemy's wrapper, whose message quotes the SQL and its parameters."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else "")[:200]


def unusable_file(error: OSError, what: str) -> StoreUnavailableError:
    """A file the store needs cannot be opened or locked (read-only, full, gone)."""
    return StoreUnavailableError(f"cannot use {what}", error)
