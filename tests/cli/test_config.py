"""Settings: defaults < TOML file < TOTPD_* environment < flags, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from totpd.config import KEYS, ConfigError, Settings, env_name, load_settings
from totpd.service.policy import Policy


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_dataclass_defaults() -> None:
    assert load_settings(environ={}) == Settings()
    assert Settings().policy == Policy()


def test_every_source_and_its_precedence(tmp_path: Path) -> None:
    config = write(
        tmp_path / "totpd.toml",
        """
        listen_address = "127.0.0.1:6000"
        data_dir = "/srv/totpd"
        max_workers = 4
        [policy]
        window = 0
        lock_after_failures = 5
        default_issuer = "From File"
        """,
    )
    environ = {"TOTPD_LOCK_AFTER_FAILURES": "7", "TOTPD_MAX_WORKERS": "8"}
    settings = load_settings(config, {"max_workers": "2", "window": None}, environ)

    assert settings.listen_address == "127.0.0.1:6000"  # file
    assert settings.data_dir == Path("/srv/totpd")
    assert settings.key_file == Path("/srv/totpd/totpd.key")  # follows data_dir
    assert settings.resolved_database_url() == "sqlite:////srv/totpd/totpd.sqlite3"
    assert settings.policy.window == 0  # file (flag unset)
    assert settings.policy.lock_after_failures == 7  # environment beats file
    assert settings.max_workers == 2  # flag beats environment
    assert settings.policy.default_issuer == "From File"


def test_allow_force_disable_is_refused_with_its_replacement(tmp_path: Path) -> None:
    """The setting of earlier releases is an error naming the admin permission, wherever set."""
    config = write(tmp_path / "old.toml", "[policy]\nallow_force_disable = false\n")
    with pytest.raises(ConfigError, match="admin permission") as caught:
        load_settings(config, {}, {})
    assert "allow_force_disable" in str(caught.value)
    with pytest.raises(ConfigError, match="admin permission"):
        load_settings(None, {}, {"TOTPD_ALLOW_FORCE_DISABLE": "yes"})


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "[policy]\nmax_batch_items = 50\n")
    settings = load_settings(environ={"TOTPD_CONFIG": str(config)})
    assert settings.policy.max_batch_items == 50


def test_environment_strings_are_parsed() -> None:
    settings = load_settings(
        environ={
            "TOTPD_CREATE_DEV_KEY": "yes",
            "TOTPD_SHUTDOWN_GRACE_SECONDS": "2.5",
            "TOTPD_LOG_LEVEL": "debug",
            "TOTPD_KEY_FILE": "/etc/totpd/keys.json",
            "TOTPD_DATABASE_URL": "postgresql+psycopg://u@h/db",
        }
    )
    assert settings.create_dev_key is True
    assert settings.shutdown_grace_seconds == 2.5
    assert settings.log_level == "DEBUG"
    assert settings.key_file == Path("/etc/totpd/keys.json")
    assert settings.resolved_database_url() == "postgresql+psycopg://u@h/db"


def test_every_key_has_an_environment_name() -> None:
    assert env_name("window") == "TOTPD_WINDOW"
    assert len({env_name(k) for k in KEYS}) == len(KEYS)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TOTPD_WINDOW": "2"}, "window must be 0 or 1"),
        ({"TOTPD_WINDOW": "one"}, "TOTPD_WINDOW: window: expected an integer"),
        ({"TOTPD_WINDOW": "１"}, "expected an integer"),
        ({"TOTPD_LISTEN_ADDRESS": "localhost"}, "listen_address must be HOST:PORT"),
        ({"TOTPD_LISTEN_ADDRESS": "127.0.0.1:70000"}, "port must be 0-65535"),
        ({"TOTPD_MAX_WORKERS": "0"}, "max_workers must be between 1 and 1024"),
        ({"TOTPD_LOCK_AFTER_FAILURES": "0"}, "lock_after_failures"),
        ({"TOTPD_MAX_FACTORS_PER_ACCOUNT": "0"}, "max_factors_per_account"),
        ({"TOTPD_ENROLLMENT_TTL_SECONDS": "5"}, "enrollment_ttl_seconds"),
        ({"TOTPD_MAX_BATCH_ITEMS": "0"}, "max_batch_items"),
        ({"TOTPD_DEFAULT_ISSUER": "a:b"}, "default_issuer must be"),
        ({"TOTPD_DEFAULT_ISSUER": ""}, "default_issuer must be"),
        ({"TOTPD_LOG_FORMAT": "xml"}, "log_format must be one of json, text"),
        ({"TOTPD_LOG_LEVEL": "loud"}, "log_level must be one of"),
        ({"TOTPD_CREATE_DEV_KEY": "maybe"}, "expected a boolean"),
        ({"TOTPD_DATABASE_URL": "totpd.db"}, "database_url must be an SQLAlchemy URL"),
        ({"TOTPD_MAX_MESSAGE_BYTES": "10"}, "max_message_bytes"),
    ],
)
def test_invalid_values_fail_with_a_clear_message(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(environ=environ)


def test_flag_values_are_validated_too() -> None:
    with pytest.raises(ConfigError, match="--window: window: expected an integer"):
        load_settings(overrides={"window": "x"}, environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("windw = 1\n", "unknown setting 'windw'"),
        ("window = 1\n", "policy settings belong in the \\[policy\\] table"),
        ("[policy]\nwindoww = 1\n", "unknown setting 'policy.windoww'"),
        ("max_workers = 'many'\n", "max_workers: expected an integer"),
        ("max_workers = true\n", "max_workers: expected an integer"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path / "bad.toml", text), environ={})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TOTPD_DRAIN_SECONDS": "-1"}, "drain_seconds must be between 0 and 3600, got -1"),
        ({"TOTPD_DRAIN_SECONDS": "soon"}, "TOTPD_DRAIN_SECONDS: drain_seconds: expected a number"),
        ({"TOTPD_DRAIN_SECONDS": "nan"}, "drain_seconds must be between 0 and 3600"),
        ({"TOTPD_DRAIN_SECONDS": "7200"}, "drain_seconds must be between 0 and 3600"),
        ({"TOTPD_MAX_ITEMS_IN_FLIGHT": "0"}, "max_items_in_flight must be between 1 and 1e+07"),
        ({"TOTPD_MAX_ITEMS_IN_FLIGHT": "2.5"}, "max_items_in_flight: expected an integer"),
        (
            {"TOTPD_MAX_ITEMS_IN_FLIGHT": "5000"},
            "max_batch_items (10000) must not exceed max_items_in_flight (5000)",
        ),
        (
            {"TOTPD_MAX_BATCH_ITEMS": "30000", "TOTPD_CALLER_FAILURE_BURST": "30000"},
            "max_batch_items (30000) must not exceed max_items_in_flight (25000)",
        ),
    ],
)
def test_bad_drain_and_admission_settings_fail_with_a_clear_message(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    assert message in str(caught.value)


def test_drain_and_admission_settings_are_read_and_consistent_by_default(tmp_path: Path) -> None:
    defaults = Settings()
    assert defaults.drain_seconds == 5.0
    # One batch of the largest allowed size fits, with room for unary calls beside it.
    assert defaults.max_items_in_flight > defaults.policy.max_batch_items
    config = write(tmp_path / "c.toml", "drain_seconds = 0\nmax_items_in_flight = 100\n")
    settings = load_settings(config, {"max_batch_items": "100"}, {})
    assert (settings.drain_seconds, settings.max_items_in_flight) == (0.0, 100)
    assert settings.policy.max_batch_items == 100
    environ = {"TOTPD_DRAIN_SECONDS": "0.5", "TOTPD_MAX_ITEMS_IN_FLIGHT": "10000"}
    assert load_settings(environ=environ).drain_seconds == 0.5
