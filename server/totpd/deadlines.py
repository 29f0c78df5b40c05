"""The deadline of the call being served, from the rpc layer down to the store.

Design notes: ARCHITECTURE.md, "Module notes", deadlines.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

_DEADLINE: ContextVar[float | None] = ContextVar("totpd_deadline", default=None)


def current() -> float | None:
    """The call's deadline as a `time.monotonic()` instant, or None."""
    return _DEADLINE.get()


def remaining() -> float | None:
    """Seconds left before the call's deadline (0 or less once it passed); None without one."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def expired() -> bool:
    """Whether the call has a deadline and it has passed."""
    deadline = _DEADLINE.get()
    return deadline is not None and time.monotonic() >= deadline


@contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """Run the block with a deadline `seconds` from now (None: no deadline).

    An enclosing deadline that comes sooner stays in force: a deadline is
    only ever shortened.
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    outer = _DEADLINE.get()
    if outer is not None and (deadline is None or outer < deadline):
        deadline = outer
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def begin(seconds: float) -> Token[float | None]:
    """`within(seconds)` without a `with` block (a generator per call costs on the rpc
    layer's path): pass the token to `end` when the block ends."""
    deadline = time.monotonic() + seconds
    outer = _DEADLINE.get()
    if outer is not None and outer < deadline:
        deadline = outer
    return _DEADLINE.set(deadline)


def end(token: Token[float | None]) -> None:
    _DEADLINE.reset(token)
