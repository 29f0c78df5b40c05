"""The pieces of `totpd serve --processes N` around one worker process.

Design notes: ARCHITECTURE.md, "Module notes", cli/workers.py.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import sys
import threading
import time
from types import TracebackType
from typing import BinaryIO, Final

from totpd.config import parse_listen_address

_log = logging.getLogger("totpd.supervisor")

MAX_PROCESSES: Final = 1024
_PR_SET_PDEATHSIG: Final = 1
_PORT_TRIES: Final = 5
BIND_HINT: Final = (
    " (is the port in use by another process? choose another with --listen HOST:PORT)"
)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parse_processes(value: str) -> int:
    """`--processes`: a whole number from 1 to MAX_PROCESSES, or `auto`."""
    if value.strip().lower() == "auto":
        return available_cores()
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_PROCESSES:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of processes: give a whole number from 1 to "
            f"{MAX_PROCESSES}, or 'auto' for one per core"
        )
    return count


class PortReservationError(Exception):
    """The listening address cannot be reserved (in use, unknown host)."""


class PortReservation:
    """Hold HOST:PORT for the workers while the supervisor lives (see the module doc)."""

    def __init__(self, listen_address: str) -> None:
        self._host, self._port = parse_listen_address(listen_address)
        self._listen_address = listen_address
        self._sockets: list[socket.socket] = []
        self.address = ""

    def __enter__(self) -> PortReservation:
        bare = self._host.removeprefix("[").removesuffix("]")
        try:
            infos = socket.getaddrinfo(
                bare, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as error:
            raise PortReservationError(
                f"cannot listen on {self._listen_address}: {error.strerror}"
            ) from None
        addresses = list(dict.fromkeys((info[0], str(info[4][0])) for info in infos))
        for attempt in range(_PORT_TRIES):
            try:
                port = self._port
                for family, host in addresses:
                    self._sockets.append(_reserve(family, host, port))
                    port = self._sockets[-1].getsockname()[1]
            except OSError as error:
                self.close()
                retry = self._port == 0 and error.errno == errno.EADDRINUSE
                if retry and attempt + 1 < _PORT_TRIES:
                    continue
                reason = error.strerror or str(error)
                raise PortReservationError(
                    f"cannot listen on {self._listen_address}: {reason}{BIND_HINT}"
                ) from None
            self.address = f"{self._host}:{port}"
            return self
        raise AssertionError("unreachable")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for held in self._sockets:
            held.close()
        self._sockets.clear()


def _reserve(family: int, host: str, port: int) -> socket.socket:
    """Bind without SO_REUSEPORT first (fails if anyone listens there; picks a
    port for 0), then hold that port with a bound SO_REUSEPORT socket."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    held = socket.socket(family, socket.SOCK_STREAM)
    try:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind((host, port))
    except OSError:
        held.close()
        raise
    return held


# --- the worker's side ---------------------------------------------------------


class _WorkerField(logging.Filter):
    """Adds `worker` (the index) to every line of a worker."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self._index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self._index
        return True


def join_supervisor(supervisor_pid: int, index: int) -> None:
    """SIGTERM (a drain) when the supervisor dies; `worker` on every log line.

    Linux delivers the signal itself (PR_SET_PDEATHSIG); elsewhere a thread
    watches the parent. Exits at once if the supervisor is already gone.
    """
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerField(index))
    if not _parent_death_signal(signal.SIGTERM):
        threading.Thread(
            target=_watch_parent, args=(supervisor_pid,), name="totpd-parent", daemon=True
        ).start()
    if os.getppid() != supervisor_pid:
        _log.error("the supervisor is gone; not starting", extra={"supervisor": supervisor_pid})
        raise SystemExit(1)


def _parent_death_signal(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    return False


def _watch_parent(supervisor_pid: int) -> None:
    while os.getppid() == supervisor_pid:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)


# --- the supervisor's side -------------------------------------------------------


class LineRelay(threading.Thread):
    """Copy a worker's stderr to `sink` in whole lines (a worker's batched
    writes can be larger than the pipe writes the kernel keeps whole)."""

    _sink_lock = threading.Lock()

    def __init__(self, fd: int, sink: BinaryIO, index: int) -> None:
        super().__init__(name=f"totpd-relay-{index}", daemon=True)
        self._fd = fd
        self._sink = sink

    def run(self) -> None:
        pending = b""
        try:
            while chunk := os.read(self._fd, 1 << 16):
                pending += chunk
                cut = pending.rfind(b"\n") + 1
                if cut:
                    self._write(pending[:cut])
                    pending = pending[cut:]
        finally:
            os.close(self._fd)
            if pending:
                self._write(pending + b"\n")

    def _write(self, lines: bytes) -> None:
        with self._sink_lock, contextlib.suppress(OSError, ValueError):
            self._sink.write(lines)
            self._sink.flush()
