"""Many ``(key index, code)`` pairs in one C call (:func:`verify_batch`), split across the
``totpd-core`` thread pool above :data:`THREAD_SPLIT` pairs (the call releases the GIL)."""

from __future__ import annotations

import os
import threading
from array import array
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Final

from totpd import thread_cpus
from totpd.otp import _core
from totpd.otp._core import NativeError
from totpd.otp.keys import KeyTable
from totpd.otp.paths import path_code as _path_code

THREAD_SPLIT: Final[int] = 4096
"""Batches with more pairs than this are split across threads."""

# os.cpu_count() reads sysfs on every call: read it once, at import.
_CPUS: Final[int] = os.cpu_count() or 1

# A code outside uint32 can never match; map it to a value no HOTP reaches.
_NO_CODE: Final[int] = _core.U32_MAX


def _index_array(values: array[int] | Sequence[int]) -> array[int]:
    if isinstance(values, array) and values.typecode == "I" and values.itemsize == 4:
        return values
    try:
        return array("I", values)
    except OverflowError:
        raise NativeError(int(_core.lib.TOTPD_ERR_KEY_INDEX), "negative or huge index") from None


def _codes_array(codes: array[int] | Sequence[int]) -> array[int]:
    if isinstance(codes, array) and codes.typecode == "I" and codes.itemsize == 4:
        return codes
    return array("I", (c if 0 <= c <= _core.U32_MAX else _NO_CODE for c in codes))


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            # Its threads run C on every CPU, whichever thread started them.
            _executor = ThreadPoolExecutor(
                max_workers=_CPUS,
                thread_name_prefix="totpd-core",
                initializer=thread_cpus.use_process_cpus,
            )
        return _executor


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def _check_all(futures: list[Future[int]]) -> None:
    """Wait for every chunk, then raise the first error (a C error code or an exception)."""
    wait(futures)
    for future in futures:
        _core.check(future.result())


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
    _core.check_window(window)
    path_code = _path_code(path)
    n_pairs = len(idx)
    out = array("q", bytes(8 * n_pairs))
    if n_pairs == 0:
        return out

    # c_view (the struct and the buffers it points into) lives until this returns.
    c_view = keys.c_table()
    table = c_view[0]
    n_keys = int(table.n_keys)
    ffi = _core.ffi
    scratch = ffi.new("uint64_t[]", max(1, n_keys) * _core.PAD_SLOT_WORDS)
    idx_c = ffi.from_buffer("uint32_t[]", idx)
    cod_c = ffi.from_buffer("uint32_t[]", cod)
    pairs = ffi.new("totpd_pairs *", (idx_c, cod_c, n_pairs))
    out_c = ffi.from_buffer("int64_t[]", out)
    n_threads = threads if threads is not None else _CPUS

    if n_threads <= 1 or n_pairs <= THREAD_SPLIT:
        rc = _core.lib.totpd_verify_batch(table, pairs, window, path_code, scratch, out_c)
        _core.check(int(rc))
        return out

    _verify_split(table, pairs, n_threads, window, path_code, scratch, out_c)
    return out


def _verify_split(
    table: Any, pairs: Any, n_threads: int, window: int, path_code: int, scratch: Any, out_c: Any
) -> None:
    """One batch across the pool: pad states by key range, then verdicts by pair range.
    ``scratch`` is wiped once every worker is done, whatever raised."""
    n_keys = int(table.n_keys)
    lib = _core.lib
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
        lib.totpd_wipe(scratch, n_keys * _core.PAD_SLOT_WORDS * 8)
