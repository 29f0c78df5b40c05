"""One CPU for the threads that take turns at a process's interpreter.

A process's event loop and its round threads run Python under one GIL, so they
never run Python at the same time, and they hand the GIL to each other many
times a round: every database statement a round runs gives it up. On two CPUs
each hand-off is a wake-up across CPUs, and a thread that wants the GIL back
waits while the other CPU runs the loop; on one CPU the hand-offs stay on that
CPU and its caches. Served unary Verify measured a third more calls a second
on SQLite, 8-15% more on PostgreSQL (benchmarks/NOTES.md, "One CPU for the
interpreter"). The process's other CPUs stay free for what runs without the
GIL: grpc's network threads, the database, other processes.

Linux only (sched_setaffinity); elsewhere nothing changes. A thread inherits
the CPUs of the thread that starts it, so the threads the pinned loop starts
(round threads, its executor's) share its CPU. Two pools take the process's
CPUs back as their threads start (`use_process_cpus`): grpc's handler workers,
and the C core's pool, which runs C on every CPU without the GIL.
"""

from __future__ import annotations

import logging
import os

_log = logging.getLogger("totpd")

# The CPUs the process could run on before any thread was pinned (None: none was).
_process_cpus: frozenset[int] | None = None


def interpreter_cpu(worker_index: int = 0) -> int | None:
    """The CPU for the interpreter threads of worker `worker_index` (0: a single
    process): the index-th of the CPUs the process may run on, wrapping; None
    when it may run on one CPU only (nothing to share) or cannot be pinned here."""
    cpus = _allowed_cpus()
    if len(cpus) < 2:
        return None
    return sorted(cpus)[worker_index % len(cpus)]


def pin_this_thread(cpu: int) -> bool:
    """Run the calling thread, and the threads it starts from now on, on `cpu`
    only. False (logged) if the system refused: the thread keeps its CPUs."""
    global _process_cpus
    if not hasattr(os, "sched_setaffinity"):
        return False
    before = _allowed_cpus()
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as error:
        _log.warning(
            "interpreter threads not pinned; they run on any CPU",
            extra={"cpu": cpu, "error": error.strerror or type(error).__name__},
        )
        return False
    if _process_cpus is None:
        _process_cpus = before
    return True


def use_process_cpus() -> None:
    """Give the calling thread back every CPU the process had before a pin (for a
    thread that runs C in parallel, started by a pinned thread); nothing if no
    thread was pinned."""
    if _process_cpus is None:
        return
    try:
        os.sched_setaffinity(0, _process_cpus)
    except OSError:  # a CPU taken away since: keep the ones the thread has
        pass


def _allowed_cpus() -> frozenset[int]:
    if not hasattr(os, "sched_getaffinity"):
        return frozenset()
    return frozenset(os.sched_getaffinity(0))
