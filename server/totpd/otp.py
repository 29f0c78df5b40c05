"""Typed face of the C TOTP core (``totpd._native``); the only module that imports it.

Three layers, as in pynacl: ``lib`` (raw C), ``_check`` (the one error helper that maps
C return codes to :class:`NativeError`), and the friendly API below.

* :class:`KeyTable` collects keys and their parameters into contiguous buffers.
* :func:`verify_batch` checks many ``(key index, code)`` pairs in one C call and
  returns the matched time step per pair (``-1`` for none).
* :func:`verify`, :func:`hotp` and :func:`totp` are the single-code conveniences.

The C call releases the GIL; batches larger than :data:`THREAD_SPLIT` pairs are split
across a thread pool. The CPU path (portable C, SHA-NI, AVX2, AVX-512) is ``auto`` unless the
composition root forces one with :func:`use_cpu_path` (the ``cpu_path`` setting); an
unknown or unsupported path raises :class:`CpuPathError` there.
"""

from __future__ import annotations

import itertools
import os
import threading
from array import array
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any, Final

from totpd._native import ffi, lib
from totpd.domain import Algorithm

__all__ = [
    "MAX_WINDOW",
    "THREAD_SPLIT",
    "CpuPathError",
    "KeyTable",
    "NativeError",
    "cpu_path",
    "cpu_paths",
    "hotp",
    "totp",
    "use_cpu_path",
    "verify",
    "verify_batch",
]

MAX_WINDOW: Final[int] = int(lib.TOTPD_MAX_WINDOW)
MIN_DIGITS: Final[int] = int(lib.TOTPD_MIN_DIGITS)
MAX_DIGITS: Final[int] = int(lib.TOTPD_MAX_DIGITS)
THREAD_SPLIT: Final[int] = 4096
"""Batches with more pairs than this are split across threads."""

# os.cpu_count() reads sysfs on every call: read it once, at import.
_CPUS: Final[int] = os.cpu_count() or 1

_PAD_SLOT_WORDS: Final[int] = int(lib.TOTPD_PAD_SLOT_WORDS)
_U32_MAX: Final[int] = 0xFFFFFFFF
_I64_MAX: Final[int] = 0x7FFFFFFFFFFFFFFF

_ALG_CODES: Final[dict[Algorithm, int]] = {
    Algorithm.SHA1: int(lib.TOTPD_ALG_SHA1),
    Algorithm.SHA256: int(lib.TOTPD_ALG_SHA256),
    Algorithm.SHA512: int(lib.TOTPD_ALG_SHA512),
}

_PATHS: Final[dict[str, int]] = {
    "auto": int(lib.TOTPD_PATH_AUTO),
    "portable": int(lib.TOTPD_PATH_PORTABLE),
    "shani": int(lib.TOTPD_PATH_SHANI),
    "avx2": int(lib.TOTPD_PATH_AVX2),
    "avx512": int(lib.TOTPD_PATH_AVX512),
    "avx512x16": int(lib.TOTPD_PATH_AVX512X16),
}
_PATH_NAMES: Final[dict[int, str]] = {v: k for k, v in _PATHS.items()}
_DEFAULT: Final[int] = -1


class NativeError(Exception):
    """An error code from the C core (or input the core would reject).

    ``code`` is the C error code (a negative ``TOTPD_ERR_*`` value); the message is the
    core's own (``totpd_strerror``).
    """

    def __init__(self, code: int, detail: str | None = None) -> None:
        self.code = code
        message = ffi.string(lib.totpd_strerror(code)).decode()
        super().__init__(f"{message}: {detail}" if detail else message)


def _check(rc: int, detail: str | None = None) -> None:
    """The one error helper: raise NativeError for a negative C return code."""
    if rc != 0:
        raise NativeError(rc, detail)


def _path_code(path: str | None) -> int:
    if path is None:
        return _DEFAULT
    try:
        code = _PATHS[path]
    except KeyError:
        raise NativeError(int(lib.TOTPD_ERR_PATH), f"unknown path {path!r}") from None
    if not lib.totpd_path_supported(code):
        raise NativeError(int(lib.TOTPD_ERR_PATH), f"path {path!r} is not supported here")
    return code


class CpuPathError(NativeError, ValueError):
    """The ``cpu_path`` setting names an unknown path, or one this CPU lacks.

    A ValueError too: a configuration error, which `totpd serve` reports in one line.
    """


def use_cpu_path(name: str) -> None:
    """Make ``name`` ("auto" or one of :func:`cpu_paths`) the path of every call that
    does not force its own. Called once at startup by the composition root, with the
    ``cpu_path`` setting (``TOTPD_CPU_PATH`` in the environment), before any call runs.
    """
    wanted = name.strip().lower() or "auto"
    try:
        _check(int(lib.totpd_set_default_path(_path_code(wanted))))
    except NativeError as error:
        usable = ", ".join(["auto", *cpu_paths()])
        # The message names the environment variable: the usual way to set it.
        raise CpuPathError(
            error.code, f"cpu_path setting, TOTPD_CPU_PATH={wanted}; use one of {usable}"
        ) from None


def cpu_path() -> str:
    """The path dispatch chose for this process: "portable", "shani", "avx2", "avx512"
    or "avx512x16".

    On "avx2" and "avx512", SHA-1 runs 8 lanes at a time (the latter with AVX-512VL
    rotates and ternary logic) and scalar SHA-1/SHA-256 use SHA-NI where present.
    "avx512x16" (the default where AVX-512BW exists) runs fused kernels on 512-bit
    registers: SHA-1 16 lanes, SHA-512 8 lanes; short tails and SHA-256 go scalar.
    """
    return _PATH_NAMES[int(lib.totpd_default_path())]


def cpu_paths() -> list[str]:
    """Every concrete path this CPU supports (for tests and benchmarks)."""
    return [
        name for name, code in _PATHS.items() if name != "auto" and lib.totpd_path_supported(code)
    ]


def _alg_code(algorithm: Algorithm) -> int:
    try:
        return _ALG_CODES[algorithm]
    except (KeyError, TypeError):
        raise NativeError(int(lib.TOTPD_ERR_ALGORITHM), repr(algorithm)) from None


def _check_digits(digits: int) -> None:
    if not MIN_DIGITS <= digits <= MAX_DIGITS:
        raise NativeError(int(lib.TOTPD_ERR_DIGITS), str(digits))


def _check_window(window: int) -> None:
    if not 0 <= window <= MAX_WINDOW:
        raise NativeError(int(lib.TOTPD_ERR_WINDOW), str(window))


def _check_counter(counter: int) -> None:
    if not 0 <= counter <= _I64_MAX:
        raise NativeError(int(lib.TOTPD_ERR_COUNTER), "counter must be in [0, 2**63)")


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
            ffi.memmove(ffi.from_buffer(new), ffi.from_buffer(old), self._used)
            lib.totpd_wipe(ffi.from_buffer(old), len(old))
        self._buf = new

    def add(
        self, key: bytes | bytearray | memoryview, algorithm: Algorithm, digits: int, counter: int
    ) -> int:
        """Append one key; returns its index for :func:`verify_batch`."""
        alg = _alg_code(algorithm)
        _check_digits(digits)
        _check_counter(counter)
        self._c = None  # releases the exports that would block the appends below
        data = memoryview(key)
        start = self._used
        end = start + data.nbytes
        if end > _U32_MAX:
            raise NativeError(int(lib.TOTPD_ERR_OFFSETS), "key buffer exceeds 4 GiB")
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
            codes = array("B", [_ALG_CODES[algorithm] for algorithm in algorithms])
        except (KeyError, TypeError):
            raise NativeError(int(lib.TOTPD_ERR_ALGORITHM), "unknown algorithm") from None
        for size in set(digits):
            _check_digits(size)
        if counters:
            _check_counter(min(counters))
            _check_counter(max(counters))
        table = cls()
        # join sizes its result first: one allocation, no reallocated copy left behind.
        table._buf = bytearray().join(keys)
        table._used = len(table._buf)
        if table._used > _U32_MAX:
            table.wipe()
            raise NativeError(int(lib.TOTPD_ERR_OFFSETS), "key buffer exceeds 4 GiB")
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
            lib.totpd_wipe(ffi.from_buffer(buf), len(buf))
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


def _index_array(values: array[int] | Sequence[int]) -> array[int]:
    if isinstance(values, array) and values.typecode == "I" and values.itemsize == 4:
        return values
    try:
        return array("I", values)
    except OverflowError:
        raise NativeError(int(lib.TOTPD_ERR_KEY_INDEX), "negative or huge index") from None


# A code outside uint32 can never match; map it to a value no HOTP reaches.
_NO_CODE: Final[int] = _U32_MAX


def _codes_array(codes: array[int] | Sequence[int]) -> array[int]:
    if isinstance(codes, array) and codes.typecode == "I" and codes.itemsize == 4:
        return codes
    return array("I", (c if 0 <= c <= _U32_MAX else _NO_CODE for c in codes))


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=_CPUS, thread_name_prefix="totpd-core")
        return _executor


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def _check_all(futures: list[Future[int]]) -> None:
    """Wait for every chunk, then raise the first error (a C error code or an exception)."""
    wait(futures)
    for future in futures:
        _check(future.result())


def verify_batch(
    keys: KeyTable,
    key_indices: array[int] | Sequence[int],
    codes: array[int] | Sequence[int],
    window: int,
    *,
    threads: int | None = None,
    path: str | None = None,
) -> array[int]:
    """Verify ``codes[j]`` against key ``key_indices[j]`` for every pair ``j``.

    Every step in ``[counter - window, counter + window]`` (negative steps skipped) is
    compared in constant time; the result is ``array('q')`` with the lowest matching
    step per pair, or ``-1``. ``threads``: worker threads for batches above
    :data:`THREAD_SPLIT` pairs (default one per core; 1 disables splitting).
    ``path`` forces a CPU path for this call (tests and benchmarks).
    """
    idx = _index_array(key_indices)
    cod = _codes_array(codes)
    if len(idx) != len(cod):
        raise ValueError("key_indices and codes differ in length")
    _check_window(window)
    path_code = _path_code(path)
    n_pairs = len(idx)
    out = array("q", bytes(8 * n_pairs))
    if n_pairs == 0:
        return out

    # c_view (the struct and the buffers it points into) lives until this returns.
    c_view = keys.c_table()
    table = c_view[0]
    n_keys = int(table.n_keys)
    scratch = ffi.new("uint64_t[]", max(1, n_keys) * _PAD_SLOT_WORDS)
    idx_c = ffi.from_buffer("uint32_t[]", idx)
    cod_c = ffi.from_buffer("uint32_t[]", cod)
    pairs = ffi.new("totpd_pairs *", (idx_c, cod_c, n_pairs))
    out_c = ffi.from_buffer("int64_t[]", out)
    n_threads = threads if threads is not None else _CPUS

    if n_threads <= 1 or n_pairs <= THREAD_SPLIT:
        _check(int(lib.totpd_verify_batch(table, pairs, window, path_code, scratch, out_c)))
        return out

    _verify_split(table, pairs, n_threads, window, path_code, scratch, out_c)
    return out


def _verify_split(
    table: Any, pairs: Any, n_threads: int, window: int, path_code: int, scratch: Any, out_c: Any
) -> None:
    """One batch across the pool: pad states by key range, then verdicts by pair range.
    ``scratch`` is wiped once every worker is done, whatever raised."""
    n_keys = int(table.n_keys)
    pending: list[Future[int]] = []
    try:
        pool = _pool()

        def prepare(bounds: tuple[int, int]) -> int:
            return int(lib.totpd_prepare_keys(table, bounds[0], bounds[1], path_code, scratch))

        def run(bounds: tuple[int, int]) -> int:
            lo, hi = bounds
            return int(
                lib.totpd_verify_prepared(table, pairs, lo, hi, window, path_code, scratch, out_c)
            )

        for part in _split(n_keys, n_threads) if n_keys else []:
            pending.append(pool.submit(prepare, part))
        _check_all(pending)
        pending = []
        for part in _split(int(pairs.n_pairs), n_threads):
            pending.append(pool.submit(run, part))
        _check_all(pending)
    finally:
        # No worker may still be writing pad states into scratch when it is wiped
        # (and freed).
        for future in pending:
            future.cancel()
        wait(pending)
        lib.totpd_wipe(scratch, n_keys * _PAD_SLOT_WORDS * 8)


def _owned_key(key: bytes | bytearray | memoryview) -> tuple[bytearray, Any]:
    buf = bytearray(key)
    return buf, ffi.from_buffer("uint8_t[]", buf)


def hotp(
    key: bytes | bytearray | memoryview,
    counter: int,
    digits: int,
    algorithm: Algorithm,
    *,
    path: str | None = None,
) -> str:
    """RFC 4226 HOTP value, zero-padded to ``digits``."""
    alg = _alg_code(algorithm)
    _check_digits(digits)
    _check_counter(counter)
    path_code = _path_code(path)
    buf, cbuf = _owned_key(key)
    out = ffi.new("uint32_t *")
    try:
        _check(int(lib.totpd_hotp(cbuf, len(buf), alg, digits, counter, path_code, out)))
        return str(int(out[0])).zfill(digits)
    finally:
        lib.totpd_wipe(cbuf, len(buf))


def totp(
    key: bytes | bytearray | memoryview,
    unix_time: int,
    period: int,
    digits: int,
    algorithm: Algorithm,
    *,
    path: str | None = None,
) -> str:
    """RFC 6238 TOTP value at ``unix_time`` (T0 = 0), zero-padded to ``digits``."""
    if period <= 0:
        raise ValueError("period must be positive")
    if unix_time < 0:
        raise ValueError("unix_time must not be negative")
    return hotp(key, unix_time // period, digits, algorithm, path=path)


def verify(
    key: bytes | bytearray | memoryview,
    algorithm: Algorithm,
    digits: int,
    counter: int,
    code: int,
    window: int,
    *,
    path: str | None = None,
) -> int | None:
    """The matched step in ``[counter - window, counter + window]``, or None.

    A one-key :class:`KeyTable` through :func:`verify_batch`; the table's copy of the
    key is wiped before returning.
    """
    table = KeyTable()
    try:
        table.add(key, algorithm, digits, counter)
        step = verify_batch(table, [0], [code], window, threads=1, path=path)[0]
    finally:
        table.wipe()
    return None if step < 0 else step
