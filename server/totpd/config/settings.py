"""The settings record, its error and its checks (`validate`); where the values
come from is `totpd.config.sources`."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from totpd.service.policy import Policy

DEFAULT_DATA_DIR = Path("var")
KEY_FILE_NAME = "totpd.key"
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS: Final = ("json", "text")
IDENTITY_KINDS: Final = ("uri", "dns", "cn")


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
    # Concurrent unary Verify calls of one tenant share rounds (group commit):
    # one read, one write and one commit for every call waiting when a round
    # starts, each call keeping its own verdict, limit, audit event and
    # deadline. The calls wait as coroutines on the event loop, holding no
    # thread. None ("auto", the default) is on; off, each Verify is one round
    # on a worker thread, which grpc.aio hands it to at a higher cost a call.
    coalesce_verify: bool | None = None
    # Coalesced rounds of one tenant that may run at once: a call that finds
    # fewer running starts one at once instead of waiting.
    verify_rounds_in_flight: int = 1
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
    # The event loop and the round threads (the threads that take turns at the
    # GIL) run on one CPU of those the process may use, a worker of
    # `--processes N` on its own: GIL hand-offs stay on one CPU (totpd/thread_cpus.py).
    # Off, the kernel places them anywhere.
    pin_interpreter: bool = True
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

    @property
    def coalesces_verify(self) -> bool:
        """Whether unary Verify calls share rounds: `coalesce_verify`; "auto" (None)
        is on, on both databases, since Verify is served on the event loop
        (rpc/loop_server.py; benchmarks/NOTES.md)."""
        return True if self.coalesce_verify is None else self.coalesce_verify

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
    _check_range("verify_rounds_in_flight", settings.verify_rounds_in_flight, 1, 64)
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
