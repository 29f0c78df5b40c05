"""Structured logging: one JSON object per line on stderr (or plain text).

Design notes: ARCHITECTURE.md, "Module notes", logs.py.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Final, TextIO

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))
) | {"message", "asctime", "taskName"}

# Libraries whose INFO lines say nothing an operator acts on.
_QUIET_LOGGERS: Final = ("alembic",)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


# One encoder for every line: json.dumps builds a new one per call when given options.
_JSON: Final = json.JSONEncoder(default=str, ensure_ascii=False)


class _Timestamps:
    """ISO 8601 UTC times to the millisecond, as `datetime.isoformat` writes them, the
    date and time of day made once per second rather than a datetime per line."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = (-1, "")  # (whole second, its text without the fraction)

    def __call__(self, created: float) -> str:
        second = math.floor(created)
        micros = round((created - second) * 1e6)  # rounded as datetime rounds, then cut
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        last_second, text = self._last  # one tuple: formatting threads may race, harmlessly
        if second != last_second:
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._last = (second, text)
        return f"{text}.{micros // 1000:03d}+00:00"


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._timestamp = _Timestamps()

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        document.update(extra_fields(record))
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return _JSON.encode(document)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extra_fields(record)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


class BatchedStreamHandler(logging.Handler):
    """Queue records; a background thread writes them in order, one write per batch.

    The thread writes every `interval` seconds. A WARNING or worse is written
    at once, with everything queued before it, so a line an operator acts on
    is not held back and survives a crash that follows it. `flush()` (called
    by logging.shutdown at exit) and `close()` write what is queued.

    If the stream stops taking lines (a stuck log pipe), at most `max_queued`
    wait; later ones are dropped and counted, and one WARNING line says how
    many once writing resumes. A stuck pipe costs log lines, not memory.
    """

    def __init__(self, stream: TextIO, interval: float = 0.05, max_queued: int = 100_000) -> None:
        super().__init__()
        self.stream = stream
        self._max_queued = max_queued
        self._dropped = 0  # a count, not an exact one: emitters race on it
        self._queued: collections.deque[logging.LogRecord] = collections.deque()
        self._write_lock = threading.Lock()  # keeps batches in order
        self._stopped = threading.Event()
        self._writer = threading.Thread(
            target=self._write_every, args=(interval,), name="totpd-log-writer", daemon=True
        )
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        if len(self._queued) >= self._max_queued:
            self._dropped += 1
            return
        self._queued.append(record)  # deque.append is atomic: no lock, no I/O
        if record.levelno >= logging.WARNING:
            self.flush()

    def flush(self) -> None:
        with self._write_lock:
            lines = []
            dropped, self._dropped = self._dropped, 0
            if dropped:
                self._queued.append(_dropped_lines(dropped))
            while self._queued:
                record = self._queued.popleft()
                try:
                    lines.append(self.format(record) + "\n")
                except Exception:
                    self.handleError(record)
            if lines:
                try:
                    self.stream.write("".join(lines))
                    self.stream.flush()
                except Exception:
                    self.handleError(record)

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()

    def _write_every(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            self.flush()


def _dropped_lines(count: int) -> logging.LogRecord:
    record = logging.LogRecord(
        "totpd.logs",
        logging.WARNING,
        __file__,
        0,
        "log lines dropped: the log stream did not keep up",
        None,
        None,
    )
    record.dropped = count
    return record


def configure_logging(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Install one handler on the root logger (replacing earlier ones from here)."""
    handler = BatchedStreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.set_name("totpd")
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "totpd":
            root.removeHandler(existing)
            existing.close()
    root.addHandler(handler)
    root.setLevel(level)
    # No line shows the caller's file and line, thread or process, so records
    # skip looking them up: the logging docs' "Optimization" settings, which
    # make the access line about half as costly in the request thread.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for noisy in _QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def flush_logs() -> None:
    """Write every queued line now (before printing to stderr directly)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
