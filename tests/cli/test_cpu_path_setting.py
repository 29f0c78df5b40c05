"""The C core's CPU path is the `cpu_path` setting, applied when the service is
built (app.build_service), not when totpd.otp is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from totpd import otp
from totpd.app import build_service
from totpd.config import ConfigError, Settings, load_settings
from totpd.crypto import write_new_keyring


@pytest.fixture(autouse=True)
def auto_path_after() -> Iterator[None]:
    """Each test leaves the process on the default path, as it found it."""
    yield
    otp.use_cpu_path("auto")


def test_the_cpu_path_defaults_to_auto_and_is_read_from_every_source(tmp_path: Path) -> None:
    assert load_settings(environ={}).cpu_path == "auto"
    assert load_settings(environ={"TOTPD_CPU_PATH": " Portable "}).cpu_path == "portable"
    assert load_settings(environ={"TOTPD_CPU_PATH": ""}).cpu_path == "auto"
    config = tmp_path / "totpd.toml"
    config.write_text('cpu_path = "portable"\n', encoding="utf-8")
    assert load_settings(config, environ={}).cpu_path == "portable"
    overridden = load_settings(config, {"cpu_path": "auto"}, environ={})
    assert overridden.cpu_path == "auto"


def test_a_cpu_path_that_is_not_a_string_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "totpd.toml"
    config.write_text("cpu_path = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cpu_path: expected a string"):
        load_settings(config, environ={})


def test_importing_otp_does_not_read_the_environment() -> None:
    script = "from totpd import otp; print(otp.cpu_path())"

    def path_with(env: dict[str, str]) -> str:
        run = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        return run.stdout.strip()

    unset = {k: v for k, v in os.environ.items() if k != "TOTPD_CPU_PATH"}
    assert path_with({**unset, "TOTPD_CPU_PATH": "portable"}) == path_with(unset)
    # A bad value is not even looked at until a composition root applies it.
    assert path_with({**unset, "TOTPD_CPU_PATH": "sse9"}) == path_with(unset)


def test_building_the_service_applies_the_setting(tmp_path: Path) -> None:
    key_file = tmp_path / "totpd.key"
    write_new_keyring(key_file)
    settings = Settings(data_dir=tmp_path, key_file=key_file, cpu_path="portable")
    build_service(settings)
    assert otp.cpu_path() == "portable"


def test_an_unknown_cpu_path_stops_the_build_before_the_database_is_created(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "totpd.key"
    write_new_keyring(key_file)
    settings = Settings(data_dir=tmp_path / "data", key_file=key_file, cpu_path="sse9")
    with pytest.raises(otp.CpuPathError) as caught:
        build_service(settings)
    assert isinstance(caught.value, ValueError)  # a configuration error for `totpd serve`
    assert "TOTPD_CPU_PATH=sse9; use one of auto, portable" in str(caught.value)
    assert not (tmp_path / "data").exists()
