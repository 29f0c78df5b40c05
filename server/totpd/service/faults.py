"""Database faults as the domain errors a caller sees: never a verdict.

Design notes: ARCHITECTURE.md, "Module notes", service/faults.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

from totpd.crypto import SecretUnavailableError
from totpd.otp import NativeError
from totpd.service.errors import ErrorReason, TotpdError
from totpd.store.deadline import DeadlineExceededError
from totpd.store.errors import StoreError, StoreFaultError, StoreOverloadedError
from totpd.telemetry import metrics

_log = logging.getLogger("totpd.store")

FAULT_LOG_INTERVAL_SECONDS = 10.0


class LogLimiter:
    """At most one line per key per `interval` seconds, counting the ones held back.

    Thread-safe. Keys whose interval ended are forgotten once there are more
    than `max_keys`, so many distinct causes cannot grow it without bound.
    """

    def __init__(
        self,
        interval: float = FAULT_LOG_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        # key -> (when its last line was written, lines held back since)
        self._seen: dict[Hashable, tuple[float, int]] = {}

    def admit(self, key: Hashable) -> int | None:
        """None: hold this line back. Otherwise write it, saying how many were
        held back for `key` since its previous line (0 for none)."""
        now = self._clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None:
                written, held_back = entry
                if now - written < self._interval:
                    self._seen[key] = (written, held_back + 1)
                    return None
            elif len(self._seen) >= self._max_keys:
                self._forget_older_than(now - self._interval)
            self._seen[key] = (now, 0)
            return 0 if entry is None else entry[1]

    def __len__(self) -> int:
        """How many keys are remembered."""
        return len(self._seen)

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()

    def _forget_older_than(self, cutoff: float) -> None:
        for key in [k for k, (written, _) in self._seen.items() if written <= cutoff]:
            del self._seen[key]


FAULT_LOG = LogLimiter()


def fault_cause(error: BaseException) -> str:
    """What a log line may say about a fault: the underlying error's type and
    first line (the store kept them), never a statement or its parameters."""
    return error.cause if isinstance(error, StoreError) else type(error).__name__


def as_domain_error(error: BaseException, method: str) -> TotpdError | None:
    """The one translation of a lower layer's error into the error a caller sees.

    A domain error stays itself; a store fault becomes STORE_UNAVAILABLE,
    OVERLOADED or DEADLINE_EXCEEDED (`store_fault`); a secret that cannot be
    opened fails closed as SECRET_UNAVAILABLE; the native core refusing its
    input is INTERNAL (the service validates first, so it is a bug). None for
    anything else: an unknown error, which the caller treats as a bug.
    """
    if isinstance(error, TotpdError):
        return error
    if isinstance(error, SecretUnavailableError):
        metrics.secret_unavailable()
        _log.error("secret unavailable", extra={"method": method})
        return TotpdError(
            ErrorReason.SECRET_UNAVAILABLE,
            "a stored secret could not be opened; the server fails closed",
        )
    if isinstance(error, NativeError):
        # The C message names the rule broken (never a key or a code).
        _log.error("native core error", extra={"method": method, "cause": str(error)})
        return TotpdError(ErrorReason.INTERNAL, "internal server error")
    return store_fault(error, method)


def is_store_fault(error: BaseException) -> bool:
    """Whether `error` is a database fault (without logging it)."""
    return isinstance(error, DeadlineExceededError | StoreFaultError)


def store_fault(error: BaseException, method: str) -> TotpdError | None:
    """The error for a database fault (counted, and logged rate-limited), or None
    if `error` is not one."""
    fault = _store_fault(error, method)
    if fault is not None:
        metrics.store_fault(fault.reason.value)
    return fault


def _store_fault(error: BaseException, method: str) -> TotpdError | None:
    if isinstance(error, DeadlineExceededError):
        return TotpdError(
            ErrorReason.DEADLINE_EXCEEDED,
            "the deadline passed before the database answered; nothing was stored",
        )
    if isinstance(error, StoreOverloadedError):
        _log_fault("database pool exhausted", ErrorReason.OVERLOADED, error, method)
        return TotpdError(
            ErrorReason.OVERLOADED,
            "every database connection is busy; no verdict was reached, retry with backoff",
        )
    if isinstance(error, StoreFaultError):  # unavailable, a round aborted, its files
        _log_fault("store unavailable", ErrorReason.STORE_UNAVAILABLE, error, method)
        return TotpdError(
            ErrorReason.STORE_UNAVAILABLE, "the database is unavailable; no verdict was reached"
        )
    return None


def _log_fault(message: str, reason: ErrorReason, error: BaseException, method: str) -> None:
    cause = fault_cause(error)
    held_back = FAULT_LOG.admit((reason, cause))
    if held_back is None:
        return
    fields: dict[str, object] = {
        "method": method,
        "reason": reason.value,
        "error_type": type(error).__name__,
        "cause": cause,
    }
    if held_back:
        fields["suppressed"] = held_back
    _log.warning(message, extra=fields)
