"""The operating system's name of each thread: the Python thread's own.

Python 3.11 leaves every thread of a process named `python` outside it, so
`top -H`, `ps -L` and /proc/<pid>/task/*/comm cannot tell the event loop from
a round thread or a log writer. `name_os_threads` makes every thread started
afterwards take its Python name (Linux keeps the first 15 bytes), from one
hook rather than at each of the places that start threads, and grpc's own
Python threads with them.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading
from types import FrameType
from typing import Any, Final

_PR_SET_NAME: Final = 15  # prctl(2): names the calling thread
_OS_NAME_BYTES: Final = 15  # the kernel's limit, without the terminating NUL


def name_os_threads() -> None:
    """From now on, every thread started through `threading` names its OS thread
    after itself as it starts (Linux; elsewhere nothing changes)."""
    if sys.platform == "linux":
        threading.setprofile(_name_then_stop)


def name_this_thread() -> None:
    """Give the calling OS thread its Python thread's name (Linux)."""
    if sys.platform != "linux":
        return
    name = threading.current_thread().name.encode("utf-8", "replace")[:_OS_NAME_BYTES]
    try:
        _libc().prctl(_PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the names are a convenience
        pass


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _name_then_stop(frame: FrameType, event: str, arg: Any) -> None:
    """A profile hook that runs once per thread: at the thread's first call."""
    sys.setprofile(None)
    name_this_thread()
