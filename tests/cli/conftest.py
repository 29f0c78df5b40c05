"""The CLI tests reuse the gRPC fixtures: a real server on a free loopback port and
the guard against secrets in logs. `totpctl` runs the command in-process against it."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import totpd
from tests.rpc.conftest import (  # noqa: F401  (fixtures)
    Secrets,
    live,
    no_secrets_in_logs,
    rpc_policy,
    rpc_settings,
    secrets_seen,
    tls_files,
)
from tests.rpc.harness import LiveServer
from totpd_client.cli.totpctl import main


@dataclass
class Run:
    exit_code: int
    out: str
    err: str


Totpctl = Callable[..., Run]


@pytest.fixture
def totpctl_at(capfd: pytest.CaptureFixture[str], secrets_seen: Secrets) -> Totpctl:  # noqa: F811
    """`totpctl_at(SERVER, *ARGS)`: one in-process run of `totpctl --server SERVER ARGS`."""

    def run(server: str, *args: str) -> Run:
        capfd.readouterr()
        exit_code = main(["--server", server, *args])
        out, err = capfd.readouterr()
        # Only enroll may print secret material, and only on stdout.
        leaked = [value for value in secrets_seen.values if value in err]
        assert not leaked
        return Run(exit_code, out, err)

    return run


@pytest.fixture
def totpctl(live: LiveServer, totpctl_at: Totpctl) -> Totpctl:  # noqa: F811
    """`totpctl(*ARGS)` against the `live` plaintext server."""
    return lambda *args: totpctl_at(live.address, *args)


def field(out: str, name: str) -> str:
    """The value of a `name:   value` line of totpctl's output."""
    match = re.search(rf"^{name}:\s+(\S+)$", out, re.MULTILINE)
    assert match, f"no {name!r} line in output"
    return match.group(1)


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for `python -m totpd`: the package importable, no stray TOTPD_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOTPD_")}
    package_root = str(Path(totpd.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env
