"""The log handler: request threads only queue; lines come out whole and in order."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from totpd.logs import BatchedStreamHandler, JsonFormatter


class RecordingStream(io.StringIO):
    """A stream that remembers which thread made each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: list[str] = []

    def write(self, text: str) -> int:
        self.writers.append(threading.current_thread().name)
        return super().write(text)


@pytest.fixture
def stream() -> RecordingStream:
    return RecordingStream()


@pytest.fixture
def logger(stream: RecordingStream) -> Iterator[logging.Logger]:
    # A long interval: only the tests that wait for the thread see it write.
    handler = BatchedStreamHandler(stream, interval=3600)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger(f"test-logs-{id(stream)}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield log
    log.removeHandler(handler)
    handler.close()


def _messages(stream: RecordingStream) -> list[str]:
    return [json.loads(line)["msg"] for line in stream.getvalue().splitlines()]


def test_info_is_queued_not_written_by_the_caller(
    logger: logging.Logger, stream: RecordingStream
) -> None:
    logger.info("one", extra={"method": "/x"})
    assert stream.getvalue() == ""


def test_flush_writes_everything_in_order_in_one_write(
    logger: logging.Logger, stream: RecordingStream
) -> None:
    for n in range(50):
        logger.info(f"line {n}")
    logger.handlers[0].flush()
    assert _messages(stream) == [f"line {n}" for n in range(50)]
    assert len(stream.writers) == 1


def test_a_warning_is_written_at_once_after_what_came_before(
    logger: logging.Logger, stream: RecordingStream
) -> None:
    logger.info("before")
    logger.warning("careful")
    assert _messages(stream) == ["before", "careful"]


def test_close_writes_what_is_queued(logger: logging.Logger, stream: RecordingStream) -> None:
    logger.info("last words")
    logger.handlers[0].close()
    assert _messages(stream) == ["last words"]


def test_the_background_thread_writes_without_a_flush(stream: RecordingStream) -> None:
    handler = BatchedStreamHandler(stream, interval=0.01)
    handler.setFormatter(JsonFormatter())
    try:
        handler.handle(logging.LogRecord("t", logging.INFO, __file__, 1, "queued", None, None))
        deadline = time.monotonic() + 5
        while not stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _messages(stream) == ["queued"]
        assert stream.writers == ["totpd-log-writer"]
    finally:
        handler.close()


def test_records_from_many_threads_all_arrive_whole(
    logger: logging.Logger, stream: RecordingStream
) -> None:
    def log_some(worker: int) -> None:
        for n in range(200):
            logger.info(f"{worker}:{n}")

    threads = [threading.Thread(target=log_some, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.handlers[0].flush()
    messages = _messages(stream)
    assert sorted(messages) == sorted(f"{w}:{n}" for w in range(4) for n in range(200))
    for worker in range(4):  # each thread's lines keep their order
        mine = [m for m in messages if m.startswith(f"{worker}:")]
        assert mine == [f"{worker}:{n}" for n in range(200)]


def test_a_stream_that_stops_taking_lines_costs_lines_not_memory(
    stream: RecordingStream,
) -> None:
    handler = BatchedStreamHandler(stream, interval=3600, max_queued=5)
    handler.setFormatter(JsonFormatter())
    try:
        for n in range(8):  # nothing is written meanwhile: 5 wait, 3 are dropped
            handler.handle(logging.LogRecord("t", logging.INFO, __file__, 1, f"{n}", None, None))
        handler.flush()
        records = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [r["msg"] for r in records[:5]] == ["0", "1", "2", "3", "4"]
        assert records[5]["level"] == "WARNING" and records[5]["dropped"] == 3
        handler.flush()  # the count was reported once
        assert len(stream.getvalue().splitlines()) == 6
    finally:
        handler.close()
