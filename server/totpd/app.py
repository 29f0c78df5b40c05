"""Composition root: builds the domain service from settings."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from totpd import otp
from totpd.calls import CallScope
from totpd.config import ConfigError, Settings
from totpd.crypto import Keyring, KeyringError
from totpd.service.errors import ErrorReason
from totpd.service.mfa import MfaService
from totpd.service.purging import Purger
from totpd.service.resealing import reseal_legacy_secrets
from totpd.store import FactorStore, migrate, open_engine
from totpd.store.checkpoints import start_checkpointer
from totpd.store.database import SQLITE_BUSY_TIMEOUT_MS
from totpd.telemetry import metrics, tracing

_log = logging.getLogger("totpd.telemetry")


class MissingKeysError(KeyringError):
    """Stored secrets are sealed with keys the keyring does not hold."""


def build_service(settings: Settings, *, prepared: bool = False) -> MfaService:
    """Load the keyring, open the database, start the purge, wire the service.

    Unless `prepared` (a worker of `totpd serve --processes N`, whose supervisor
    ran `prepare_database` once for all of them), first run the migrations,
    check the keyring and re-seal legacy secrets.
    The key file must exist: `totpd serve --dev` creates a development one first.
    Refuses (MissingKeysError) a keyring that lacks a key the stored secrets need,
    and (otp.CpuPathError) a CPU path this machine cannot run.
    """
    otp.use_cpu_path(settings.cpu_path)
    metrics.set_cpu_path(otp.cpu_path())
    keyring = Keyring.load(settings.key_file)
    engine = open_engine(settings.prepared_database_url())
    if not prepared:
        migrate(engine)
    store = FactorStore(engine)
    if not prepared:
        try:
            _check_and_reseal(store, keyring, settings)
        except MissingKeysError:
            engine.dispose()
            raise
    # SQLite only: WAL checkpoints in a daemon thread, off the writers' path.
    start_checkpointer(engine, SQLITE_BUSY_TIMEOUT_MS)
    Purger(store, settings.policy, time.time, interval=settings.purge_interval_seconds).start()
    return MfaService(
        store,
        keyring,
        settings.policy,
        time.time,
        settings.tenant_policies,
        coalesce_verify=settings.coalesces_verify,
        verify_rounds_in_flight=settings.verify_rounds_in_flight,
    )


def denial_recorder(service: MfaService) -> Callable[[CallScope, ErrorReason], None]:
    """What hears of each call refused for its caller (rpc/callers.py `on_denied`):
    the audit trail writes the denial's event, in its own transaction (a store
    fault is raised: the call fails rather than go unrecorded)."""
    audit = service.audit

    def record(scope: CallScope, reason: ErrorReason) -> None:
        audit.record_denied(scope, scope.method, reason)

    return record


def prepare_database(settings: Settings) -> None:
    """What `build_service` does once before serving, alone: check the CPU path,
    load the keyring, migrate, check the keyring against the stored key ids,
    re-seal legacy secrets. A supervisor runs it before its workers start, so
    they do not race to migrate."""
    otp.use_cpu_path(settings.cpu_path)
    keyring = Keyring.load(settings.key_file)
    engine = open_engine(settings.prepared_database_url())
    try:
        migrate(engine)
        _check_and_reseal(FactorStore(engine), keyring, settings)
    finally:
        engine.dispose()


def _check_and_reseal(store: FactorStore, keyring: Keyring, settings: Settings) -> None:
    check_keyring(store, keyring, settings)
    reseal_legacy_secrets(store.sealed_secrets, keyring)


def check_keyring(store: FactorStore, keyring: Keyring, settings: Settings) -> None:
    """Every key a stored secret is sealed with must be in the keyring.

    Otherwise every verification of those factors would fail closed
    (SECRET_UNAVAILABLE) while health said SERVING: a server started with the
    wrong keyring file must not start at all.
    """
    missing = sorted(store.secret_key_ids() - keyring.key_ids)
    if missing:
        raise MissingKeysError(
            f"the keyring at {settings.key_file} lacks key id(s) {', '.join(missing)}, "
            "which stored secrets are sealed with; start with the keyring that holds them"
        )


@contextmanager
def observed(settings: Settings) -> Iterator[metrics.MetricsListener | None]:
    """Metrics listener and tracing for a serving process's life; yields the
    listener (None when off or served by a supervisor).

    A listener that cannot bind is logged, not fatal: verifications matter more
    than their metrics, and Prometheus shows the missing target (`up == 0`).
    Tracing configured without its packages is a configuration error.
    """
    if tracing.wanted(settings.otlp_endpoint):
        try:
            tracing.configure(settings.otlp_endpoint)
        except tracing.TracingUnavailableError as error:
            raise ConfigError(str(error)) from None
    listener = None
    supervised = os.environ.get(metrics.LISTENER_ENV) == "supervisor"
    if settings.metrics_address and not supervised:
        try:
            listener = metrics.start_metrics_listener(settings.metrics_address)
        except OSError as error:
            _log.warning(
                "metrics listener not started",
                extra={"address": settings.metrics_address, "error": error.strerror},
            )
    try:
        yield listener
    finally:
        if listener is not None:
            listener.close()
        tracing.shutdown()
