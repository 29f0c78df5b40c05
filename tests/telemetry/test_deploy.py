"""The alert rules pass `promtool check rules` and their own unit tests
(`promtool test rules`); the dashboard and the rules name only series a live
server exposes, and the dashboard shows every totpd metric."""

from __future__ import annotations

import json
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from tests.rpc.harness import LiveServer
from tests.telemetry.deploy_files import (
    DASHBOARD,
    EXAMPLE_CONFIG,
    RULE_TESTS,
    RULES,
    binary,
    dashboard_expressions,
    metric_names,
)
from tests.telemetry.scrape import scrape
from totpd.telemetry.metrics import MetricsListener

# The series each kind of metric family exposes, by suffix.
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_alert_rules_pass_promtool_check() -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout


def test_the_alert_rules_fire_as_their_unit_tests_expect() -> None:
    tested = _promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_example_scrape_config_is_valid() -> None:
    checked = _promtool("check", "config", str(EXAMPLE_CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_and_rules_name_only_exposed_series(
    live: LiveServer, listener: MetricsListener
) -> None:
    families = [
        family
        for family in text_string_to_metric_families(scrape(listener.port))
        if family.name.startswith("totpd_")
    ]
    exposed = {f.name + suffix for f in families for suffix in _SUFFIXES[f.type]}
    in_dashboard = metric_names("\n".join(dashboard_expressions()))
    in_rules = metric_names(RULES.read_text())
    assert in_dashboard - exposed == set()
    assert in_rules - exposed == set()
    # Every metric totpd exposes has a panel.
    shown = {f.name for f in families if any(f.name + s in in_dashboard for s in _SUFFIXES[f.type])}
    assert shown == {f.name for f in families}


def test_the_dashboard_is_well_formed() -> None:
    document = json.loads(DASHBOARD.read_text())
    panels = document["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert {v["name"] for v in document["templating"]["list"]} == {"datasource", "job", "instance"}
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs) and all(t["expr"] for t in panel["targets"])
