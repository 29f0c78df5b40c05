"""The access line: one per RPC (method, status code, duration; caller and tenant once known).

Never a payload. Written on every call, so its record is built without
`Logger.info`'s general machinery when `totpd.logs.configure_logging` has
turned off what no line shows (caller frames, threads, processes) and no
other record factory is installed; otherwise through `Logger.info`, to the
same effect (the same attributes, the same handlers and filters).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Final

import grpc

_access_log: Final = logging.getLogger("totpd.access")
_MESSAGE: Final = "rpc"
_new_record: Final = logging.LogRecord.__new__


def _constant_fields() -> dict[str, Any]:
    """What `Logger.info` puts on every access record, but for the time and `extra`."""
    record = logging.LogRecord(
        _access_log.name,
        logging.INFO,
        "(unknown file)",  # what Logger.info records without caller lookup
        0,
        _MESSAGE,
        (),  # Logger.info's empty args
        None,
        "(unknown function)",
    )
    fields = vars(record)  # its times are overwritten per line, in place: the same key order
    fields.update(thread=None, threadName=None, processName=None, process=None)
    return fields


_CONSTANT: Final = _constant_fields()


# The LogRecord fields and time arithmetic copied below are Python 3.11's (3.12 adds
# the asyncio task's name, 3.13 counts in nanoseconds): other versions take Logger.info.
_SAME_RECORD_LAYOUT: Final = sys.version_info[:2] == (3, 11)


def _fast_path() -> bool:
    """Whether a record built from `_CONSTANT` equals the one `Logger.info` would build."""
    return (
        _SAME_RECORD_LAYOUT
        and logging.getLogRecordFactory() is logging.LogRecord
        and logging._srcfile is None
        and not (logging.logThreads or logging.logProcesses or logging.logMultiprocessing)
    )


def write(
    method: str, code: grpc.StatusCode, seconds: float, caller: str | None, tenant: str
) -> None:
    """One access line; `caller` None: the call was never resolved to a caller."""
    if not _access_log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, object] = {
        "method": method,
        "code": code.name,
        "duration_ms": round(seconds * 1000, 3),
    }
    if caller is not None:
        fields["caller"] = caller
        fields["tenant"] = tenant
    if not _fast_path():
        _access_log.info(_MESSAGE, extra=fields)
        return
    now = time.time()
    record = _new_record(logging.LogRecord)
    attributes = record.__dict__
    attributes.update(_CONSTANT)
    attributes["created"] = now
    attributes["msecs"] = int((now - int(now)) * 1000) + 0.0
    attributes["relativeCreated"] = (now - logging._startTime) * 1000  # type: ignore[attr-defined]
    attributes.update(fields)
    _access_log.handle(record)
