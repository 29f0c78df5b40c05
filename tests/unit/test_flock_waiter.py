"""The SQLite writers' flock, waited for with a timeout (store/flock_waiter.py).

Another process holds the lock for real; the waiter gives up in time, and a
lock that comes after its caller gave up goes to the next caller or back to
the other processes, never to nobody.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from totpd.store.flock_waiter import FlockWaiter

_HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""

_TRY = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(1)
"""


@contextmanager
def held_by_another_process(path: Path) -> Iterator[subprocess.Popen[bytes]]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=10)


def another_process_can_lock(path: Path) -> bool:
    return subprocess.run([sys.executable, "-c", _TRY, str(path)], timeout=30).returncode == 0


def test_a_free_lock_is_taken_at_once_and_released_by_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "db.writers"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    waiter = FlockWaiter(fd)
    assert waiter.acquire(0)
    assert not another_process_can_lock(path)
    fcntl.flock(fd, fcntl.LOCK_UN)
    assert another_process_can_lock(path)


def test_a_lock_held_elsewhere_is_given_up_in_time_then_handed_to_the_next_caller(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.writers"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    waiter = FlockWaiter(fd)
    with held_by_another_process(path):
        assert not waiter.acquire(0.2)
    # The helper still waiting for it gets it now, for this caller.
    assert waiter.acquire(30)
    assert not another_process_can_lock(path)
    fcntl.flock(fd, fcntl.LOCK_UN)
    assert another_process_can_lock(path)


def test_a_lock_that_comes_after_every_caller_gave_up_is_released(tmp_path: Path) -> None:
    path = tmp_path / "db.writers"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    waiter = FlockWaiter(fd)
    with held_by_another_process(path):
        assert not waiter.acquire(0.1)
    # Nobody waits: the helper takes the lock and lets it go at once.
    for _ in range(300):
        if another_process_can_lock(path):
            break
        time.sleep(0.01)
    else:
        raise AssertionError("the abandoned lock was never released")
    assert waiter.acquire(30)  # and it is taken again normally
    fcntl.flock(fd, fcntl.LOCK_UN)
