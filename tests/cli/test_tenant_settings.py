"""Per-tenant policy: [tenants.NAME.policy] overrides the global policy for one tenant,
checked like it; unknown, server-wide or out-of-bounds keys are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from totpd.config import ConfigError, Settings, load_settings

SHOP = """
[policy]
window = 1
lock_after_failures = 8

[tenants.shop.policy]
window = 0
lock_after_failures = 5
max_factors_per_account = 3
max_batch_items = 1000
"""


def settings_of(tmp_path: Path, text: str, **overrides: object) -> Settings:
    config = tmp_path / "totpd.toml"
    config.write_text(text, encoding="utf-8")
    return load_settings(config, overrides=overrides, environ={})


def test_a_tenant_overrides_some_keys_and_falls_back_to_the_global_ones(tmp_path: Path) -> None:
    settings = settings_of(tmp_path, SHOP, failure_budget="40")
    shop = settings.tenant_policies["shop"]
    assert (shop.window, shop.lock_after_failures) == (0, 5)
    assert (shop.max_factors_per_account, shop.max_batch_items) == (3, 1000)
    # Not overridden: the global value, whichever source set it.
    assert shop.failure_budget == 40
    assert shop.enrollment_ttl_seconds == settings.policy.enrollment_ttl_seconds
    assert settings.policy.window == 1
    assert settings.largest_batch_items == 10_000


def test_a_tenant_may_send_larger_batches_within_the_admission_limit(tmp_path: Path) -> None:
    text = "[tenants.bulk.policy]\nmax_batch_items = 20000\n"
    settings = settings_of(tmp_path, text, caller_failure_burst="20000")
    assert settings.largest_batch_items == 20_000
    with pytest.raises(ConfigError, match="max_items_in_flight"):
        settings_of(tmp_path, text, caller_failure_burst="20000", max_items_in_flight="15000")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tenants.shop.policy]\nwindw = 0\n", "unknown setting 'tenants.shop.policy.windw'"),
        (
            "[tenants.shop.policy]\nrequest_id_retention_seconds = 600\n",
            "request_id_retention_seconds is server-wide",
        ),
        (
            "[tenants.shop.policy]\ncaller_failure_burst = 600\n",
            "caller_failure_burst is server-wide",
        ),
        ("[tenants.shop.policy]\nwindow = 2\n", "tenants.shop.policy: window must be 0 or 1"),
        (
            "[tenants.shop.policy]\nlock_after_failures = 0\n",
            "lock_after_failures must be between 1 and 1000",
        ),
        ("[tenants.shop.policy]\nwindow = 'x'\n", "tenants.shop.policy: window"),
        ("[tenants.shop]\nwindow = 0\n", r"holds only a \[tenants.shop.policy\] table"),
        ('[tenants."a b".policy]\nwindow = 0\n', "letters, digits, '.', '_' or '-'"),
        ("tenants = 3\n", "tenants must be a table"),
    ],
)
def test_bad_tenant_settings_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_of(tmp_path, text)
