"""The key table: keys and their parameters in contiguous buffers, as one C call reads
them, with every copy of the key bytes wiped."""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from totpd.domain import Algorithm
from totpd.otp import _core
from totpd.otp._core import NativeError


class KeyTable:
    """Keys and their parameters in contiguous buffers, built once per batch.

    Key ``i`` is ``keys[offsets[i]:offsets[i + 1]]``; ``counters[i]`` is the server's
    current time step for that key's period. Call :meth:`wipe` (or use the table as a
    context manager) when done: it zeroes the key buffer.

    ``keys`` is a view of the used part of a larger buffer. :meth:`add` grows that
    buffer itself (doubling, copy, then wipe the old one) rather than with
    ``bytearray +=``, whose reallocation would free old copies of the keys unwiped.
    Do not change the buffers during a :func:`verify_batch` call (it releases the
    GIL): the C core stays memory-safe, but the answers would be meaningless.

    The table owns its C view (:meth:`c_table`): built at the first call, kept until
    :meth:`add` or :meth:`wipe` changes the table. Meanwhile the column arrays are
    exported to cffi, so their values may change but not their length: grow the table
    with :meth:`add`.
    """

    __slots__ = ("_algorithms", "_buf", "_c", "_counters", "_digits", "_offsets", "_used")

    def __init__(self) -> None:
        self._empty()

    def _empty(self) -> None:
        # Fresh buffers rather than clear(): a live cffi view would block the resize.
        self._c: tuple[Any, tuple[Any, ...]] | None = None
        self._buf = bytearray()
        self._used = 0
        self._offsets = array("I", [0])
        self._algorithms = array("B")
        self._digits = array("B")
        self._counters = array("Q")

    @property
    def keys(self) -> memoryview:
        """The key bytes, all keys back to back (a view; the table owns the buffer)."""
        return memoryview(self._buf)[: self._used]

    @property
    def offsets(self) -> array[int]:
        """Key ``i`` is ``keys[offsets[i]:offsets[i + 1]]`` (``len(self) + 1`` entries)."""
        return self._offsets

    @property
    def algorithms(self) -> array[int]:
        """Each key's ``TOTPD_ALG_*`` code."""
        return self._algorithms

    @property
    def digits(self) -> array[int]:
        return self._digits

    @property
    def counters(self) -> array[int]:
        """Each key's current time step."""
        return self._counters

    def __len__(self) -> int:
        return len(self._algorithms)

    def _reserve(self, size: int) -> None:
        """Room for ``size`` key bytes; a buffer left behind is wiped first."""
        old = self._buf
        if size <= len(old):
            return
        new = bytearray(max(size, 2 * len(old), 256))
        if self._used:
            ffi = _core.ffi
            ffi.memmove(ffi.from_buffer(new), ffi.from_buffer(old), self._used)
            _core.lib.totpd_wipe(ffi.from_buffer(old), len(old))
        self._buf = new

    def add(
        self, key: bytes | bytearray | memoryview, algorithm: Algorithm, digits: int, counter: int
    ) -> int:
        """Append one key; returns its index for :func:`verify_batch`."""
        alg = _core.alg_code(algorithm)
        _core.check_digits(digits)
        _core.check_counter(counter)
        self._c = None  # releases the exports that would block the appends below
        data = memoryview(key)
        start = self._used
        end = start + data.nbytes
        _check_size(end)
        self._reserve(end)
        self._buf[start:end] = data  # same length: written in place, never reallocated
        self._used = end
        self._offsets.append(end)
        self._algorithms.append(alg)
        self._digits.append(digits)
        self._counters.append(counter)
        return len(self._algorithms) - 1

    @classmethod
    def of(
        cls,
        keys: Sequence[bytes],
        algorithms: Sequence[Algorithm],
        digits: Sequence[int],
        counters: Sequence[int],
    ) -> KeyTable:
        """A table of many keys at once (key ``i`` gets index ``i``), with the checks
        of :meth:`add` applied to whole columns: a batch's table in one step."""
        if not len(keys) == len(algorithms) == len(digits) == len(counters):
            raise ValueError("keys, algorithms, digits and counters differ in length")
        try:
            codes = array("B", [_core.ALG_CODES[algorithm] for algorithm in algorithms])
        except (KeyError, TypeError):
            raise NativeError(int(_core.lib.TOTPD_ERR_ALGORITHM), "unknown algorithm") from None
        for size in set(digits):
            _core.check_digits(size)
        if counters:
            _core.check_counter(min(counters))
            _core.check_counter(max(counters))
        table = cls()
        # join sizes its result first: one allocation, no reallocated copy left behind.
        table._buf = bytearray().join(keys)
        table._used = len(table._buf)
        if table._used > _core.U32_MAX:
            table.wipe()
            _check_size(table._used)
        table._offsets = array("I", [0, *itertools.accumulate(map(len, keys))])
        table._algorithms = codes
        table._digits = array("B", digits)
        table._counters = array("Q", counters)
        return table

    def c_table(self) -> tuple[Any, tuple[Any, ...]]:
        """The table as the C core reads it: a ``totpd_key_table *`` and the cffi views
        its pointers go through. A caller keeps the pair alive until its C call returns.

        A change makes a new struct rather than rewriting this one: a call in another
        thread (the GIL is released) may be reading it.
        """
        view = self._c
        if view is None:
            view = self._c = self._new_c_table()
        return view

    def _new_c_table(self) -> tuple[Any, tuple[Any, ...]]:
        key_view = self.keys
        ffi = _core.ffi
        views = (
            ffi.from_buffer("uint8_t[]", key_view),
            ffi.from_buffer("uint32_t[]", self._offsets),
            ffi.from_buffer("uint8_t[]", self._algorithms),
            ffi.from_buffer("uint8_t[]", self._digits),
            ffi.from_buffer("uint64_t[]", self._counters),
        )
        columns = (self._algorithms, self._digits, self._counters)
        n_keys = max(0, min(len(self._offsets) - 1, *map(len, columns)))
        table = ffi.new("totpd_key_table *", (views[0], len(key_view), n_keys, *views[1:]))
        return table, views

    def wipe(self) -> None:
        """Zero the key buffer and empty the table."""
        self._c = None
        buf = self._buf
        if buf:
            _core.lib.totpd_wipe(_core.ffi.from_buffer(buf), len(buf))
        self._empty()

    def __enter__(self) -> KeyTable:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wipe()


def _check_size(size: int) -> None:
    """The C core indexes keys with uint32 offsets."""
    if size > _core.U32_MAX:
        raise NativeError(int(_core.lib.TOTPD_ERR_OFFSETS), "key buffer exceeds 4 GiB")
