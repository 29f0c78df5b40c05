"""Which exceptions mean the database, not the request, failed.

Both the gRPC error mapping and BatchVerify (which answers a fault per item)
classify errors here, so the two can never disagree.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc


def is_pool_exhausted(error: BaseException) -> bool:
    """No pooled connection freed up in time: every one is busy (overload)."""
    return isinstance(error, sa_exc.TimeoutError)


def is_outage(error: BaseException) -> bool:
    """The database refused, dropped or failed the connection or statement."""
    if isinstance(error, sa_exc.OperationalError):
        return True
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated


def first_line(error: BaseException) -> str:
    """The first line of an error's message, at most 200 characters: for log
    lines about a driver's own error ("database is locked", "disk I/O error"),
    never SQLAlchemy's wrapper, whose message quotes the SQL and its parameters."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else "")[:200]
