"""Fixtures for the metrics and tracing tests: the gRPC layer's (a real server on
SQLite, the no-secrets-in-logs guard) and a metrics listener on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rpc.conftest import (  # noqa: F401 (fixtures)
    live,
    no_secrets_in_logs,
    rpc_policy,
    rpc_settings,
    secrets_seen,
)
from totpd.telemetry.metrics import MULTIPROC_ENV, MetricsListener, start_metrics_listener


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[MetricsListener]:
    """This process's registry on 127.0.0.1 and a free port."""
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    started = start_metrics_listener("127.0.0.1:0")
    try:
        yield started
    finally:
        started.close()
