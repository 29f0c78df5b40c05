"""The CPUs a thread may run on, as the kernel reports them (/proc, Linux)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The CPUs this test process may run on, as the servers it starts inherit them.
PROCESS_CPUS = frozenset(os.sched_getaffinity(0)) if sys.platform == "linux" else frozenset()
needs_two_cpus = pytest.mark.skipif(
    len(PROCESS_CPUS) < 2, reason="CPU affinity needs Linux and two CPUs"
)


def cpus_of_task(tid: int, pid: int | str = "self") -> frozenset[int]:
    """Thread `tid` of process `pid`: its Cpus_allowed_list."""
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("Cpus_allowed_list:")]
    return parse_cpu_list(line.split(":", 1)[1])


def threads_of(pid: int) -> list[tuple[str, frozenset[int]]]:
    """Each thread of process `pid`: its OS name (grpc's share one) and its CPUs.
    A thread that ended meanwhile is left out."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.append(((task / "comm").read_text().strip(), cpus_of_task(int(task.name), pid)))
        except FileNotFoundError:
            continue
    return found


def parse_cpu_list(text: str) -> frozenset[int]:
    """The kernel's list form ("0-2,5") as a set of CPUs."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return frozenset(cpus)
