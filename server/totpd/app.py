"""Composition root: builds the domain service from settings."""

from __future__ import annotations

import logging
import time

from totpd.config import Settings
from totpd.crypto import Keyring, write_new_keyring
from totpd.service.mfa import MfaService
from totpd.store import FactorStore, migrate, open_engine

log = logging.getLogger(__name__)


def load_keyring(settings: Settings) -> Keyring:
    """Load the keyring; with create_dev_key, make one on first start and say so."""
    if settings.create_dev_key and not settings.key_file.exists():
        write_new_keyring(settings.key_file)
        log.warning(
            "created a development keyring; in production use `totpd keygen` and protect the file",
            extra={"key_file": str(settings.key_file)},
        )
    return Keyring.load(settings.key_file)


def build_service(settings: Settings) -> MfaService:
    """Open the database (running migrations), load the keyring, wire the service."""
    keyring = load_keyring(settings)
    engine = open_engine(settings.resolved_database_url())
    migrate(engine)
    return MfaService(FactorStore(engine), keyring, settings.policy, time.time)
