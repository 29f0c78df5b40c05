"""Starts a real totpd from this repository on a free loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from totpd_client import TotpdClient

REPO_ROOT = Path(os.environ.get("TOTPD_REPO_ROOT", Path(__file__).resolve().parents[3]))


def totpd_python() -> str:
    if os.environ.get("TOTPD_PYTHON"):
        return os.environ["TOTPD_PYTHON"]
    venv = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else "python3"


@contextmanager
def running_totpd(*extra_args: str) -> Iterator[str]:
    """`python -m totpd serve --dev` on 127.0.0.1:0 (plus `extra_args`); yields HOST:PORT."""
    with running_totpd_logged(*extra_args) as (target, _):
        yield target


@contextmanager
def running_totpd_logged(
    *extra_args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, Path]]:
    """`running_totpd` with `env` added to the server's environment (TOTPD_* settings);
    yields HOST:PORT and the server's log file (stdout and stderr)."""
    data_dir = Path(tempfile.mkdtemp(prefix="totpd-py-"))
    ready = data_dir / "ready"
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603 (our own server)
        [
            totpd_python(),
            "-m",
            "totpd",
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(data_dir),
            "--ready-file",
            str(ready),
            *extra_args,
        ],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + 60
        target = ""
        while time.monotonic() < deadline:
            if ready.exists() and (text := ready.read_text().strip()) and ":" in text:
                target = text
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        if not target:
            log.flush()
            pytest.fail("totpd did not start:\n" + (data_dir / "server.log").read_text())
        yield target, data_dir / "server.log"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def totpd_target() -> Iterator[str]:
    with running_totpd() as target:
        yield target


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Throwaway PEM files from the repository's `python -m tests.tls_certs DIR`:
    ca.pem, server.pem, server.key, client.pem, client.key, other-ca.pem."""
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(  # noqa: S603 (our own helper)
        [totpd_python(), "-m", "tests.tls_certs", str(directory)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    return directory


@pytest.fixture(scope="session")
def mtls_target(tls_dir: Path) -> Iterator[str]:
    """A second totpd that speaks TLS only and requires a client certificate signed by the CA."""
    with running_totpd(
        "--tls-cert-file",
        str(tls_dir / "server.pem"),
        "--tls-key-file",
        str(tls_dir / "server.key"),
        "--tls-client-ca-file",
        str(tls_dir / "ca.pem"),
    ) as target:
        yield target


# Three wrong codes in a row lock the factor and the account, with no backoff before.
STRICT = {
    "TOTPD_LOCK_AFTER_FAILURES": "3",
    "TOTPD_BACKOFF_AFTER_FAILURES": "3",
    "TOTPD_BACKOFF_BASE_SECONDS": "0",
    "TOTPD_MAX_CONSECUTIVE_FAILURES": "3",
}


@pytest.fixture(scope="session")
def strict_totpd() -> Iterator[tuple[str, Path]]:
    """A totpd with the STRICT attempt limits: HOST:PORT and its log file."""
    with running_totpd_logged(env=STRICT) as served:
        yield served


@pytest.fixture(scope="session")
def strict_client(strict_totpd: tuple[str, Path]) -> Iterator[TotpdClient]:
    with TotpdClient(strict_totpd[0], insecure=True, timeout=10) as c:
        yield c


@pytest.fixture(scope="session")
def client(totpd_target: str) -> Iterator[TotpdClient]:
    with TotpdClient(totpd_target, insecure=True, timeout=10) as c:
        yield c
