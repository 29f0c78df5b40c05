"""Shared pieces of the core micro-benchmarks: workloads, runners, kernels and cells
(a cell is one figure of the report: implementation, algorithm, batch size, kind of code).

The workloads: benchmarks/README.md, "Core benchmarks: how to run, how to read".
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import random
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import pyotp

from totpd import otp
from totpd.service.types import Algorithm

DIGESTS = {
    Algorithm.SHA1: hashlib.sha1,
    Algorithm.SHA256: hashlib.sha256,
    Algorithm.SHA512: hashlib.sha512,
}
PERIOD = 30
NOW = 1_700_000_000
STEP = NOW // PERIOD
DIGITS = 6
MODULUS: int = 10**DIGITS
WINDOW = 1

FULL_BATCHES = (1, 100, 10_000, 100_000)
SMOKE_BATCHES = (1, 100)
TARGET_BATCH = 10_000
FULL_PASSES = 3
"""Full runs time every cell this many times over, spread across the run."""
PEER_SAMPLE = 10_000
"""The Python peers time at most this many pairs of a batch (every n-th pair)."""
PEERS = ("pyotp", "hmac-loop")


def ref_code(key: bytes, step: int, alg: Algorithm) -> int:
    digest = hmac.digest(key, step.to_bytes(8, "big"), alg.value.lower())
    off = digest[-1] & 15
    return (int.from_bytes(digest[off : off + 4], "big") & 0x7FFFFFFF) % MODULUS


def _wrong_code(key: bytes, alg: Algorithm) -> int:
    """A code that matches none of the window's three steps."""
    near = {ref_code(key, STEP + d, alg) for d in range(-WINDOW, WINDOW + 1)}
    bad = (ref_code(key, STEP, alg) + 1) % MODULUS
    while bad in near:
        bad = (bad + 1) % MODULUS
    return bad


@dataclass
class Workload:
    alg: Algorithm
    keys: list[bytes]
    codes: list[int]
    table: otp.KeyTable
    indices: array[int]
    code_array: array[int]


# Valid and invalid workloads of one size share their keys (same seed), so the two
# differ only in the codes. Small cache: cells come ordered by algorithm and batch.
@functools.lru_cache(maxsize=4)
def make_workload(alg: Algorithm, batch: int, valid: bool, seed: int = 1) -> Workload:
    rng = random.Random(seed)
    keys = [rng.randbytes(alg.secret_size) for _ in range(batch)]
    if valid:
        codes = [ref_code(k, STEP, alg) for k in keys]
    else:
        codes = [_wrong_code(k, alg) for k in keys]
    table = otp.KeyTable.of(keys, [alg] * batch, [DIGITS] * batch, [STEP] * batch)
    return Workload(alg, keys, codes, table, array("I", range(batch)), array("I", codes))


def run_core(w: Workload, path: str) -> array[int]:
    return otp.verify_batch(w.table, w.indices, w.code_array, WINDOW, threads=1, path=path)


def sample_stride(batch: int, cap: int = PEER_SAMPLE) -> int:
    """Every how many pairs the Python peers time: 1 up to ``cap`` pairs."""
    return -(-batch // cap)


@dataclass
class PeerWork:
    """The pairs a Python peer times: a strided sample of the workload."""

    totps: list[pyotp.TOTP]
    keys: list[bytes]
    codes: list[int]
    alg: Algorithm


def make_peer_work(w: Workload, stride: int) -> PeerWork:
    keys = w.keys[::stride]
    totps = [
        pyotp.TOTP(base64.b32encode(k).decode(), digits=DIGITS, digest=DIGESTS[w.alg]) for k in keys
    ]
    return PeerWork(totps, keys, w.codes[::stride], w.alg)


def run_pyotp(p: PeerWork) -> int:
    ok = 0
    for t, c in zip(p.totps, p.codes, strict=True):
        ok += t.verify(str(c).zfill(DIGITS), for_time=NOW, valid_window=WINDOW)
    return ok


def run_hmac_loop(p: PeerWork) -> int:
    """Plain Python: hmac.digest per candidate step, compare_digest, no early exit."""
    name = p.alg.value.lower()
    ok = 0
    for key, code in zip(p.keys, p.codes, strict=True):
        want = str(code).zfill(DIGITS).encode()
        hit = False
        for step in range(STEP - WINDOW, STEP + WINDOW + 1):
            d = hmac.digest(key, step.to_bytes(8, "big"), name)
            off = d[-1] & 15
            v = (int.from_bytes(d[off : off + 4], "big") & 0x7FFFFFFF) % MODULUS
            hit |= hmac.compare_digest(str(v).zfill(DIGITS).encode(), want)
        ok += hit
    return ok


PEER_RUNNERS: dict[str, Callable[[PeerWork], int]] = {
    "pyotp": run_pyotp,
    "hmac-loop": run_hmac_loop,
}


# --- Which kernel a forced CPU path runs ------------------------------------------
# The C core has no query for this, so it is derived from its dispatch code
# (native/dispatch.c: simd_impl and the lane kernels' scalar tails). Keep in step
# with it.
SCALAR_TAIL_X16 = 4
"""SHA-1 on avx512x16: groups of at most this many pairs go scalar."""
SCALAR_TAIL_X8_512 = 1
"""SHA-512 on avx512x16: groups of at most this many pairs go scalar."""

KERNEL_NAMES = {
    "portable": "portable C, one stream",
    "sha-ni": "SHA-NI, one stream",
    "avx2-x8": "AVX2, 8 lanes",
    "avx512vl-x8": "AVX-512VL, 8 lanes",
    "avx512-x16": "AVX-512 zmm, 16 lanes",
    "avx512-x8": "AVX-512 zmm, 8 lanes",
}


def kernel_for(alg: Algorithm, path: str, batch: int, has_shani: bool) -> str:
    """The kernel that does the bulk of a ``batch``-pair call forced onto ``path``."""
    if alg is Algorithm.SHA512:
        # SHA-NI and AVX2 have no SHA-512 code: only the zmm path differs.
        wide = path == "avx512x16" and batch > SCALAR_TAIL_X8_512
        return "avx512-x8" if wide else "portable"
    scalar = "sha-ni" if has_shani and path != "portable" else "portable"
    if alg is Algorithm.SHA256:
        return scalar  # every SIMD path runs scalar SHA-256, with SHA-NI when present
    if path == "avx2":
        return "avx2-x8"
    if path == "avx512":
        return "avx512vl-x8"
    if path == "avx512x16" and batch > SCALAR_TAIL_X16:
        return "avx512-x16"
    return scalar


def has_shani() -> bool:
    """Whether the dispatcher saw SHA-NI (its shani path is then supported)."""
    return "shani" in otp.cpu_paths()


def kernel_paths(alg: Algorithm, batch: int) -> dict[str, list[str]]:
    """Kernel -> the supported paths that run it, in the core's path order."""
    out: dict[str, list[str]] = {}
    shani = has_shani()
    for path in otp.cpu_paths():
        out.setdefault(kernel_for(alg, path, batch, shani), []).append(path)
    return out


def auto_kernel(alg: Algorithm, batch: int) -> str:
    return kernel_for(alg, otp.cpu_path(), batch, has_shani())


# --- Cells ------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One measured figure. ``impl`` is a totpd kernel, "pyotp" or "hmac-loop"."""

    alg: str
    impl: str
    batch: int
    codes: str  # "valid", "invalid", or "valid-again" (A/A control: valid, re-timed)
    path: str = "python"  # the forced CPU path timed (the kernel's first path)
    paths: tuple[str, ...] = ()  # every path that runs this kernel at this batch
    role: str = "main"  # "main", "control" (A/A), "alias" (a merged path, timed apart)
    stride: int = 1  # the Python peers time every stride-th pair
    run: int = 1  # the pass; a figure is the median of its rounds over every pass

    @property
    def valid(self) -> bool:
        return self.codes != "invalid"

    @property
    def is_peer(self) -> bool:
        return self.impl in PEERS

    @property
    def id(self) -> str:
        tag = self.impl if self.role != "alias" else f"{self.impl}@{self.path}"
        return f"p{self.run}-{self.alg}-{tag}-{self.batch}-{self.codes}"

    def info(self) -> dict[str, Any]:
        d = asdict(self)
        d["paths"] = list(self.paths)
        return d


def _kernel_cells(alg: Algorithm, batch: int, alias: bool) -> list[Cell]:
    """Each kernel once; valid and invalid back to back, and at the target batch a
    valid re-run after them (A/A control). ``alias``: also every merged path."""
    cells = []
    for kern, paths in kernel_paths(alg, batch).items():
        kinds = ["valid", "invalid"] + (["valid-again"] if batch == TARGET_BATCH else [])
        for kind in kinds:
            role = "control" if kind == "valid-again" else "main"
            cells.append(Cell(alg.value, kern, batch, kind, paths[0], tuple(paths), role))
        if alias:
            for path in paths[1:]:
                cells.append(Cell(alg.value, kern, batch, "valid", path, tuple(paths), "alias"))
    return cells


def _peer_cells(alg: Algorithm, batch: int) -> list[Cell]:
    stride = sample_stride(batch)
    return [
        Cell(alg.value, peer, batch, kind, stride=stride)
        for peer in PEERS
        for kind in ("valid", "invalid")
    ]


def cells(batches: tuple[int, ...], alias_batch: int, passes: int) -> list[Cell]:
    """Every figure, ``passes`` times over. Within a pass, the kernels and the peers
    of one algorithm and batch run together, so their ratios come from close in time."""
    one = [
        c
        for alg in Algorithm
        for batch in batches
        for c in _kernel_cells(alg, batch, batch == alias_batch) + _peer_cells(alg, batch)
    ]
    return [replace(c, run=run) for run in range(1, passes + 1) for c in one]
