"""The purge: a daemon thread that deletes what totpd no longer needs.

Design notes: ARCHITECTURE.md, "Module notes", service/purging.py.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable
from typing import NamedTuple

from totpd.daemon import DaemonThread
from totpd.service.faults import fault_cause
from totpd.service.policy import Policy
from totpd.store import FactorStore

_log = logging.getLogger("totpd.purge")
THREAD_NAME = "totpd-purge"
BATCH_ROWS = 500
BATCH_PAUSE_SECONDS = 0.05
_DAY = 86400


class PurgeReport(NamedTuple):
    factors: int
    requests: int
    audit_events: int = 0


class Purger(DaemonThread):
    def __init__(
        self,
        store: FactorStore,
        policy: Policy,
        clock: Callable[[], float],
        *,
        interval: float,
        batch: int = BATCH_ROWS,
        pause: float = BATCH_PAUSE_SECONDS,
    ) -> None:
        self._store = weakref.ref(store)
        self._policy = policy
        self._clock = clock
        self._interval = interval
        self._batch = batch
        self._pause = pause
        super().__init__(THREAD_NAME)
        self.runs = 0  # completed runs, faults included: for tests and health checks

    def run_once(self) -> PurgeReport:
        """Purge everything due now, batch by batch; errors reach the caller."""
        store = self._store()
        if store is None:
            return PurgeReport(0, 0)
        now = math.floor(self._clock())
        ended_before = now - self._policy.ended_factor_retention_days * _DAY
        factors = self._drain(lambda: store.purge.ended_before(ended_before, limit=self._batch))
        requests = self._drain(lambda: store.requests.purge_expired(now=now, limit=self._batch))
        # The audit trail's retention: the one delete of its append-only table.
        events_before = (now - self._policy.audit_retention_days * _DAY) * 1_000_000
        events = self._drain(lambda: store.audit.prune_before(events_before, limit=self._batch))
        if factors or requests or events:
            _log.info(
                "purged",
                extra={"factors": factors, "request_records": requests, "audit_events": events},
            )
        return PurgeReport(factors, requests, events)

    def _drain(self, one_batch: Callable[[], int]) -> int:
        total = 0
        while not self._stopping.is_set():
            deleted = one_batch()
            total += deleted
            if deleted < self._batch:
                break
            self._stopping.wait(self._pause)
        return total

    def _run(self) -> None:
        # The first run at start: a server restarted more often than the
        # interval must still purge.
        while not self._stopping.is_set() and self._store() is not None:
            try:
                self.run_once()
            except Exception as error:  # the thread must outlive any one failure
                _log.warning(
                    "purge failed; retrying at the next interval",
                    extra={"error_type": type(error).__name__, "cause": fault_cause(error)},
                )
            self.runs += 1
            self._stopping.wait(self._interval)
