"""Admission by cost: a call starts only if the work already in flight leaves room.

Design notes: ARCHITECTURE.md, "Module notes", rpc/admission.py.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from totpd.service.errors import ErrorReason, TotpdError
from totpd.v1 import totp_service_pb2

_log = logging.getLogger("totpd.admission")

# QR rendering (PNG and SVG) makes an Enroll several times as costly as one verification.
ENROLL_COST: Final = 10
MIN_RETRY_SECONDS: Final = 0.05
MAX_RETRY_SECONDS: Final = 5.0
# A guess used until the first calls complete; replaced by what they measure.
INITIAL_SECONDS_PER_ITEM: Final = 1e-4
# The seconds-per-item average follows the last few batches' worth of items.
_AVERAGE_OVER_ITEMS: Final = 20_000
_REFUSAL_LOG_INTERVAL_SECONDS: Final = 10.0


class Ticket:
    """An admitted call's share of the budget; `release` (or leaving the `with`) returns it."""

    __slots__ = ("_admission", "_key", "_released")

    def __init__(self, admission: Admission, key: int) -> None:
        self._admission = admission
        self._key = key
        self._released = False

    def release(self) -> None:
        """Give the cost back; a second call does nothing."""
        if not self._released:
            self._released = True
            self._admission._release(self._key)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class Admission:
    """Counts the cost of the calls in flight; refuses, never waits. Thread-safe."""

    def __init__(
        self,
        max_items: int,
        max_calls: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if max_items < 1 or max_calls < 1:
            raise ValueError("admission budgets must be at least 1")
        self.max_items = max_items
        self.max_calls = max_calls
        self._clock = clock
        self._jitter = jitter
        self._lock = threading.Lock()
        self._keys = itertools.count()
        # key -> (started, cost) of each admitted call
        self._in_flight: dict[int, tuple[float, int]] = {}
        # The keys of calls that hold no connection of their own (`acquire`).
        self._sharing: set[int] = set()
        self._items = 0
        self._seconds_per_item = INITIAL_SECONDS_PER_ITEM
        self._refused = 0
        self._logged_at = -_REFUSAL_LOG_INTERVAL_SECONDS

    @property
    def items_in_flight(self) -> int:
        with self._lock:
            return self._items

    @property
    def calls_in_flight(self) -> int:
        """Calls admitted that each hold a connection of their own."""
        with self._lock:
            return self._calls()

    def _calls(self) -> int:
        return len(self._in_flight) - len(self._sharing)

    def acquire(self, cost: int, *, shares_connection: bool = False) -> Ticket:
        """Admit a call of `cost` items, or raise TotpdError(OVERLOADED) with a retry delay.

        A call costlier than the whole item budget is admitted only on an idle
        server (its cost is capped at the budget): refusing it forever would
        be a permanent error disguised as a transient one. A call that
        `shares_connection` (a Verify coalesced on the event loop: its round
        holds one connection for many calls) is bounded by the items only.
        """
        cost = min(max(cost, 1), self.max_items)
        with self._lock:
            now = self._clock()
            fits = shares_connection or self._calls() < self.max_calls
            if self._items + cost <= self.max_items and fits:
                key = next(self._keys)
                self._in_flight[key] = (now, cost)
                if shares_connection:
                    self._sharing.add(key)
                self._items += cost
                return Ticket(self, key)
            delay = self._retry_after(cost, now)
            report = self._count_refusal(now)
        if report is not None:
            _log.warning("overloaded: calls refused", extra=report)
        raise TotpdError(
            ErrorReason.OVERLOADED,
            "the server is at capacity (work in flight); nothing was done, retry after the delay",
            retry_after_seconds=delay,
        )

    def _release(self, key: int) -> None:
        with self._lock:
            started, cost = self._in_flight.pop(key)
            self._sharing.discard(key)
            self._items -= cost
            per_item = (self._clock() - started) / cost
            weight = min(1.0, cost / _AVERAGE_OVER_ITEMS)
            self._seconds_per_item += weight * (per_item - self._seconds_per_item)

    def _retry_after(self, cost: int, now: float) -> float:
        """Seconds until enough calls in flight should have finished for `cost` to fit."""
        items_to_free = self._items + cost - self.max_items
        calls_to_free = self._calls() + 1 - self.max_calls
        wait = 0.0
        ends = sorted(
            (started + call_cost * self._seconds_per_item, call_cost)
            for started, call_cost in self._in_flight.values()
        )
        for end, call_cost in ends:
            if items_to_free <= 0 and calls_to_free <= 0:
                break
            wait = end - now
            items_to_free -= call_cost
            calls_to_free -= 1
        wait = min(max(wait, MIN_RETRY_SECONDS), MAX_RETRY_SECONDS)
        return round(wait * (1.0 + 0.5 * self._jitter()), 3)

    def _count_refusal(self, now: float) -> dict[str, int] | None:
        """What to log: one warning per interval with the number refused, not one per call."""
        self._refused += 1
        if now - self._logged_at < _REFUSAL_LOG_INTERVAL_SECONDS:
            return None
        report = {
            "refused": self._refused,
            "items_in_flight": self._items,
            "max_items_in_flight": self.max_items,
            "calls_in_flight": self._calls(),
        }
        self._refused = 0
        self._logged_at = now
        return report


_SERVICE: Final = totp_service_pb2.DESCRIPTOR.services_by_name["TotpService"]
_PREFIX: Final = f"/{_SERVICE.full_name}/"
BATCH_VERIFY: Final = _PREFIX + "BatchVerify"


def _fixed(cost: int) -> Callable[[Any], int | None]:
    return lambda _request: cost


class AdmissionPolicy:
    """`Admission` and what each TotpService call costs in it.

    The server's interceptor (rpc/interceptors.py) admits each call around its
    handler, inside the error mapping, which turns a refusal into a status.
    A BatchVerify beyond `max_batch_items` passes unadmitted: the servicer
    refuses it as BATCH_TOO_LARGE before any work, and that answer must not
    turn into a retryable OVERLOADED on a busy server.
    """

    def __init__(self, admission: Admission, max_batch_items: int) -> None:
        self.admission = admission
        self._max_batch_items = max_batch_items
        self._costs: dict[str, Callable[[Any], int | None]] = {
            _PREFIX + method.name: _fixed(1) for method in _SERVICE.methods
        }
        self._costs[_PREFIX + "Enroll"] = _fixed(ENROLL_COST)
        self._costs[BATCH_VERIFY] = self._batch_cost

    def cost_of(self, method: str) -> Callable[[Any], int | None] | None:
        """A request's cost for `method` (None: passes unadmitted); None for a
        method that is not a TotpService call (health, reflection)."""
        return self._costs.get(method)

    def _batch_cost(self, request: Any) -> int | None:
        count = len(request.items)
        return None if count > self._max_batch_items else count
