"""Key material on the Python side: no unwiped copy left behind.

* ``KeyTable.add`` grows its key buffer itself and wipes the buffer it leaves
  (``bytearray +=`` would free old copies of the keys without wiping them).
* The threaded ``verify_batch`` wipes the scratch pad states only once every
  worker is done, even when one chunk fails.
"""

from __future__ import annotations

import threading
import time
from array import array
from typing import Any

import pytest

from tests.native.conftest import SEEDS
from totpd import otp
from totpd._native import ffi
from totpd.otp import _core
from totpd.service.types import Algorithm

MARKER = b"\xa5KEY" * 5  # 20 bytes


def test_growth_wipes_the_buffer_it_leaves() -> None:
    table = otp.KeyTable()
    table.add(MARKER, Algorithm.SHA1, 6, 1)
    # A cffi view of the first buffer keeps it alive (and, with the old
    # `bytearray +=`, made the growth below fail: an exported buffer cannot be resized).
    first = ffi.from_buffer(table.keys)
    first_size = len(first)
    for _ in range(200):
        table.add(MARKER, Algorithm.SHA1, 6, 1)
    assert ffi.from_buffer(table.keys) != first  # the table moved to a larger buffer
    assert bytes(ffi.buffer(first, first_size)) == bytes(first_size)
    assert bytes(table.keys) == MARKER * 201
    assert list(table.offsets) == [20 * i for i in range(202)]
    table.wipe()
    assert len(table.keys) == 0


def test_every_intermediate_buffer_is_wiped() -> None:
    """Hold on to every buffer the table grows through: all but the last are zero."""
    table = otp.KeyTable()
    held: list[tuple[Any, int]] = []
    for i in range(300):
        table.add(MARKER if i % 2 else b"\x5a" * (i % 70), Algorithm.SHA1, 6, 1)
        view = ffi.from_buffer(table.keys)
        if not held or held[-1][0] != view:
            held.append((view, len(view)))
    assert len(held) > 3
    for view, size in held[:-1]:
        assert bytes(ffi.buffer(view, size)) == bytes(size)
    assert MARKER in bytes(table.keys)
    table.wipe()


def test_table_views_and_key_formats() -> None:
    """keys is a view of the used bytes; a non-byte memoryview adds its bytes."""
    table = otp.KeyTable()
    assert bytes(table.keys) == b""
    words = array("I", [0x01020304, 0x05060708])
    index = table.add(memoryview(words), Algorithm.SHA1, 6, 0)
    assert bytes(table.keys) == words.tobytes()
    assert list(table.offsets) == [0, 8]
    code = int(otp.hotp(words.tobytes(), 0, 6, Algorithm.SHA1))
    assert list(otp.verify_batch(table, [index], [code], 0)) == [0]
    table.wipe()


def test_threaded_error_waits_for_every_worker_before_the_wipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One chunk fails at once while another is still running: the wipe must wait.

    Through the package's seam: every otp module reaches C as ``_core.lib`` at call time.
    """
    real = _core.lib
    events: list[str] = []
    lock = threading.Lock()

    class SlowLib:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        @staticmethod
        def totpd_verify_prepared(*args: Any) -> int:
            first_pair, end_pair = args[2], args[3]
            n_pairs = end_pair - first_pair
            if n_pairs == first_chunk:
                return int(real.TOTPD_ERR_KEY_INDEX)  # fails at once
            time.sleep(0.3)
            rc = int(real.totpd_verify_prepared(*args))
            with lock:
                events.append("worker done")
            return rc

        @staticmethod
        def totpd_wipe(buf: Any, size: int) -> None:
            with lock:
                events.append("wipe")
            real.totpd_wipe(buf, size)

    table = otp.KeyTable()
    table.add(SEEDS[Algorithm.SHA1], Algorithm.SHA1, 6, 1)
    n = otp.THREAD_SPLIT + 3  # split in two: first chunk one pair longer
    first_chunk = (n + 1) // 2
    monkeypatch.setattr(_core, "lib", SlowLib())
    with pytest.raises(otp.NativeError):
        otp.verify_batch(table, [0] * n, [0] * n, 1, threads=2)
    seen = list(events)
    monkeypatch.undo()
    table.wipe()
    assert seen == ["worker done", "wipe"]
