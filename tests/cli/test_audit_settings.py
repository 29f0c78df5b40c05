"""The audit trail's settings: [policy] audit_enabled and audit_retention_days."""

from __future__ import annotations

from pathlib import Path

import pytest

from totpd.config import ConfigError, load_settings


def test_the_audit_trail_is_on_for_a_year_by_default() -> None:
    policy = load_settings(environ={}).policy
    assert policy.audit_enabled is True and policy.audit_retention_days == 365


def test_audit_settings_from_the_file_and_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "totpd.toml"
    config.write_text("[policy]\naudit_enabled = false\naudit_retention_days = 30\n")
    policy = load_settings(config, environ={}).policy
    assert policy.audit_enabled is False and policy.audit_retention_days == 30
    policy = load_settings(environ={"TOTPD_AUDIT_ENABLED": "false"}).policy
    assert policy.audit_enabled is False


@pytest.mark.parametrize("days", ["0", "36501"])
def test_a_retention_out_of_bounds_is_refused(days: str) -> None:
    with pytest.raises(ConfigError, match="audit_retention_days must be between 1 and 36500"):
        load_settings(environ={"TOTPD_AUDIT_RETENTION_DAYS": days})
