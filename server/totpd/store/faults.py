"""The store's boundary: the store's own error (store/errors.py) for each SQLAlchemy or
driver error, before it leaves the store.

Design notes: ARCHITECTURE.md, "Module notes", store/errors.py, store/faults.py.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import psycopg
from sqlalchemy import exc as sa_exc

from totpd.store.errors import (
    StoreFaultError,
    StoreInternalError,
    StoreOverloadedError,
    StoreUnavailableError,
)

_P = ParamSpec("_P")
_R = TypeVar("_R")

# What never leaves the store as itself.
FOREIGN_ERRORS = (sa_exc.SQLAlchemyError, psycopg.Error, sqlite3.Error)
_DRIVER_OUTAGES = (psycopg.OperationalError, sqlite3.OperationalError)


def as_store_error(error: BaseException) -> BaseException:
    """The store's own error for `error` (one of FOREIGN_ERRORS), or `error` itself if it
    is not foreign. Only the cause's type and first line are kept: never a statement."""
    if isinstance(error, sa_exc.TimeoutError):
        return StoreOverloadedError("no database connection freed up in time", error)
    if isinstance(error, sa_exc.DBAPIError):
        cause = error.orig if error.orig is not None else error
        if isinstance(error, sa_exc.OperationalError) or error.connection_invalidated:
            return StoreUnavailableError("the database failed a statement", cause)
        return StoreInternalError("the database refused a statement", cause)
    if isinstance(error, _DRIVER_OUTAGES):
        return StoreUnavailableError("the database failed", error)
    if isinstance(error, FOREIGN_ERRORS):
        return StoreInternalError("the store failed", error)
    return error


def translated(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """A store operation whose errors leave as the store's own (`as_store_error`).
    The deadline-bound operations get the same from `deadline.bounded`."""

    @functools.wraps(function)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return function(*args, **kwargs)
        except FOREIGN_ERRORS as error:
            raise as_store_error(error) from error

    return call


def database_failure(error: BaseException) -> str | None:
    """Why the database could not be opened, migrated or read, safe to print:
    the driver's own first line (host, port, cause) or the store error's cause,
    never a statement or its parameters. None: `error` is not the database's."""
    own = as_store_error(error) if isinstance(error, sa_exc.DBAPIError) else error
    if isinstance(own, StoreFaultError | StoreInternalError):
        return own.cause
    return None
