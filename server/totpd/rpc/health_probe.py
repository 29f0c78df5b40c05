"""Health that tells the truth about the store: a background probe.

Design notes: ARCHITECTURE.md, "Module notes", rpc/health_probe.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from grpc_health.v1 import health, health_pb2

from totpd.daemon import DaemonThread
from totpd.service.faults import fault_cause

_log = logging.getLogger("totpd.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
THREAD_NAME = "totpd-health-probe"
# How often a wait for a ping looks whether the probe was stopped meanwhile.
_STOP_POLL_SECONDS = 0.05


class _Ping:
    """One ping on a daemon thread of its own: done, with its error or None."""

    def __init__(self, ping: Callable[[], None]) -> None:
        self._ping = ping
        self.done = threading.Event()
        self.error: BaseException | None = None
        threading.Thread(target=self._run, name=f"{THREAD_NAME}-ping", daemon=True).start()

    def _run(self) -> None:
        try:
            self._ping()
        except BaseException as error:  # any failure is an unhealthy store; reported by check
            self.error = error
        finally:
            self.done.set()


class StoreHealthProbe(DaemonThread):
    """Sets `services` NOT_SERVING on `health_servicer` while `ping` fails or hangs.

    Starts believing the store healthy (the server starts SERVING after its
    migrations ran). `check` runs one probe now, for tests and the thread.
    """

    def __init__(
        self,
        ping: Callable[[], None],
        health_servicer: health.HealthServicer,
        services: Sequence[str],
        *,
        interval: float,
        timeout: float,
    ) -> None:
        self._ping = ping
        self._health = health_servicer
        self._services = tuple(services)
        self._interval = interval
        self._timeout = timeout
        super().__init__(THREAD_NAME)
        self._lock = threading.Lock()  # orders `stop` against a status change
        self._healthy = True
        self._pending: _Ping | None = None  # a ping that has not answered yet

    @property
    def healthy(self) -> bool:
        return self._healthy

    def stop(self) -> None:
        """Stop probing; no status is set after this returns. Idempotent."""
        with self._lock:
            self._stopping.set()
        super().stop()

    def check(self) -> bool:
        """Ping once (or wait again for a ping still running), within `timeout`;
        update health if the answer changed it. Returns whether the store answered."""
        ping = self._pending or _Ping(self._ping)
        if not self._wait(ping):
            self._pending = ping
            self._update(False, f"no answer within {self._timeout:g} s")
            return False
        self._pending = None
        if ping.error is None:
            self._update(True, None)
            return True
        self._update(False, fault_cause(ping.error))
        return False

    def _wait(self, ping: _Ping) -> bool:
        """Wait for the ping up to `timeout`, giving up early if the probe stops."""
        deadline = time.monotonic() + self._timeout
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if ping.done.wait(min(_STOP_POLL_SECONDS, remaining)):
                return True
        return ping.done.is_set()

    def _update(self, healthy: bool, cause: str | None) -> None:
        with self._lock:
            if self._stopping.is_set() or healthy == self._healthy:
                return
            self._healthy = healthy
            status = SERVING if healthy else NOT_SERVING
            for name in self._services:
                self._health.set(name, status)
        if healthy:
            _log.info("store reachable again: health SERVING")
        else:
            _log.warning("store unreachable: health NOT_SERVING", extra={"cause": cause})

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.check()
            except Exception as error:  # the probe must outlive any one failure
                _log.warning("health probe failed", extra={"error_type": type(error).__name__})
            self._stopping.wait(self._interval)
