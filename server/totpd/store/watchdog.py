"""Cuts a PostgreSQL connection whose call's deadline passed while it had it.

Design notes: ARCHITECTURE.md, "Module notes", store/watchdog.py.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time

TICK = 0.02


class Watch:
    """One pooled connection's socket, as watched."""

    __slots__ = ("cut", "deadline", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.deadline = math.inf
        self.cut = False


class Watchdog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: set[Watch] = set()
        self._thread: threading.Thread | None = None
        # A forked child has none of the parent's threads, and maybe its lock held.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._armed = set()
        self._thread = None

    def arm(self, watch: Watch, deadline: float) -> None:
        """Cut `watch`'s connection at `deadline` (time.monotonic()) unless disarmed first."""
        with self._lock:
            watch.deadline = deadline
            watch.cut = False
            self._armed.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="totpd-db-watchdog", daemon=True
                )
                self._thread.start()

    def disarm(self, watch: Watch) -> bool:
        """Stop watching; returns whether the connection was cut (it is then unusable)."""
        with self._lock:
            self._armed.discard(watch)
            return watch.cut

    def _run(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                for watch in [w for w in self._armed if w.deadline <= now]:
                    self._armed.discard(watch)
                    watch.cut = True
                    _shut(watch.fd)
                alarm = min((w.deadline for w in self._armed), default=math.inf)
            time.sleep(max(0.0, min(TICK, alarm - now)))


def _shut(fd: int) -> None:
    """Shut the socket down for both directions; the fd stays its owner's to close."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:  # closed meanwhile: nothing left to cut
        return
    try:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.detach()


WATCHDOG = Watchdog()
