"""`python -m totpd` as a real process, for the CLI tests that start one: a dev
server on a free loopback port (ready-file contract) and one-shot commands."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2

GRACE_SECONDS = 2.0
START_TIMEOUT = 30.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def totpd(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "totpd", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def log_records(stderr: str) -> list[dict[str, Any]]:
    """A process's JSON log lines (the default format), in order; other lines skipped."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def wait_for_file(path: Path, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text(encoding="ascii")
        if process.poll() is not None:
            pytest.fail(f"totpd exited with {process.returncode}: {process.communicate()[1]}")
        time.sleep(0.05)
    pytest.fail("totpd did not write its ready file in time")


@contextmanager
def dev_server(
    tmp_path: Path, env: dict[str, str], *extra_args: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A `totpd serve --dev` process on a free loopback port; yields it and its address."""
    ready = tmp_path / "ready"
    process = totpd(
        "serve",
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--ready-file",
        str(ready),
        "--data-dir",
        str(tmp_path / "data"),
        "--shutdown-grace-seconds",
        str(GRACE_SECONDS),
        # No drain window unless a test asks for one (extra_args win).
        "--drain-seconds",
        "0",
        *extra_args,
        env=env,
    )
    try:
        yield process, wait_for_file(ready, process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def run_totpd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "totpd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
