"""The purge: a daemon thread that deletes what totpd no longer needs.

At start and then every `interval` seconds it deletes factors that ended (disabled, expired, or
pending and never confirmed) more than `ended_factor_retention_days` ago, and
request records past `request_id_retention_seconds`: each in batches of
`batch` rows, one short transaction per batch, with a pause between batches
so the writers it shares the database with are not held up. A fault (the
database down, a lock timeout) logs one line and waits for the next interval;
the thread never ends on an error. It holds only a weak reference to the store,
so it ends with the store (and never keeps a dropped service's database open).
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable
from typing import NamedTuple

from totpd.daemon import DaemonThread
from totpd.service.policy import Policy
from totpd.store import FactorStore
from totpd.store.faults import first_line

_log = logging.getLogger("totpd.purge")
THREAD_NAME = "totpd-purge"
BATCH_ROWS = 500
BATCH_PAUSE_SECONDS = 0.05
_DAY = 86400


class PurgeReport(NamedTuple):
    factors: int
    requests: int


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
        if factors or requests:
            _log.info("purged", extra={"factors": factors, "request_records": requests})
        return PurgeReport(factors, requests)

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
                cause = getattr(error, "orig", None) or error
                _log.warning(
                    "purge failed; retrying at the next interval",
                    extra={"error_type": type(cause).__name__, "cause": first_line(cause)},
                )
            self.runs += 1
            self._stopping.wait(self._interval)
