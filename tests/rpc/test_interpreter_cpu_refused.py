"""A server whose interpreter CPU the kernel refuses serves all the same, on any
CPU, and says so once (totpd/thread_cpus.py)."""

from __future__ import annotations

import logging
import sys
import threading

import pytest

from tests.cpu_lists import PROCESS_CPUS, cpus_of_task
from tests.rpc.harness import running_server
from totpd.config import Settings
from totpd.v1 import totp_service_pb2 as pb

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="CPU affinity (Linux)")


def test_a_refused_interpreter_cpu_leaves_the_server_serving_on_any_cpu(
    rpc_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from totpd.app import build_service

    beyond_the_machine = max(PROCESS_CPUS) + 4096
    with caplog.at_level(logging.WARNING, logger="totpd"):
        service = build_service(rpc_settings)
        with running_server(rpc_settings, service, interpreter_cpu=beyond_the_machine) as live:
            enrolled = live.stub.Enroll(pb.EnrollRequest(account_id="cpu-refused"), timeout=10)
            assert enrolled.factor.factor_id
            assert live.server.pinned_cpu is None  # the serving line says "" for it
            loops = [t for t in threading.enumerate() if t.name == "totpd-loop"]
            assert loops
            assert all(cpus_of_task(t.native_id or 0) == PROCESS_CPUS for t in loops)
    refusals = [r for r in caplog.records if "not pinned" in r.getMessage()]
    assert len(refusals) == 1
    assert refusals[0].__dict__["cpu"] == beyond_the_machine
