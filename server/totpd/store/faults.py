"""Which exceptions mean the database, not the request, failed.

Both the gRPC error mapping and BatchVerify (which answers a fault per item)
classify errors here, so the two can never disagree. The store's own errors
(store/errors.py: connection acquisition, the SQLite writer queue's lock file)
and SQLAlchemy's (statements) are both recognised.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from totpd.store.errors import (
    StoreFaultError,
    StoreOverloadedError,
    StoreUnavailableError,
    describe,
)
from totpd.store.errors import first_line as first_line


def is_pool_exhausted(error: BaseException) -> bool:
    """No pooled connection freed up in time: every one is busy (overload)."""
    return isinstance(error, StoreOverloadedError | sa_exc.TimeoutError)


def is_outage(error: BaseException) -> bool:
    """The database refused, dropped or failed the connection or statement."""
    if isinstance(error, StoreUnavailableError | sa_exc.OperationalError):
        return True
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated


def cause_of(error: BaseException) -> str:
    """The underlying error's type and first line: the driver's error (SQLAlchemy
    keeps it as `orig`) or the store error's cause; never a statement."""
    if isinstance(error, StoreFaultError):
        return error.cause
    driver_error = getattr(error, "orig", None)
    if driver_error is None:
        return type(error).__name__
    return describe(driver_error)


def database_failure(error: BaseException) -> str | None:
    """Why the database could not be opened, migrated or read, safe to print:
    the driver's own first line (host, port, cause) or the store error's cause,
    never a statement or its parameters. None: `error` is not the database's."""
    if isinstance(error, StoreFaultError):
        return error.cause
    if isinstance(error, sa_exc.DBAPIError):
        return first_line(error.orig) if error.orig is not None else type(error).__name__
    return None
