"""An exclusive flock(2) that a caller can stop waiting for.

Design notes: ARCHITECTURE.md, "Module notes", store/flock_waiter.py.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time

# A write holds the lock for well under a millisecond: retried for this
# long first, a held lock is mostly taken without the helper's thread switches.
SPIN_SECONDS = 0.0002


class FlockWaiter:
    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._start()

    def _start(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._pending = False  # the helper is (or is about to be) blocked in LOCK_EX
        self._wanted = False  # a caller waits for the helper's lock
        self._granted = False  # the helper got the lock for the waiting caller
        self._failed: OSError | None = None
        self._helper: threading.Thread | None = None
        self._pid = os.getpid()

    def acquire(self, timeout: float) -> bool:
        """Take the lock, waiting at most `timeout` seconds; False if it did not come."""
        if self._pid != os.getpid():  # a forked child: none of the parent's threads
            self._start()
        with self._changed:
            if not self._pending and self._spin():
                return True
            self._wanted = True
            if not self._pending:
                self._pending = True
                if self._helper is None:
                    self._helper = threading.Thread(
                        target=self._wait_for_lock, name="totpd-writer-flock", daemon=True
                    )
                    self._helper.start()
                self._changed.notify_all()
            granted = self._changed.wait_for(lambda: self._granted or bool(self._failed), timeout)
            self._granted = False
            self._wanted = False
            failed, self._failed = self._failed, None
            if failed is not None:
                raise failed
            return granted

    def _spin(self) -> bool:
        if _try_lock(self._fd):
            return True
        until = time.monotonic() + SPIN_SECONDS
        while time.monotonic() < until:
            time.sleep(0)  # lets the holder run
            if _try_lock(self._fd):
                return True
        return False

    def _wait_for_lock(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except OSError as error:
                with self._changed:
                    self._pending = False
                    self._failed = error if self._wanted else None
                    self._changed.notify_all()
                continue
            with self._changed:
                self._pending = False
                if self._wanted:
                    self._granted = True
                    self._changed.notify_all()
                else:  # its caller gave up, and no other came
                    fcntl.flock(self._fd, fcntl.LOCK_UN)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True
