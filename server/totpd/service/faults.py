"""Database faults as the domain errors a caller sees: never a verdict.

A fault leaves the verdict unknown, so it is always an error (retryable),
never INVALID or LOCKED. Logged by type only: a driver's message may quote SQL.
"""

from __future__ import annotations

import logging

from totpd.service.errors import ErrorReason, TotpdError
from totpd.store.faults import is_outage, is_pool_exhausted

_log = logging.getLogger("totpd.store")


def store_fault(error: BaseException, method: str) -> TotpdError | None:
    """The error for a database fault (logged once here), or None if `error` is not one."""
    if is_pool_exhausted(error):
        _log.warning("database pool exhausted", extra={"method": method})
        return TotpdError(
            ErrorReason.OVERLOADED,
            "every database connection is busy; no verdict was reached, retry with backoff",
        )
    if is_outage(error):
        _log.warning(
            "store unavailable", extra={"method": method, "error_type": type(error).__name__}
        )
        return TotpdError(
            ErrorReason.STORE_UNAVAILABLE, "the database is unavailable; no verdict was reached"
        )
    return None
