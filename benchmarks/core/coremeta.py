"""What a core benchmark run measured on: commit, CPU, dispatcher, versions, method.

``conftest.py`` stores this in pytest-benchmark's JSON (key ``totpd_core``), so a
report redrawn later still describes the run that produced the figures.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from corebench import FULL_BATCHES, FULL_PASSES, PEER_SAMPLE, kernel_for

from totpd import otp
from totpd.service.types import Algorithm

ROOT = Path(__file__).resolve().parents[2]
# Sources whose edits change what the core benchmark measures.
CORE_SOURCES = ("native", "server/totpd/otp", "benchmarks/core")
CPU_FLAGS = ("sha_ni", "sse4_1", "ssse3", "avx2", "avx512f", "avx512vl", "avx512bw")
# Read when pytest loads the conftest, before any benchmark adds its own load.
LOADAVG_AT_START = os.getloadavg()
STARTED = datetime.datetime.now(datetime.UTC)


def _git(*args: str) -> str:
    try:
        res = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return ""
    return res.stdout.rstrip() if res.returncode == 0 else ""


def git_state() -> dict[str, Any]:
    return dict(
        commit=_git("rev-parse", "HEAD") or "unknown",
        dirty=bool(_git("status", "--porcelain")),
        # Uncommitted edits to what this benchmark measures (or to the benchmark).
        modified_core_sources=[
            line[3:] for line in _git("status", "--porcelain", "--", *CORE_SOURCES).splitlines()
        ],
    )


def cpu_info() -> dict[str, Any]:
    model, flags = "unknown", set[str]()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return dict(
        model=model,
        flags={f: f in flags for f in CPU_FLAGS},
        cpu_count=os.cpu_count(),
        affinity=len(os.sched_getaffinity(0)),
        loadavg_at_start=list(LOADAVG_AT_START),
    )


def dispatcher() -> dict[str, Any]:
    """What the C core's dispatcher saw: its per-path support checks (CPUID at load)."""
    paths = otp.cpu_paths()
    shani = "shani" in paths
    kernels = {
        alg.value: {
            str(batch): {p: kernel_for(alg, p, batch, shani) for p in paths}
            for batch in FULL_BATCHES
        }
        for alg in Algorithm
    }
    return dict(
        features=dict(
            sha_ni="shani" in paths,
            avx2="avx2" in paths,
            avx512f_vl="avx512" in paths,
            avx512bw="avx512x16" in paths,
        ),
        paths=paths,
        default_path=otp.cpu_path(),
        TOTPD_CPU_PATH=os.environ.get("TOTPD_CPU_PATH"),
        kernel_by_path=kernels,
    )


def versions() -> dict[str, str]:
    out = dict(python=sys.version.split()[0], implementation=platform.python_implementation())
    for dist in ("pyotp", "pytest-benchmark", "totpd"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def collect(sizes: str, timer: str) -> dict[str, Any]:
    """Everything needed to tell this run from another: stored in the raw JSON."""
    return dict(
        date=STARTED.isoformat(timespec="seconds"),
        duration_s=round((datetime.datetime.now(datetime.UTC) - STARTED).total_seconds()),
        git=git_state(),
        cpu=cpu_info(),
        dispatcher=dispatcher(),
        versions=versions(),
        method=dict(
            timer=f"pytest-benchmark pedantic, timer {timer}, GC on",
            statistic="median over every round of every pass of the time of one call;"
            " rate = timed_pairs / median",
            sizes=sizes,
            passes=FULL_PASSES if sizes == "full" else 1,
            threads=1,
            window=1,
            digits=6,
            invalid="a code wrong for all three steps of the window",
            peer_sample=f"pyotp and hmac-loop time every n-th pair, at most {PEER_SAMPLE}",
            ratios="vs_pyotp = rate / pyotp rate, same algorithm, batch and kind of code",
        ),
    )
