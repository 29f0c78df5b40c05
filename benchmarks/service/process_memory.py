"""What the server processes hold in memory: VmRSS sampled while they work, VmHWM
after (Linux /proc/<pid>/status), per process of a `ServerProcess`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.service.servers import ServerProcess, children


def status_kb(pid: int, field: str) -> int:
    """A /proc/<pid>/status size field (VmRSS, VmHWM) in kB; 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def server_pids(server: ServerProcess) -> list[int]:
    return [server.pid, *children(server.pid)]


class RssSampler:
    """The largest VmRSS of each server process, sampled every `interval` seconds."""

    def __init__(self, pids: list[int], interval: float = 0.02) -> None:
        self.pids = pids
        self.interval = interval
        self.peak_kb = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                self.peak_kb[pid] = max(self.peak_kb[pid], status_kb(pid, "VmRSS"))
            self._stop.wait(self.interval)

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=5)
