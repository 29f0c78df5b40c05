"""The account limits' settings: [policy] keys like every other, with their bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from totpd.config import ConfigError, load_settings
from totpd.service.policy import Policy


def test_the_defaults_meet_the_yearly_bound() -> None:
    policy = Policy()
    assert (policy.failure_budget, policy.failure_budget_window_seconds) == (27, 30 * 86400)
    assert policy.yearly_failure_bound() == pytest.approx(355.5)
    assert policy.yearly_failure_bound() * 3e-6 <= 1.1e-3
    assert policy.max_consecutive_failures == 100
    assert (policy.caller_failures_per_second, policy.caller_failure_burst) == (10, 10_000)


def test_every_source_sets_them(tmp_path: Path) -> None:
    config = tmp_path / "totpd.toml"
    config.write_text(
        "[policy]\nfailure_budget = 12\nfailure_budget_window_seconds = 86400\n"
        "max_consecutive_failures = 50\n",
        encoding="utf-8",
    )
    settings = load_settings(
        config,
        overrides={"caller_failure_burst": "20000"},
        environ={"TOTPD_CALLER_FAILURES_PER_SECOND": "0"},
    )
    policy = settings.policy
    assert (policy.failure_budget, policy.failure_budget_window_seconds) == (12, 86400)
    assert policy.max_consecutive_failures == 50
    assert (policy.caller_failures_per_second, policy.caller_failure_burst) == (0, 20_000)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"TOTPD_MAX_CONSECUTIVE_FAILURES": "101"},
            "max_consecutive_failures must be between 1 and 100",
        ),
        (
            {"TOTPD_MAX_CONSECUTIVE_FAILURES": "0"},
            "max_consecutive_failures must be between 1 and 100",
        ),
        ({"TOTPD_FAILURE_BUDGET": "0"}, "failure_budget must be between"),
        ({"TOTPD_FAILURE_BUDGET": "4"}, "failure_budget must be at least max_factors_per_account"),
        ({"TOTPD_FAILURE_BUDGET_WINDOW_SECONDS": "59"}, "failure_budget_window_seconds must be"),
        ({"TOTPD_CALLER_FAILURES_PER_SECOND": "-1"}, "caller_failures_per_second must be"),
        (
            {"TOTPD_CALLER_FAILURE_BURST": "9999"},
            "caller_failure_burst must be at least max_batch_items",
        ),
        ({"TOTPD_CALLER_FAILURE_BURST": "x"}, "expected an integer"),
    ],
)
def test_out_of_bounds_values_fail_with_a_clear_message(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)
