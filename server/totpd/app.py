"""Composition root: builds the domain service from settings."""

from __future__ import annotations

from totpd.config import Settings
from totpd.service.mfa import MfaService


def build_service(settings: Settings) -> MfaService:
    """Open the database (running migrations), load the keyring, wire the service."""
    raise NotImplementedError
