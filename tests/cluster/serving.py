"""The totpd processes the cluster tests run: a command run to completion, and
`totpd serve` on a free loopback port for the length of a block."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def run_totpd(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m totpd ARGS` to completion, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "totpd", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@contextmanager
def serving(work: Path, env: dict[str, str]) -> Iterator[str]:
    """`totpd serve` on 127.0.0.1:0 (log: work/serve.log); yields its address once
    it is ready, and stops it after the block."""
    ready = work / "ready"
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "totpd", "serve", "--listen", "127.0.0.1:0", "--ready-file", ready],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert server.poll() is None, (work / "serve.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "totpd serve did not start"
            time.sleep(0.05)
        yield ready.read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
