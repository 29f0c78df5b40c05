"""Fixtures for the gRPC layer: a real server on a free loopback port, running
the real service (SQLite in a temporary directory, a fresh keyring, the C core),
and a guard that fails a test whose logs or output quote a secret, a code or
an otpauth URI it registered."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.rpc.harness import LiveServer, LogCapture, running_server
from tests.tls_certs import TlsFiles, write_tls_files
from totpd.config import Settings
from totpd.crypto import Keyring, write_new_keyring
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.store import FactorStore


class Secrets:
    """Strings a test handled that must never appear in logs or stderr."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, *values: str) -> None:
        self.values.update(v for v in values if v)


@pytest.fixture
def secrets_seen() -> Secrets:
    return Secrets()


@pytest.fixture(autouse=True)
def no_secrets_in_logs(
    secrets_seen: Secrets, capfd: pytest.CaptureFixture[str]
) -> Iterator[LogCapture]:
    """Capture every log record (with its extra fields) and the process's fds."""
    capture = LogCapture()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(previous_level)
    _out, err = capfd.readouterr()
    logged = "\n".join(capture.lines) + "\n" + err
    leaked = sorted(value for value in secrets_seen.values if value in logged)
    assert not leaked, f"{len(leaked)} secret value(s) appeared in logs or stderr"


def make_settings(tmp_path: Path, policy: Policy | None = None) -> Settings:
    data_dir = tmp_path / "data"
    settings = Settings(
        listen_address="127.0.0.1:0",
        data_dir=data_dir,
        key_file=data_dir / "totpd.key",
        max_workers=4,
        max_message_bytes=64 * 1024,
        shutdown_grace_seconds=1.0,
    )
    write_new_keyring(settings.key_file)
    return replace(settings, policy=policy) if policy else settings


@pytest.fixture
def rpc_policy() -> Policy:
    """Backoff off so a test can reach the lock without waiting; override per module."""
    return Policy(backoff_base_seconds=0)


@pytest.fixture
def rpc_settings(tmp_path: Path, rpc_policy: Policy) -> Settings:
    return make_settings(tmp_path, rpc_policy)


@pytest.fixture
def live(rpc_settings: Settings) -> Iterator[LiveServer]:
    from totpd.app import build_service

    with running_server(rpc_settings, build_service(rpc_settings)) as server:
        yield server


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA, server and client certificates (and an unrelated CA), as PEM files."""
    return write_tls_files(tmp_path_factory.mktemp("tls"))


def mfa_service(engine: Engine, settings: Settings, clock: Callable[[], float]) -> MfaService:
    """A real service on `engine` with the settings' keyring, policy and coalescing
    (on by default: Verify is then served as `totpd serve` serves it, on the loop)."""
    keyring = Keyring.load(settings.key_file)
    return MfaService(
        FactorStore(engine),
        keyring,
        settings.policy,
        clock,
        settings.tenant_policies,
        coalesce_verify=settings.coalesces_verify,
        verify_rounds_in_flight=settings.verify_rounds_in_flight,
    )


@contextmanager
def sqlite_file_gone(database: Path) -> Iterator[None]:
    """The SQLite file (and its -wal and -shm) moved aside and a directory in its place,
    which SQLite cannot open, as root too (as when its volume is gone); then put back."""
    aside = database.with_name(database.name + ".aside")
    aside.mkdir()
    moved = [
        path
        for path in (database.with_name(database.name + end) for end in ("", "-wal", "-shm"))
        if path.exists()
    ]
    for path in moved:
        shutil.move(path, aside / path.name)
    database.mkdir()
    try:
        yield
    finally:
        database.rmdir()
        for path in moved:
            shutil.move(aside / path.name, path)
        aside.rmdir()
