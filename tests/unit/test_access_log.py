"""The access line's record: built from constant fields on the fast path, the same record
`Logger.info` builds; and the JSON line's time, the same text `datetime` gives."""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import pytest

from totpd.logs import JsonFormatter, _Timestamps
from totpd.rpc import access_log

_TIMED = ("created", "msecs", "relativeCreated")


class Collecting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected(monkeypatch: pytest.MonkeyPatch) -> Iterator[Collecting]:
    # What configure_logging turns off: no caller frame, thread or process on a record.
    monkeypatch.setattr(logging, "_srcfile", None)
    for flag in ("logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, flag, False)
    logger = logging.getLogger("totpd.access")
    handler = Collecting()
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _untimed(record: logging.LogRecord) -> dict[str, object]:
    return {key: value for key, value in vars(record).items() if key not in _TIMED}


def test_the_fast_record_is_the_record_logger_info_builds(collected: Collecting) -> None:
    # The fast path is Python 3.11's record layout; other versions build it with Logger.info.
    assert access_log._fast_path() is (sys.version_info[:2] == (3, 11))
    before = time.time()
    access_log.write("/totpd.v1.TotpService/Verify", grpc.StatusCode.OK, 0.0012345, "app", "shop")
    fields = {
        "method": "/totpd.v1.TotpService/Verify",
        "code": "OK",
        "duration_ms": 1.234,
        "caller": "app",
        "tenant": "shop",
    }
    logging.getLogger("totpd.access").info("rpc", extra=fields)
    fast, slow = collected.records
    assert type(fast) is logging.LogRecord
    assert _untimed(fast) == _untimed(slow)
    assert list(vars(fast)) == list(vars(slow))  # the same order: extras after the rest
    assert before <= fast.created <= slow.created
    assert fast.msecs == int((fast.created - int(fast.created)) * 1000)
    line = json.loads(JsonFormatter().format(fast))
    assert {key: line[key] for key in fields} == fields
    assert (line["level"], line["logger"], line["msg"]) == ("INFO", "totpd.access", "rpc")


def test_an_unresolved_call_has_no_caller_and_off_the_fast_path_the_same(
    collected: Collecting, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_log.write("/grpc.health.v1.Health/Check", grpc.StatusCode.OK, 0.001, None, "")
    monkeypatch.setattr(logging, "logThreads", True)  # no longer what the constants assume
    assert not access_log._fast_path()
    access_log.write("/grpc.health.v1.Health/Check", grpc.StatusCode.OK, 0.001, None, "")
    fast, slow = collected.records
    assert "caller" not in vars(fast) and "tenant" not in vars(fast)
    assert slow.thread is not None  # built by Logger.info, with the thread
    assert {key: value for key, value in _untimed(fast).items() if "thread" not in key} == {
        key: value for key, value in _untimed(slow).items() if "thread" not in key
    }


def test_nothing_is_built_below_the_level(collected: Collecting) -> None:
    logging.getLogger("totpd.access").setLevel(logging.WARNING)
    access_log.write("/totpd.v1.TotpService/Verify", grpc.StatusCode.OK, 0.001, "app", "shop")
    assert collected.records == []


def test_json_times_are_the_text_datetime_gives() -> None:
    timestamps = _Timestamps()
    rng = random.Random(16)
    now = time.time()
    instants = [now, float(int(now)), int(now) + 0.9999996, int(now) + 0.0004999, 0.0]
    instants += [now + rng.uniform(-1e8, 1e8) for _ in range(20_000)]
    instants += [round(now + rng.uniform(-1e6, 1e6), 3) for _ in range(20_000)]
    for instant in instants:
        expected = datetime.fromtimestamp(instant, UTC).isoformat(timespec="milliseconds")
        assert timestamps(instant) == expected, instant
