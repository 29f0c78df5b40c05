"""Verification policy: every tunable of the domain with its safe default."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Policy:
    # Steps accepted on each side of the current one (0 or 1; RFC 6238 section 5.2).
    window: int = 1
    # Consecutive failures that lock a factor (NIST SP 800-63B section 5.2.2).
    lock_after_failures: int = 10
    # Failures before exponential backoff starts; the next attempt waits
    # backoff_base_seconds * 2 ** (failures - backoff_after_failures).
    backoff_after_failures: int = 3
    backoff_base_seconds: int = 1
    # How long a lock lasts before an attempt is compared again.
    lock_seconds: int = 900
    max_factors_per_account: int = 5
    enrollment_ttl_seconds: int = 600
    max_batch_items: int = 10_000
    default_issuer: str = "totpd"
