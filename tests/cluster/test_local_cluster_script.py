"""deploy/local-cluster as a person runs it: it prints the replicas and a target
that a round_robin client can use, and SIGTERM stops everything it started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.local_cluster import SCRIPT

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(180)]


def test_prints_a_usable_target_and_stops_everything_on_sigterm() -> None:
    from totpd_client import TotpdClient

    env = {k: v for k, v in os.environ.items() if not k.startswith("TOTPD_")}
    cluster = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--python", sys.executable],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert cluster.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while not any(line.startswith("target") for line in lines):
        line = cluster.stdout.readline()
        if not line:
            pytest.fail(
                f"local-cluster ended early: {cluster.stderr.read() if cluster.stderr else ''}"
            )
        lines.append(line.strip())
        assert time.monotonic() < deadline
    target = next(line.split()[1] for line in lines if line.startswith("target"))
    replicas = [line for line in lines if line.startswith("replica")]
    assert len(replicas) == 3
    base = Path(re.search(r"\(log (.+)/replica-1\.log\)", replicas[0]).group(1))  # type: ignore[union-attr]
    config = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
    try:
        with TotpdClient(
            target, insecure=True, timeout=10, options=[("grpc.service_config", config)]
        ) as client:
            for i in range(3):
                assert client.enroll(f"script-{i}", "Pixel 8").factor.account_id == f"script-{i}"
    finally:
        cluster.send_signal(signal.SIGTERM)
        out, _ = cluster.communicate(timeout=90)
    assert cluster.returncode == 0
    assert out.strip().endswith("stopped")
    assert not base.exists()
    leftovers = subprocess.run(
        ["pgrep", "-f", str(base)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert not leftovers, f"processes left running: {leftovers}"
