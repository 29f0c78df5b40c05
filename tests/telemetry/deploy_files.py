"""The deploy/ files the telemetry tests check: paths, Prometheus binaries, and
the metric names and expressions the dashboard and alert rules use."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "totpd-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "totpd-alerts.test.yml"
EXAMPLE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus-scrape.example.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "totpd-dashboard.json"
_METRIC = re.compile(r"\btotpd_[a-z0-9_]+")
# What the dashboard's variables stand for when its expressions run outside Grafana.
_VARIABLES = {"$__rate_interval": "1m", "$job": "totpd", "$instance": ".*"}


def binary(name: str) -> str:
    """The path of a Prometheus binary: skipped locally when missing, a failure in CI."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (tests/ensure-test-packages.sh prometheus)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def dashboard_expressions() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in document["panels"] for target in panel.get("targets", [])]


def runnable(expression: str) -> str:
    """A dashboard expression with Grafana's variables filled in."""
    for variable, value in _VARIABLES.items():
        expression = expression.replace(variable, value)
    return expression


def metric_names(text: str) -> set[str]:
    return set(_METRIC.findall(text))
