"""Server settings: one typed record, filled from defaults, a TOML file, the
environment (TOTPD_*) and command-line flags, later sources winning.

    defaults < TOML file (--config PATH or TOTPD_CONFIG) < TOTPD_<KEY> < flags

Every key has one name: `window` is `window` under `[policy]` in the TOML
file, `TOTPD_WINDOW` in the environment and `--window` on the command line.
A tenant may override some policy keys for itself in `[tenants.NAME.policy]`
(TOML only; `policy.TENANT_KEYS`), on top of the global policy from every source.
Relative paths are relative to the working directory. `key_file` defaults to
`<data_dir>/totpd.key`. TLS is off unless `tls_cert_file` and `tls_key_file`
are both set; `tls_client_ca_file` on top of them requires client certificates
(mTLS); the files themselves are read and checked by `totpd.rpc.tls` at
startup. Unknown keys in the file are errors (typos must not silently fall
back to a default); `load_settings` raises `ConfigError` with a message naming
the source and the key.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from totpd.service import validation
from totpd.service.errors import TotpdError
from totpd.service.policy import TENANT_KEYS, Policy, tenant_policy

DEFAULT_DATA_DIR = Path("var")
KEY_FILE_NAME = "totpd.key"
ENV_PREFIX: Final = "TOTPD_"
CONFIG_ENV: Final = "TOTPD_CONFIG"
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS: Final = ("json", "text")


@dataclass(frozen=True, slots=True)
class Settings:
    # Loopback only by default: exposing totpd is a deliberate choice.
    listen_address: str = "127.0.0.1:50051"
    # Empty means SQLite at <data_dir>/totpd.sqlite3.
    database_url: str = ""
    data_dir: Path = DEFAULT_DATA_DIR
    # Keyring file for secrets at rest; see `totpd keygen`.
    key_file: Path = DEFAULT_DATA_DIR / KEY_FILE_NAME
    # Create a development key on first start if key_file is missing.
    create_dev_key: bool = False
    policy: Policy = field(default_factory=Policy)
    # Tenants with policy keys of their own: the global policy with their overrides.
    tenant_policies: Mapping[str, Policy] = field(default_factory=dict)
    # gRPC worker threads. Few threads that stay busy beat many that take turns:
    # with many, every call wakes an idle thread, a hand-off that costs CPU on
    # each call (benchmarks/NOTES.md has the figures). A BatchVerify call holds
    # one for its whole run.
    max_workers: int = 4
    # Requests in flight or queued beyond this are refused with RESOURCE_EXHAUSTED
    # by gRPC itself, before they cost a database round trip.
    max_concurrent_rpcs: int = 1000
    # Admission by cost: items being verified at once (a unary verification 1,
    # a BatchVerify its item count, an Enroll a few). Calls beyond it are refused
    # at once with RESOURCE_EXHAUSTED/OVERLOADED and a retry delay. Room for one
    # batch of the default max_batch_items and the unary traffic beside it.
    max_items_in_flight: int = 25_000
    max_message_bytes: int = 4 * 1024 * 1024
    # A call waits for the database until its deadline: the client's, but at
    # most this long after the call started, deadline or none. Past it the
    # call answers DEADLINE_EXCEEDED and stores nothing.
    max_database_wait_seconds: float = 5.0
    # On SIGTERM/SIGINT health turns NOT_SERVING and the server keeps serving
    # this long, so load balancers move traffic away before the port closes.
    drain_seconds: float = 5.0
    # Then new calls are refused and calls in flight get this long to finish.
    shutdown_grace_seconds: float = 10.0
    # The health probe pings the store this often, and turns health NOT_SERVING
    # when a ping fails or gives no answer within the timeout (a hung database).
    health_probe_interval_seconds: float = 2.0
    health_probe_timeout_seconds: float = 2.0
    log_level: str = "INFO"
    log_format: str = "json"
    # TLS: both PEM files or neither (plaintext, the loopback default).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # With this PEM CA bundle, clients must present a certificate it signed (mTLS).
    tls_client_ca_file: Path | None = None
    # How often the purge thread deletes ended factors and expired request
    # records (the retentions are [policy] keys).
    purge_interval_seconds: float = 3600.0
    # The C core's CPU path: "auto" (the fastest this CPU has), or one forced
    # ("portable", "shani", "avx2", "avx512", "avx512x16"); checked against the
    # CPU when the service is built (totpd.otp.use_cpu_path).
    cpu_path: str = "auto"
    # Prometheus metrics on their own HTTP listener (/metrics); loopback by
    # default, "" for none. Port 0 picks a free port (logged).
    metrics_address: str = "127.0.0.1:9464"
    # OpenTelemetry tracing over OTLP (the `tracing` extra), e.g.
    # "http://127.0.0.1:4317"; "" leaves it to OTEL_EXPORTER_OTLP_ENDPOINT, or off.
    otlp_endpoint: str = ""
    # Who may call (TOML [[callers]]: name, token_sha256, tenants, permissions);
    # reloaded when it changes. Without it every call is the implicit caller
    # "local", with every permission: allowed on loopback only, unless
    # allow_anonymous says so.
    callers_file: Path | None = None
    allow_anonymous: bool = False
    # Which names of a client certificate identify its caller, in order: the
    # first kind the certificate has ("uri": a URI SAN such as a SPIFFE ID,
    # "dns": a DNS SAN, "cn": the subject's common name).
    client_identity: str = "uri,dns,cn"

    @property
    def largest_batch_items(self) -> int:
        """The largest batch any tenant may send (admission must let it through)."""
        tenants = [policy.max_batch_items for policy in self.tenant_policies.values()]
        return max([self.policy.max_batch_items, *tenants])

    @property
    def tls_mode(self) -> str:
        """The transport: "off", "tls" or "mtls"."""
        if self.tls_cert_file is None:
            return "off"
        return "mtls" if self.tls_client_ca_file is not None else "tls"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'totpd.sqlite3'}"

    def prepared_database_url(self) -> str:
        """The database URL, with the embedded default's data directory created.

        An explicit URL's directory must already exist: a typo should not
        create directories.
        """
        if not self.database_url:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.resolved_database_url()


class ConfigError(ValueError):
    """The configuration is unreadable or a value is out of bounds."""


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
IDENTITY_KINDS: Final = ("uri", "dns", "cn")
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


# --- validation -----------------------------------------------------------------


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key} must be between {low:g} and {high:g}, got {value:g}")


def parse_listen_address(address: str) -> tuple[str, int]:
    """Split "HOST:PORT" ("[::1]:50051" for IPv6); port 0 asks for a free port."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit():
        raise ConfigError(f"listen_address must be HOST:PORT, got {address!r}")
    if not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen_address port must be 0-65535, got {port}")
    return host, int(port)


def _check_metrics_address(address: str) -> None:
    try:
        parse_listen_address(address)
    except ConfigError:
        raise ConfigError(
            f"metrics_address must be HOST:PORT, or empty for no metrics listener, got {address!r}"
        ) from None


def is_loopback_host(host: str) -> bool:
    """True for "localhost" and loopback addresses (127.0.0.0/8, ::1); a wildcard
    (0.0.0.0, [::]) or any other name or address reaches beyond this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def validate(settings: Settings) -> None:
    parse_listen_address(settings.listen_address)
    if settings.metrics_address:
        _check_metrics_address(settings.metrics_address)
    if settings.database_url and "://" not in settings.database_url:
        raise ConfigError("database_url must be an SQLAlchemy URL such as postgresql+psycopg://...")
    _check_range("max_workers", settings.max_workers, 1, 1024)
    _check_range("max_concurrent_rpcs", settings.max_concurrent_rpcs, 1, 1_000_000)
    _check_range("max_message_bytes", settings.max_message_bytes, 1024, 2**31 - 1)
    _check_range("max_items_in_flight", settings.max_items_in_flight, 1, 10_000_000)
    if settings.largest_batch_items > settings.max_items_in_flight:
        raise ConfigError(
            f"max_batch_items ({settings.largest_batch_items}) must not exceed"
            f" max_items_in_flight ({settings.max_items_in_flight}): a batch of the"
            " allowed size could never be admitted; raise max_items_in_flight or"
            " lower max_batch_items"
        )
    _check_range("drain_seconds", settings.drain_seconds, 0, 3600)
    _check_range("max_database_wait_seconds", settings.max_database_wait_seconds, 0.01, 600)
    _check_range("shutdown_grace_seconds", settings.shutdown_grace_seconds, 0, 3600)
    _check_range("health_probe_interval_seconds", settings.health_probe_interval_seconds, 0.1, 3600)
    _check_range("health_probe_timeout_seconds", settings.health_probe_timeout_seconds, 0.1, 3600)
    _check_range("purge_interval_seconds", settings.purge_interval_seconds, 1, 86400)
    if settings.log_level not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    if settings.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
    identity_kinds(settings.client_identity)


def identity_kinds(text: str) -> tuple[str, ...]:
    """The `client_identity` setting as its kinds, in order ("uri,dns" -> ("uri", "dns"))."""
    kinds = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if (
        not kinds
        or any(kind not in IDENTITY_KINDS for kind in kinds)
        or len(set(kinds)) != len(kinds)
    ):
        raise ConfigError(
            f"client_identity must list some of {', '.join(IDENTITY_KINDS)} once each,"
            f" comma-separated, in the order to try; got {text!r}"
        )
    return kinds
