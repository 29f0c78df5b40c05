"""Database faults as the domain errors a caller sees: never a verdict.

A fault leaves the verdict unknown, so it is always an error (retryable),
never INVALID or LOCKED. The log line names the driver's own one-line cause
("database is locked", "connection refused"), never SQLAlchemy's message,
which quotes the statement and its parameters.

A call's deadline that passed while it waited for the database is
DEADLINE_EXCEEDED: nothing was committed. It is not logged here (the access
log has the call's status); a hung database shows as many such lines at once.
"""

from __future__ import annotations

import logging

from totpd.service.errors import ErrorReason, TotpdError
from totpd.store.deadline import DeadlineExceededError
from totpd.store.faults import first_line, is_outage, is_pool_exhausted

_log = logging.getLogger("totpd.store")


def is_store_fault(error: BaseException) -> bool:
    """Whether `error` is a database fault (without logging it)."""
    return isinstance(error, DeadlineExceededError) or is_pool_exhausted(error) or is_outage(error)


def store_fault(error: BaseException, method: str) -> TotpdError | None:
    """The error for a database fault (logged once here), or None if `error` is not one."""
    if isinstance(error, DeadlineExceededError):
        return TotpdError(
            ErrorReason.DEADLINE_EXCEEDED,
            "the deadline passed before the database answered; nothing was stored",
        )
    if is_pool_exhausted(error):
        _log.warning("database pool exhausted", extra={"method": method})
        return TotpdError(
            ErrorReason.OVERLOADED,
            "every database connection is busy; no verdict was reached, retry with backoff",
        )
    if is_outage(error):
        _log.warning(
            "store unavailable",
            extra={"method": method, "error_type": type(error).__name__, "cause": _cause(error)},
        )
        return TotpdError(
            ErrorReason.STORE_UNAVAILABLE, "the database is unavailable; no verdict was reached"
        )
    return None


def _cause(error: BaseException) -> str:
    """The driver's error (SQLAlchemy keeps it as `orig`): its type and first line."""
    driver_error = getattr(error, "orig", None)
    if driver_error is None:
        return type(error).__name__
    return f"{type(driver_error).__name__}: {first_line(driver_error)}"[:200]
