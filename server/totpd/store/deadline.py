"""The call's deadline in the store: checked before each wait, bounding each wait.

Design notes: ARCHITECTURE.md, "Module notes", store/deadline.py.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from totpd import deadlines
from totpd.store.errors import StoreFaultError, StoreInternalError
from totpd.store.faults import FOREIGN_ERRORS, as_store_error
from totpd.telemetry import metrics

_P = ParamSpec("_P")
_R = TypeVar("_R")


class DeadlineExceededError(Exception):
    """The call's deadline passed before the database answered: nothing was committed.

    Not an OperationalError: it says nothing about the database's health.
    """

    def __init__(self) -> None:
        super().__init__("the call's deadline passed before the database answered")


def check() -> None:
    """Raise DeadlineExceededError if the call's deadline has passed (before a wait)."""
    if deadlines.expired():
        raise DeadlineExceededError


def wait_limit(longest: float) -> float:
    """How long the next wait may last: `longest`, or less if the deadline is sooner.

    Raises DeadlineExceededError once the deadline has passed.
    """
    left = deadlines.remaining()
    if left is None:
        return longest
    if left <= 0:
        raise DeadlineExceededError
    return min(left, longest)


# What a wait cut short at the deadline raises: the driver's error for a
# connection cut by the watchdog or an SQLite busy timeout, wrapped by
# SQLAlchemy or not, the pool's timeout, an OSError from the writers' lock
# file, and the store's own errors those become (store/errors.py).
_WAIT_ERRORS = (*FOREIGN_ERRORS, OSError, StoreFaultError, StoreInternalError)


def bounded(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """A store operation whose database error, once the deadline passed, is that deadline,
    and otherwise leaves as the store's own (`faults.as_store_error`).

    The error of a wait cut at the deadline (a connection the watchdog shut,
    a pool or busy timeout) is the deadline's doing, not the database's.
    """

    @functools.wraps(function)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return function(*args, **kwargs)
        except _WAIT_ERRORS as error:
            _reraise(error)
            raise

    return call


def _reraise(error: BaseException) -> None:
    """Raise what `error` becomes at the store's boundary; return if it stays itself."""
    if deadlines.expired():
        raise DeadlineExceededError from error
    own = as_store_error(error)
    if own is not error:
        raise own from error


class _CutAtDeadline:
    """`bounded` as a context manager, for a block (a transaction held open)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        if isinstance(error, _WAIT_ERRORS):
            _reraise(error)


CUT_AT_DEADLINE = _CutAtDeadline()


class DeadlinePool(QueuePool):
    """A QueuePool whose checkout waits at most until the call's deadline.

    QueuePool reads its wait from `_timeout` on every checkout; here that is
    the configured pool timeout or the time left, whichever is shorter. A
    checkout after the deadline passed fails at once, touching nothing.
    """

    _configured_timeout: float

    def _do_get(self) -> ConnectionPoolEntry:
        # Every connection taken and no more may be opened: this checkout waits.
        waits = 0 <= self._max_overflow <= self._overflow and self._pool.empty()
        started = time.perf_counter() if waits else 0.0
        try:
            return super()._do_get()
        except sa_exc.TimeoutError:
            if deadlines.expired():
                raise DeadlineExceededError from None
            raise
        finally:
            if waits:
                metrics.pool_waited(time.perf_counter() - started)

    @property
    def _timeout(self) -> float:
        return wait_limit(self._configured_timeout)

    @_timeout.setter
    def _timeout(self, value: float) -> None:
        self._configured_timeout = value

    def recreate(self) -> QueuePool:
        # QueuePool.recreate passes `timeout=self._timeout`: give it the setting.
        pool = super().recreate()
        pool._timeout = self._configured_timeout
        return pool


# SQLAlchemy names a pool's logger after the pool's class, which puts this one
# under "totpd" and its INFO chatter ("Pool disposed") in totpd's logs; keep
# it as quiet as SQLAlchemy's own pools are.
logging.getLogger(f"{DeadlinePool.__module__}.{DeadlinePool.__name__}").setLevel(logging.WARNING)
