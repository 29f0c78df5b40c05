"""Parts of one call's work on up to three lanes at once: the calling thread,
and helper threads that the process's calls share.

A large BatchVerify round waits on PostgreSQL (another process) for about as
long as it works in Python: split into parts, one part's statements run while
another part is decided. Design notes: ARCHITECTURE.md, "Module notes",
service/lanes.py.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

_P = TypeVar("_P")
_R = TypeVar("_R")

# The helpers one call asks for. Two lanes still leave a 2-core machine's CPU
# idle while both are in Python or both wait on commits; a third fills some of
# that, a fourth measured no better (benchmarks/NOTES.md).
HELPERS_PER_CALL = 2
# The process's helper threads: one per core beyond the first, at least a
# call's and at most 4. Each holds a database connection while it runs a part
# (rpc/server.py's admission leaves them room in the pool).
HELPERS = min(4, max(HELPERS_PER_CALL, (os.cpu_count() or 2) - 1))

_helpers: ThreadPoolExecutor | None = None
_helpers_lock = threading.Lock()


def _helper_pool() -> ThreadPoolExecutor:
    """The process's helper lanes, made at first use (after any fork)."""
    global _helpers
    with _helpers_lock:
        if _helpers is None:
            _helpers = ThreadPoolExecutor(HELPERS, thread_name_prefix="totpd-lane")
        return _helpers


def _forget_helpers() -> None:
    # A forked child has none of its parent's threads, maybe the lock held.
    global _helpers, _helpers_lock
    _helpers, _helpers_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_helpers)


def run_parts(
    parts: Sequence[_P], run: Callable[[_P], _R], *, stops: Callable[[_R], bool]
) -> list[_R | None]:
    """`run` on every part, in this thread and on the helper lanes free to take
    one; each part's result in order.

    After a result that `stops` (a fault: the database is down or the
    deadline passed), no part starts: the parts not run are None. `run`
    should not raise; what it raises leaves from here once every lane stopped.
    Each helper runs in a copy of this thread's context (the call's deadline,
    its trace).
    """
    if len(parts) < 2:
        return [run(part) for part in parts]
    results: list[_R | None] = [None] * len(parts)
    pending = iter(range(len(parts)))
    lock = threading.Lock()
    stopped = False

    def lane() -> None:
        nonlocal stopped
        while True:
            with lock:
                index = None if stopped else next(pending, None)
            if index is None:
                return
            try:
                result = run(parts[index])
            except BaseException:
                with lock:
                    stopped = True
                raise
            results[index] = result
            if stops(result):
                with lock:
                    stopped = True

    pool = _helper_pool()
    helpers = [
        pool.submit(contextvars.copy_context().run, lane)
        for _ in range(min(HELPERS_PER_CALL, len(parts) - 1))
    ]
    try:
        lane()
    finally:
        # Helpers not started are not waited for; started ones are: each holds
        # a part (and a connection) of this call.
        started = [helper for helper in helpers if not helper.cancel()]
        futures.wait(started)
    for helper in started:
        helper.result()  # what a helper raised
    return results
