"""A real Prometheus (Debian's package) scrapes a live totpd: a PromQL query over
its HTTP API counts the calls made, the alert rules load and evaluate without
error, and every dashboard expression runs."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_loopback_port
from tests.rpc.harness import LiveServer
from tests.telemetry.deploy_files import RULES, binary, dashboard_expressions, runnable
from totpd.telemetry.metrics import MetricsListener
from totpd.v1 import totp_service_pb2 as pb

pytestmark = pytest.mark.slow
_WAIT_SECONDS = 60.0


class Prometheus:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"http://127.0.0.1:{self.port}{path}{query}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def query(self, expression: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expression)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(self, what: str, check: Any) -> Any:
        deadline = time.monotonic() + _WAIT_SECONDS
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited: {self.process.communicate()[1][-2000:]}")
            try:
                found = check()
            except OSError:
                found = None
            if found:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus: {what} within {_WAIT_SECONDS} s")
            time.sleep(0.25)


@pytest.fixture
def prometheus(listener: MetricsListener, tmp_path: Path) -> Iterator[Prometheus]:
    """Scrapes the listener every 250 ms, with totpd's alert rules loaded."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "global": {"scrape_interval": "250ms", "evaluation_interval": "250ms"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "totpd",
                        "static_configs": [{"targets": [f"127.0.0.1:{listener.port}"]}],
                    }
                ],
            }
        )
    )
    port = free_loopback_port()
    process = subprocess.Popen(
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = Prometheus(process, port)
    try:
        server.wait_for("ready", lambda: server.get("/api/v1/status/runtimeinfo"))
        yield server
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_prometheus_scrapes_totpd_and_counts_the_calls(
    live: LiveServer, prometheus: Prometheus
) -> None:
    calls = 5
    for _ in range(calls):
        live.stub.ListFactors(pb.ListFactorsRequest(account_id="nobody"), timeout=10)
    expression = 'sum(totpd_rpc_requests_total{job="totpd", method="ListFactors", code="OK"})'

    def counted() -> bool:
        result = prometheus.query(expression)
        return bool(result) and float(result[0]["value"][1]) >= calls

    prometheus.wait_for(f"{expression} >= {calls}", counted)
    (up,) = prometheus.query('up{job="totpd"}')
    assert up["value"][1] == "1"

    # Every alert rule loaded and was evaluated without error against real series.
    def evaluated() -> list[dict[str, Any]]:
        groups = prometheus.get("/api/v1/rules")["data"]["groups"]
        rules: list[dict[str, Any]] = [r for g in groups for r in g["rules"]]
        # A rule never evaluated reports the zero time, 0001-01-01T00:00:00Z.
        done = rules and all(not r.get("lastEvaluation", "0").startswith("0") for r in rules)
        return rules if done else []

    rules = prometheus.wait_for("every rule evaluated", evaluated)
    assert len(rules) == 9
    assert [r["name"] for r in rules if r["health"] != "ok"] == []
    assert [r["name"] for r in rules if r["state"] != "inactive"] == []

    # Every dashboard expression is PromQL this Prometheus runs.
    for expression in dashboard_expressions():
        prometheus.query(runnable(expression))
