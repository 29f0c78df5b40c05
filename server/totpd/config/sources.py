"""Where settings come from: TOML file, environment and flags, each value parsed
by its key's parser, merged and built into a checked `Settings`."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Final

from totpd.config.settings import (
    DEFAULT_DATA_DIR,
    KEY_FILE_NAME,
    ConfigError,
    Settings,
    validate,
)
from totpd.service import validation
from totpd.service.errors import TotpdError
from totpd.service.policy import TENANT_KEYS, Policy, tenant_policy

ENV_PREFIX: Final = "TOTPD_"
CONFIG_ENV: Final = "TOTPD_CONFIG"


# --- value parsers: accept the native TOML/flag type or an environment string ---


def _as_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else ""
    if text.lstrip("+-").isascii() and text.lstrip("+-").isdigit():
        return int(text, 10)
    raise ValueError("expected an integer")


def _as_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().isascii():
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError("expected a number")


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("expected a boolean (true/false)")


def _as_bool_or_auto(value: object) -> bool | None:
    """A boolean, or "auto" (None): the setting's default decides."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        return _as_bool(value)
    except ValueError:
        raise ValueError("expected a boolean (true/false) or auto") from None


def _as_str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError("expected a string")


def _as_path(value: object) -> Path:
    if isinstance(value, Path):
        return value
    if isinstance(value, str) and value:
        return Path(value)
    raise ValueError("expected a non-empty path")


def _as_cpu_path(value: object) -> str:
    """A path name, lowercased; empty means "auto". Whether the CPU has it is
    for the C core to say, at startup."""
    return _as_str(value).strip().lower() or "auto"


def _as_optional_path(value: object) -> Path | None:
    """A path, or None for an empty string (an environment variable set to "" unsets)."""
    if isinstance(value, str) and not value:
        return None
    return _as_path(value)


# Every configurable key: its parser and whether it lives in [policy].
_TOP_LEVEL: Final[dict[str, Callable[[object], Any]]] = {
    "listen_address": _as_str,
    "database_url": _as_str,
    "data_dir": _as_path,
    "key_file": _as_path,
    "create_dev_key": _as_bool,
    "max_workers": _as_int,
    "coalesce_verify": _as_bool_or_auto,
    "verify_rounds_in_flight": _as_int,
    "max_concurrent_rpcs": _as_int,
    "max_items_in_flight": _as_int,
    "max_message_bytes": _as_int,
    "drain_seconds": _as_float,
    "max_database_wait_seconds": _as_float,
    "shutdown_grace_seconds": _as_float,
    "health_probe_interval_seconds": _as_float,
    "health_probe_timeout_seconds": _as_float,
    "log_level": _as_str,
    "log_format": _as_str,
    "tls_cert_file": _as_optional_path,
    "tls_key_file": _as_optional_path,
    "tls_client_ca_file": _as_optional_path,
    "purge_interval_seconds": _as_float,
    "cpu_path": _as_cpu_path,
    "pin_interpreter": _as_bool,
    "metrics_address": _as_str,
    "otlp_endpoint": _as_str,
    "callers_file": _as_optional_path,
    "allow_anonymous": _as_bool,
    "client_identity": _as_str,
}
_POLICY_PARSERS: Final[dict[str, Callable[[object], Any]]] = {
    "default_issuer": _as_str,
    "audit_enabled": _as_bool,
}
# Keys of earlier releases, refused with what replaced them.
_REPLACED: Final = {
    "allow_force_disable": "it was replaced by the admin permission of the callers file"
    " (callers_file): Disable with force needs a caller holding 'admin'",
}
_POLICY: Final[dict[str, Callable[[object], Any]]] = {
    f.name: _POLICY_PARSERS.get(f.name, _as_int) for f in fields(Policy)
}
KEYS: Final = tuple(_TOP_LEVEL) + tuple(_POLICY)


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def _parse(source: str, key: str, value: object) -> Any:
    parser = _TOP_LEVEL.get(key) or _POLICY.get(key)
    if parser is None and key in _REPLACED:
        raise ConfigError(f"{source}: setting {key!r} is no longer read: {_REPLACED[key]}")
    if parser is None:
        raise ConfigError(f"{source}: unknown setting {key!r}")
    try:
        return parser(value)
    except ValueError as error:
        raise ConfigError(f"{source}: {key}: {error}, got {value!r}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} is unreadable: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    values: dict[str, Any] = {}
    for key, value in document.items():
        if key == "tenants":
            values[_TENANTS] = _read_tenants(path, value)
        elif key == "policy" and isinstance(value, dict):
            for policy_key, policy_value in value.items():
                if policy_key not in _POLICY and policy_key not in _REPLACED:
                    raise ConfigError(f"{path}: unknown setting 'policy.{policy_key}'")
                values[policy_key] = _parse(f"{path}", policy_key, policy_value)
        elif key in _TOP_LEVEL:
            values[key] = _parse(f"{path}", key, value)
        else:
            hint = " (policy settings belong in the [policy] table)" if key in _POLICY else ""
            raise ConfigError(f"{path}: unknown setting {key!r}{hint}")
    return values


_TENANTS: Final = "tenants"  # the key of the parsed [tenants] table among the values


def _read_tenants(path: Path, table: object) -> dict[str, dict[str, Any]]:
    """[tenants.NAME.policy] tables: each tenant's policy overrides, parsed."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: tenants must be a table of [tenants.NAME.policy] tables")
    tenants: dict[str, dict[str, Any]] = {}
    for name, sections in table.items():
        try:
            validation.tenant(name)
        except TotpdError as error:
            raise ConfigError(f"{path}: tenants.{name!r}: {error.message}") from None
        if not isinstance(sections, dict) or set(sections) - {"policy"}:
            raise ConfigError(f"{path}: tenants.{name} holds only a [tenants.{name}.policy] table")
        overrides = sections.get("policy", {})
        if not isinstance(overrides, dict):
            raise ConfigError(f"{path}: tenants.{name}.policy must be a table")
        for key in overrides:
            if key not in _POLICY:
                raise ConfigError(f"{path}: unknown setting 'tenants.{name}.policy.{key}'")
            if key not in TENANT_KEYS:
                raise ConfigError(
                    f"{path}: tenants.{name}.policy.{key} is server-wide; set it in [policy]"
                )
        source = f"{path}: tenants.{name}.policy"
        tenants[name] = {key: _parse(source, key, value) for key, value in overrides.items()}
    return tenants


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in _REPLACED:
        if env_name(key) in environ:
            _parse(env_name(key), key, environ[env_name(key)])
    for key in KEYS:
        raw = environ.get(env_name(key))
        if raw is not None:
            values[key] = _parse(env_name(key), key, raw)
    return values


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge every source and validate. `overrides` are flag values by key (None = unset)."""
    environ = os.environ if environ is None else environ
    if config_file is None and environ.get(CONFIG_ENV):
        config_file = Path(environ[CONFIG_ENV])
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_toml(config_file))
    values.update(_read_env(environ))
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _parse(f"--{key.replace('_', '-')}", key, value)
    return _build(values)


def _build(values: dict[str, Any]) -> Settings:
    policy_values = {k: v for k, v in values.items() if k in _POLICY}
    top = {k: v for k, v in values.items() if k in _TOP_LEVEL}
    if "key_file" not in top:
        top["key_file"] = top.get("data_dir", DEFAULT_DATA_DIR) / KEY_FILE_NAME
    if "log_level" in top:
        top["log_level"] = top["log_level"].upper()
    try:
        policy = Policy(**policy_values)
    except ValueError as error:  # Policy checks its own invariants too
        raise ConfigError(f"policy: {error}") from None
    tenant_policies: dict[str, Policy] = {}
    for name, overrides in values.get(_TENANTS, {}).items():
        try:
            tenant_policies[name] = tenant_policy(policy, overrides)
        except ValueError as error:  # the same bounds as the global policy
            raise ConfigError(f"tenants.{name}.policy: {error}") from None
    settings = Settings(policy=policy, tenant_policies=tenant_policies, **top)
    validate(settings)
    return settings
