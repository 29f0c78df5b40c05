"""Each caller's rate of failed verifications across all accounts: a token bucket.

Design notes: ARCHITECTURE.md, "Module notes", service/caller_limits.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple

from totpd.service.errors import ErrorReason, TotpdError

# Past this many callers, buckets that have refilled completely are dropped
# (a full bucket is the same as none), so passing peers do not grow memory.
_PRUNE_ABOVE = 10_000


# The retry delay when the missing room is held by the caller's calls in flight.
_HELD_RETRY_SECONDS = 1.0


class Reservation(NamedTuple):
    caller: str
    tokens: int


class _Bucket:
    __slots__ = ("held", "tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated
        self.held = 0  # reserved by the caller's calls in flight


class CallerLimits:
    def __init__(self, per_second: int, burst: int, clock: Callable[[], float]) -> None:
        """`per_second` 0 turns the limit off."""
        self._rate = per_second
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._prune_at = _PRUNE_ABOVE
        self._lock = threading.Lock()

    def reserve(self, caller: str | None, tokens: int) -> Reservation | None:
        """Take `tokens` from the caller's bucket, or raise RATE_LIMITED (taking none).

        None (nothing to give back) when the limit is off, the caller unknown
        (a call from inside totpd) or nothing is asked.
        """
        if not self._rate or caller is None or tokens <= 0:
            return None
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(caller)
            if bucket is None:
                if len(self._buckets) >= self._prune_at:
                    self._prune(now)
                bucket = self._buckets[caller] = _Bucket(self._burst, now)
            else:
                self._refill(bucket, now)
            if bucket.tokens < tokens:
                missing = tokens - bucket.tokens
                wait = missing / self._rate
                if bucket.held >= missing:
                    # The caller's own calls in flight hold the room, and give
                    # back what did not fail as soon as they finish.
                    wait = min(wait, _HELD_RETRY_SECONDS)
                raise TotpdError(
                    ErrorReason.RATE_LIMITED,
                    "too many failed verifications from this caller across accounts; "
                    "nothing was checked or counted, retry after the delay",
                    retry_after_seconds=wait,
                )
            bucket.tokens -= tokens
            bucket.held += tokens
        return Reservation(caller, tokens)

    def settle(self, reservation: Reservation | None, failures: int) -> None:
        """Give back the reserved tokens beyond the `failures` the call counted."""
        if reservation is None:
            return
        unused = reservation.tokens - min(failures, reservation.tokens)
        with self._lock:
            bucket = self._buckets.get(reservation.caller)
            if bucket is not None:
                bucket.held -= reservation.tokens
                bucket.tokens = min(self._burst, bucket.tokens + unused)

    def _refill(self, bucket: _Bucket, now: float) -> None:
        # A clock that stepped back refills nothing (and does not drain).
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
        bucket.updated = max(bucket.updated, now)

    def _prune(self, now: float) -> None:
        for caller, bucket in list(self._buckets.items()):
            self._refill(bucket, now)
            if bucket.tokens >= self._burst and not bucket.held:
                del self._buckets[caller]
        # Pruning again only after the map doubles keeps it O(1) per new caller.
        self._prune_at = max(_PRUNE_ABOVE, 2 * len(self._buckets))
