"""Cuts a PostgreSQL connection whose call's deadline passed while it had it.

A hung PostgreSQL (a stopped server, a frozen host, a network black hole)
never answers, and a cancel request would go to the same hung postmaster. The
one way out that needs nothing from the server is the client's own socket:
shutting it down makes the blocked psycopg call fail at once ("server closed
the connection unexpectedly"). Then:

- the connection is invalidated at checkin, so it never goes back to the pool
  half used (SQLAlchemy also invalidates it on the driver's error);
- whatever the server had not committed stays uncommitted: when it wakes up
  it reads the end of the stream and aborts the open transaction. A write
  outside a transaction carries its own deadline in SQL (store/rounds.py).

One daemon thread wakes every `TICK` seconds, or at the earliest deadline it
knows of if that comes sooner, and cuts the connections whose call's
deadline passed: a cut comes at most a tick late. Arming and disarming is a
lock and a set operation and never wakes the thread: waking it on every
call cost more than the call's own statements when calls come one by one.
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
