"""The listener's wiring (`app.observed`): the `metrics_address` setting, off,
left to a supervisor, a port already taken; and the setting's parsing."""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.rpc.harness import LogCapture
from tests.telemetry.scrape import scrape
from totpd.app import observed
from totpd.config import ConfigError, Settings, load_settings
from totpd.telemetry import tracing
from totpd.telemetry.metrics import LISTENER_ENV, MULTIPROC_ENV


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in (LISTENER_ENV, MULTIPROC_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return Settings(data_dir=tmp_path, metrics_address="127.0.0.1:0")


def _log_records(capture: LogCapture, message: str) -> list[dict[str, object]]:
    records = [json.loads(line) for line in capture.lines]
    return [r for r in records if r["msg"] == message]


def test_the_listener_serves_while_the_server_runs_and_closes_after(
    settings: Settings, no_secrets_in_logs: LogCapture
) -> None:
    with observed(settings) as listener:
        assert listener is not None and listener.port > 0
        assert "totpd_build_info" in scrape(listener.port)
    (line,) = _log_records(no_secrets_in_logs, "metrics listening")
    assert line["address"] == f"127.0.0.1:{listener.port}"
    with pytest.raises(OSError):
        scrape(listener.port)
    assert not tracing.enabled()


def test_an_empty_address_starts_no_listener(settings: Settings) -> None:
    with observed(replace(settings, metrics_address="")) as listener:
        assert listener is None


def test_a_worker_under_a_supervisor_starts_no_listener(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LISTENER_ENV, "supervisor")
    with observed(settings) as listener:
        assert listener is None


def test_a_taken_port_is_a_warning_not_a_failed_start(
    settings: Settings, no_secrets_in_logs: LogCapture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with observed(replace(settings, metrics_address=address)) as listener:
            assert listener is None
    (line,) = _log_records(no_secrets_in_logs, "metrics listener not started")
    assert line["level"] == "WARNING" and line["address"] == address


def test_the_setting_defaults_to_loopback_and_empty_turns_it_off() -> None:
    assert load_settings(environ={}).metrics_address == "127.0.0.1:9464"
    assert load_settings(environ={"TOTPD_METRICS_ADDRESS": ""}).metrics_address == ""
    assert load_settings(overrides={"metrics_address": "[::1]:0"}, environ={}).metrics_address
    with pytest.raises(ConfigError, match="metrics_address must be HOST:PORT"):
        load_settings(environ={"TOTPD_METRICS_ADDRESS": "9464"})
    assert load_settings(environ={}).otlp_endpoint == ""


def test_tracing_is_wanted_only_when_an_endpoint_is_configured() -> None:
    assert not tracing.wanted("", {})
    assert tracing.wanted("http://127.0.0.1:4317", {})
    assert tracing.wanted("", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert tracing.wanted("", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"})
    assert not tracing.wanted("http://127.0.0.1:4317", {"OTEL_SDK_DISABLED": "true"})


def test_tracing_configured_without_its_packages_is_a_configuration_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if `totpd[tracing]` were not installed: the SDK's import fails."""
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    configured = replace(settings, otlp_endpoint="http://127.0.0.1:4317")
    with pytest.raises(ConfigError, match=r"pip install 'totpd\[tracing\]'"):
        with observed(configured):
            pass
    assert not tracing.enabled()
