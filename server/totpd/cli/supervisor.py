"""`totpd serve --processes N`: N worker processes on one port under one supervisor.

Design notes: ARCHITECTURE.md, "Module notes", cli/supervisor.py.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from totpd.cli.workers import LineRelay, PortReservation
from totpd.config import Settings
from totpd.rpc.drain import StopSignals
from totpd.rpc.server import write_ready_file
from totpd.telemetry import metrics

_log = logging.getLogger("totpd.supervisor")

START_TIMEOUT_SECONDS: Final = 120.0
FIRST_RESTART_DELAY: Final = 0.5
MAX_RESTART_DELAY: Final = 30.0
EXIT_WINDOW_SECONDS: Final = 60.0
FAILED_STARTS_LIMIT: Final = 3
# After the workers' own bound (drain + grace), how long before SIGKILL.
STOP_MARGIN_SECONDS: Final = 30.0
_POLL_SECONDS: Final = 0.05


class SupervisorError(Exception):
    """The workers could not be started."""


@dataclass
class _Slot:
    """Worker `index`: its process while one runs, and its history."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    relay: LineRelay | None = None
    ready_file: Path | None = None
    serving: bool = False
    restart_at: float | None = None
    failed_starts: int = 0  # exits before serving, in a row
    exits: collections.deque[float] = field(default_factory=collections.deque)


def _how(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


class Supervisor:
    """Run `processes` workers of the `totpd serve` command line `argv` (see the module doc)."""

    def __init__(
        self,
        argv: Sequence[str],
        processes: int,
        settings: Settings,
        ready_file: Path | None = None,
    ) -> None:
        self._argv = list(argv)
        self._settings = settings
        self._ready_file = ready_file
        self._slots = [_Slot(index) for index in range(processes)]
        self._max_exits = max(5, 2 * processes)
        self._exits: collections.deque[float] = collections.deque()
        self._address = ""
        self._run_dir = Path()
        self._env: dict[str, str] = {}

    def run(self) -> int:
        """Serve until a signal; 0 when every worker drained, 1 when they kept dying.

        SupervisorError when the workers cannot be started.
        """
        with (
            PortReservation(self._settings.listen_address) as reservation,
            tempfile.TemporaryDirectory(prefix="totpd-supervisor-") as run_dir,
            StopSignals().installed() as signals,
        ):
            self._address = reservation.address
            self._run_dir = Path(run_dir)
            self._env = _worker_environment(self._run_dir / "metrics")
            try:
                with _metrics_listener(self._settings.metrics_address):
                    if self._start_all(signals):
                        return self._supervise(signals)
                    return self._shutdown(signals)
            finally:
                self._stop_now()
                os.environ.pop(metrics.MULTIPROC_ENV, None)

    # -- starting -------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        slot.ready_file = self._run_dir / f"worker-{slot.index}-{time.monotonic_ns()}.ready"
        command = [
            sys.executable,
            "-m",
            "totpd",
            *self._argv,
            # Later flags win: these override whatever the command line said.
            "--processes=1",
            f"--listen={self._address}",
            f"--ready-file={slot.ready_file}",
            f"--worker-of={os.getpid()}",
            f"--worker-index={slot.index}",
        ]
        read_end, write_end = os.pipe()
        try:
            # Our own interpreter and command line, never a shell.
            slot.process = subprocess.Popen(  # noqa: S603
                command, stderr=write_end, env=self._env, process_group=0
            )
        finally:
            os.close(write_end)
        slot.relay = LineRelay(read_end, sys.stderr.buffer, slot.index)
        slot.relay.start()
        slot.serving, slot.restart_at = False, None

    def _start_all(self, signals: StopSignals) -> bool:
        """Start every worker; True once all serve, False on a signal first."""
        for slot in self._slots:
            self._start(slot)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not all(slot.serving for slot in self._slots):
            if signals.count:
                return False
            for slot in self._slots:
                assert slot.process is not None and slot.ready_file is not None
                returncode = slot.process.poll()
                if returncode is not None:
                    raise SupervisorError(
                        f"worker {slot.index} stopped before serving ({_how(returncode)}); "
                        "its error is above"
                    )
                slot.serving = slot.serving or slot.ready_file.exists()
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"the workers were not serving after {START_TIMEOUT_SECONDS:.0f} s"
                )
            time.sleep(_POLL_SECONDS)
        if self._ready_file is not None:
            write_ready_file(self._ready_file, self._address)
        _log.info(
            "supervising",
            extra={
                "address": self._address,
                "processes": len(self._slots),
                "pids": [slot.process.pid for slot in self._slots if slot.process],
            },
        )
        return True

    # -- restarting -----------------------------------------------------------

    def _supervise(self, signals: StopSignals) -> int:
        """Restart workers that exit until a signal (then drain) or too many exits (1)."""
        while not signals.count:
            now = time.monotonic()
            for slot in self._slots:
                if slot.process is None:
                    if slot.restart_at is not None and now >= slot.restart_at:
                        self._start(slot)
                    continue
                returncode = slot.process.poll()
                if returncode is None:
                    if not slot.serving and slot.ready_file and slot.ready_file.exists():
                        slot.serving = True
                        _log.info(
                            "worker serving", extra={"worker": slot.index, "pid": slot.process.pid}
                        )
                    continue
                failure = self._exited(slot, returncode, now)
                if failure is not None:
                    _log.error(failure)
                    self._shutdown(signals, reason="giving up")
                    return 1
            time.sleep(_POLL_SECONDS)
        return self._shutdown(signals)

    def _exited(self, slot: _Slot, returncode: int, now: float) -> str | None:
        """Schedule the restart of a worker that exited, or say why not."""
        assert slot.process is not None
        pid = slot.process.pid
        metrics.worker_exited(pid)
        slot.process = None
        slot.failed_starts = 0 if slot.serving else slot.failed_starts + 1
        for exits in (self._exits, slot.exits):
            exits.append(now)
            while exits and exits[0] < now - EXIT_WINDOW_SECONDS:
                exits.popleft()
        how = _how(returncode)
        if slot.failed_starts >= FAILED_STARTS_LIMIT:
            return (
                f"worker {slot.index} failed to start {slot.failed_starts} times in a row "
                f"(last: {how}); giving up, see its errors above"
            )
        if len(self._exits) > self._max_exits:
            return (
                f"workers keep dying: {len(self._exits)} exits within "
                f"{EXIT_WINDOW_SECONDS:.0f} s (last: worker {slot.index}, {how}); giving up"
            )
        delay = min(MAX_RESTART_DELAY, FIRST_RESTART_DELAY * 2 ** (len(slot.exits) - 1))
        slot.restart_at = now + delay
        _log.warning(
            "worker exited; starting it again",
            extra={"worker": slot.index, "pid": pid, "exit": how, "restart_in_s": delay},
        )
        return None

    # -- stopping -------------------------------------------------------------

    def _running(self) -> list[_Slot]:
        return [slot for slot in self._slots if slot.process is not None]

    def _shutdown(self, signals: StopSignals, reason: str = "") -> int:
        """SIGTERM every worker, and again on a second signal; wait for all to stop.

        0 when every worker stopped cleanly, else 1.
        """
        cause = {"signal": signals.names[0]} if signals.names else {"reason": reason}
        _log.info("stopping: every worker drains", extra=cause)
        bound = self._settings.drain_seconds + self._settings.shutdown_grace_seconds
        deadline = time.monotonic() + bound + STOP_MARGIN_SECONDS
        forwarded, unclean = 0, []
        while running := self._running():
            while forwarded < min(max(signals.count, 1), 2):
                forwarded += 1
                for slot in running:
                    _signal(slot, signal.SIGTERM)
            for slot in running:
                assert slot.process is not None
                returncode = slot.process.poll()
                if returncode is not None:
                    metrics.worker_exited(slot.process.pid)
                    slot.process = None
                    if returncode not in (0, -signal.SIGTERM):
                        unclean.append(f"worker {slot.index}: {_how(returncode)}")
            if time.monotonic() > deadline:
                unclean += [f"worker {slot.index}: still running, killed" for slot in running]
                self._stop_now()
            time.sleep(_POLL_SECONDS)
        if unclean:
            _log.error("stopped, not cleanly", extra={"workers": unclean})
            return 1
        _log.info("stopped")
        return 0

    def _stop_now(self) -> None:
        """SIGKILL whatever still runs and reap it (an abandoned start, a giving up)."""
        for slot in self._running():
            assert slot.process is not None
            _signal(slot, signal.SIGKILL)
            slot.process.wait()
            metrics.worker_exited(slot.process.pid)
            slot.process = None
        for slot in self._slots:
            if slot.relay is not None:
                slot.relay.join(timeout=5)


def _signal(slot: _Slot, signum: int) -> None:
    assert slot.process is not None
    if slot.process.poll() is None:
        slot.process.send_signal(signum)


# --- metrics: the workers write files, the supervisor serves their sum ------------


def _worker_environment(metrics_dir: Path) -> dict[str, str]:
    """Workers write their metrics to files in `metrics_dir`; the supervisor serves them."""
    metrics_dir.mkdir()
    os.environ[metrics.MULTIPROC_ENV] = str(metrics_dir)  # the supervisor's listener reads it too
    return {**os.environ, metrics.LISTENER_ENV: "supervisor"}


@contextmanager
def _metrics_listener(address: str) -> Iterator[None]:
    """One listener for every worker, while the supervisor runs (none when `address` is empty).

    A listener that cannot bind is logged, not fatal, as in a single process
    (`app.observed`): Prometheus shows the missing target.
    """
    listener = None
    if address:
        try:
            listener = metrics.start_metrics_listener(address)
        except OSError as error:
            _log.warning(
                "metrics listener not started", extra={"address": address, "error": error.strerror}
            )
    try:
        yield
    finally:
        if listener is not None:
            listener.close()
