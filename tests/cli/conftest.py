"""The CLI tests reuse the gRPC fixtures: a real server on a free loopback port and
the guard against secrets in logs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import totpd
from tests.rpc.conftest import (  # noqa: F401  (fixtures)
    live,
    no_secrets_in_logs,
    rpc_policy,
    rpc_settings,
    secrets_seen,
    tls_files,
)


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for `python -m totpd`: the package importable, no stray TOTPD_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOTPD_")}
    package_root = str(Path(totpd.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env
