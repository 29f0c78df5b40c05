"""The skeleton of totpd's background work: a named daemon thread running until stopped."""

from __future__ import annotations

import threading
from typing import Self


class DaemonThread:
    """Runs `_run` in a daemon thread from `start` until `stop`.

    `_run` loops while `_stopping` is clear (waiting on it between rounds, so
    `stop` ends a pause at once). `stop` is idempotent and may be called from
    `_run` itself.
    """

    def __init__(self, name: str) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def is_running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        raise NotImplementedError
