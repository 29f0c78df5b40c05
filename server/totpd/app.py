"""Composition root: builds the domain service from settings."""

from __future__ import annotations

import time

from totpd.config import Settings
from totpd.crypto import Keyring
from totpd.service.mfa import MfaService
from totpd.store import FactorStore, migrate, open_engine


def build_service(settings: Settings) -> MfaService:
    """Load the keyring, open the database (running migrations), wire the service.

    The key file must exist: `totpd serve --dev` creates a development one first.
    """
    keyring = Keyring.load(settings.key_file)
    if not settings.database_url:
        # The embedded default lives in the data directory; an explicit URL's
        # directory must already exist (a typo should not create directories).
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(settings.resolved_database_url())
    migrate(engine)
    return MfaService(FactorStore(engine), keyring, settings.policy, time.time)
