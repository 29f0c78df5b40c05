"""Shutdown on SIGTERM or SIGINT, in phases a load balancer can follow.

Design notes: ARCHITECTURE.md, "Module notes", rpc/drain.py.
"""

from __future__ import annotations

import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Final

import grpc
from grpc_health.v1 import health, health_pb2

from totpd.rpc.loop_server import LoopServer

_log = logging.getLogger("totpd.server")

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
_POLL_SECONDS: Final = 0.05
_SHUTTING_DOWN: Final = "the server is shutting down; reconnect to another instance"


class DrainingHealthServicer(health.HealthServicer):
    """grpc's health servicer, plus `end_watches` for the stop phase.

    grpc's own servicer never ends a Watch stream: it lives until the client
    cancels it or the grace period runs out, and the server waits for it.
    This one records each stream's context and callback so it can end them
    all with a status, and ends at once any Watch that arrives afterwards.
    """

    def __init__(self) -> None:
        super().__init__()
        self._streams_lock = threading.Lock()
        self._streams: dict[int, tuple[grpc.ServicerContext, _OnceEnded]] = {}
        self._keys = itertools.count()
        self._ended = False

    def Watch(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.ServicerContext,
        send_response_callback: Callable[..., Any] | None = None,
    ) -> health_pb2.HealthCheckResponse:
        if send_response_callback is None:  # a blocking server: not how totpd registers it
            return super().Watch(request, context)
        send = _OnceEnded(send_response_callback)
        key = next(self._keys)
        with self._streams_lock:
            ended = self._ended
            if not ended:
                self._streams[key] = (context, send)
        if not ended:
            context.add_callback(lambda: self._forget(key))
        response = super().Watch(request, context, send_response_callback=send)
        if ended:
            _end(context, send)
        return response

    def _forget(self, key: int) -> None:
        with self._streams_lock:
            self._streams.pop(key, None)

    def end_watches(self) -> int:
        """End every open Watch stream (and any later one); returns how many were open."""
        with self._streams_lock:
            self._ended = True
            streams = list(self._streams.values())
            self._streams.clear()
        for context, send in streams:
            _end(context, send)
        return len(streams)


class _OnceEnded:
    """A Watch stream's send callback that ignores everything after the end.

    grpc calls the callback with None once more when the call completes;
    after `end_watches` that would be a second status on a finished call.
    """

    def __init__(self, send: Callable[..., Any]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._ended = False

    def __call__(self, response: health_pb2.HealthCheckResponse | None) -> None:
        with self._lock:
            if self._ended:
                return
            if response is None:
                self._ended = True
        self._send(response)


def _end(context: grpc.ServicerContext, send: _OnceEnded) -> None:
    context.set_code(grpc.StatusCode.UNAVAILABLE)
    context.set_details(_SHUTTING_DOWN)
    send(None)


class StopSignals:
    """Counts SIGTERM and SIGINT while installed; the main thread polls."""

    def __init__(self) -> None:
        self.count = 0
        self.names: list[str] = []

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        self.names.append(signal.Signals(signum).name)

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def wait(self, count: int, timeout: float | None = None) -> bool:
        """Wait until `count` signals have arrived (True) or `timeout` passed (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.count < count:
            if deadline is None:
                time.sleep(_POLL_SECONDS)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(_POLL_SECONDS, remaining))
        return True


def drain_and_stop(
    server: LoopServer,
    health_servicer: DrainingHealthServicer,
    signals: StopSignals,
    *,
    drain_seconds: float,
    grace_seconds: float,
) -> None:
    """Run the shutdown phases after the first signal; returns once the server stopped."""
    health_servicer.enter_graceful_shutdown()
    _log.info(
        "draining: health is NOT_SERVING, still serving",
        extra={"signal": signals.names[0], "drain_s": drain_seconds},
    )
    if signals.wait(2, timeout=drain_seconds):
        _log.info("drain cut short by a second signal", extra={"signal": signals.names[1]})
    stopped = server.stop(grace_seconds)
    watches = health_servicer.end_watches()
    _log.info(
        "stopping: new calls refused, calls in flight finishing",
        extra={"grace_s": grace_seconds, "health_watches_ended": watches},
    )
    while not stopped.wait(_POLL_SECONDS):
        pass
