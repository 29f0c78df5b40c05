"""Build the C core with ASan+UBSan into a standalone test program and run it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NATIVE = Path(__file__).resolve().parents[2] / "native"
SOURCES = [
    "totpd_core.c",
    "sha_portable.c",
    "sha_shani.c",
    "sha1_avx2.c",
    "sha_avx512.c",
    "tests/test_core.c",
]
FLAGS = [
    "-std=c11",
    "-O1",
    "-g",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-DTOTPD_SIMD=1",
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=all",
]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_core_under_asan_ubsan(tmp_path: Path) -> None:
    exe = tmp_path / "test_core"
    build = subprocess.run(
        ["gcc", *FLAGS, f"-I{NATIVE}", *[str(NATIVE / s) for s in SOURCES], "-o", str(exe)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run(
        [str(exe)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
            "UBSAN_OPTIONS": "print_stacktrace=1",
        },
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "failures: 0" in run.stdout
    assert "paths tested: 0" not in run.stdout
