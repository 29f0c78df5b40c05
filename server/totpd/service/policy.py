"""Verification policy: every tunable of the domain with its safe default, and the
tenants' own policies (the global one with a tenant's overrides)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class Policy:
    # Steps accepted on each side of the current one (0 or 1; RFC 6238 section 5.2).
    window: int = 1
    # Consecutive failures that lock a factor (NIST SP 800-63B section 5.2.2).
    lock_after_failures: int = 10
    # Failures before exponential backoff starts; after the n-th failure the
    # next attempt waits backoff_base_seconds * 2 ** (n - backoff_after_failures).
    backoff_after_failures: int = 3
    backoff_base_seconds: int = 1
    # How long a lock lasts. Timed rather than permanent, so that an attacker
    # who knows an account id cannot switch its MFA off for good.
    lock_seconds: int = 900
    max_factors_per_account: int = 5
    enrollment_ttl_seconds: int = 600
    max_batch_items: int = 10_000
    default_issuer: str = "totpd"
    # Retention: disabled and expired factors (and pending ones never
    # confirmed) are purged this long after they ended; a request_id's first
    # result is replayed this long (AIP-155).
    ended_factor_retention_days: int = 30
    request_id_retention_seconds: int = 86400
    # The account's rolling budget of compared failures, counted per (code,
    # factor) pair compared: an account-wide guess against 5 factors spends 5.
    # It holds `failure_budget` pairs and refills one every
    # failure_budget_window_seconds / failure_budget seconds, so in any span
    # of L seconds at most failure_budget * (1 + L / window) pairs are
    # compared: 355 a year at the defaults, a success chance of 1.07e-3 at 6
    # digits and window 1 (3 codes in 10^6 accepted per pair).
    failure_budget: int = 27
    failure_budget_window_seconds: int = 30 * 86400
    # Consecutive failed verifications of an account, across its factors and
    # timed locks, after which it stays locked until an operator unlocks it
    # (NIST SP 800-63B section 5.2.2: at most 100). Only a success resets it.
    max_consecutive_failures: int = 100
    # Failed verifications per second one caller may cause across all
    # accounts (a token bucket of caller_failure_burst), so that no caller
    # can lock accounts en masse; 0 turns it off. A call needs room for all
    # of its possible failures before anything is compared, so the burst is
    # at least max_batch_items.
    caller_failures_per_second: int = 10
    caller_failure_burst: int = 10_000
    # The audit trail (service/audit.py): an event per decided code, state
    # change and denied call, in the transaction of what it describes. Off
    # only to measure what it costs (benchmarks); events older than the
    # retention are pruned by the purge thread.
    audit_enabled: bool = True
    audit_retention_days: int = 365
    # How far from the server's clock Resync looks for an app's two
    # consecutive codes, either way; the drift it stores is at most this.
    resync_range_seconds: int = 600
    # -- recovery codes (service/mfa/recovery.py) --
    # Codes in a set GenerateRecoveryCodes issues.
    recovery_codes_count: int = 10

    def __post_init__(self) -> None:
        """The one place the policy's bounds are checked (config errors quote these)."""
        if self.window not in (0, 1):
            raise ValueError(f"window must be 0 or 1 (steps each side), got {self.window}")
        _check_range("lock_after_failures", self.lock_after_failures, 1, 1000)
        _check_range("backoff_after_failures", self.backoff_after_failures, 1, 1000)
        _check_range("backoff_base_seconds", self.backoff_base_seconds, 0, 3600)
        _check_range("lock_seconds", self.lock_seconds, 1, 7 * 86400)
        _check_range("max_factors_per_account", self.max_factors_per_account, 1, 100)
        _check_range("enrollment_ttl_seconds", self.enrollment_ttl_seconds, 30, 86400)
        # An event's place in its call must fit store/models.py's EVENT_IDS_PER_CALL.
        _check_range("max_batch_items", self.max_batch_items, 1, 1_000_000)
        _check_range("ended_factor_retention_days", self.ended_factor_retention_days, 1, 3650)
        # At least the claim lease of a running call (service/idempotency.py).
        _check_range(
            "request_id_retention_seconds", self.request_id_retention_seconds, 300, 2592000
        )
        _check_range("failure_budget", self.failure_budget, 1, 100_000)
        _check_range(
            "failure_budget_window_seconds", self.failure_budget_window_seconds, 60, 366 * 86400
        )
        _check_range("max_consecutive_failures", self.max_consecutive_failures, 1, 100)
        _check_range("caller_failures_per_second", self.caller_failures_per_second, 0, 1_000_000)
        _check_range("caller_failure_burst", self.caller_failure_burst, 1, 100_000_000)
        _check_range("audit_retention_days", self.audit_retention_days, 1, 36500)
        _check_range("resync_range_seconds", self.resync_range_seconds, 60, 3600)
        _check_range("recovery_codes_count", self.recovery_codes_count, 1, 50)
        if self.failure_budget < self.max_factors_per_account:
            # An account-wide guess spends one per factor: it must fit in the budget.
            raise ValueError("failure_budget must be at least max_factors_per_account")
        if self.caller_failures_per_second and self.caller_failure_burst < self.max_batch_items:
            raise ValueError(
                "caller_failure_burst must be at least max_batch_items "
                "(a batch needs room for all of its possible failures)"
            )
        if self.backoff_after_failures > self.lock_after_failures:
            raise ValueError("backoff_after_failures must not exceed lock_after_failures")
        issuer = self.default_issuer
        if not 1 <= len(issuer) <= 64 or ":" in issuer or not issuer.isprintable():
            raise ValueError("default_issuer must be 1-64 printable characters without ':'")

    def wait_after(self, failures: int) -> int:
        """Seconds before the next attempt is compared, after `failures` in a row."""
        if failures >= self.lock_after_failures:
            return self.lock_seconds
        if failures < self.backoff_after_failures:
            return 0
        # Capped so a generous lock threshold cannot overflow the column.
        exponent = min(failures - self.backoff_after_failures, 20)
        return min(self.backoff_base_seconds * (1 << exponent), self.lock_seconds)

    def attempts_left(self, failures: int) -> int:
        return max(0, self.lock_after_failures - failures)

    def yearly_failure_bound(self) -> float:
        """The most (code, factor) pairs an account's budget lets be compared and
        fail in any 365 days: failure_budget * (1 + 365 days / window)."""
        return self.failure_budget * (1 + 365 * 86400 / self.failure_budget_window_seconds)


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


# The keys a tenant may set for itself ([tenants.NAME.policy]); the others are
# the server's: retention (one purge) and the per-caller limits (a caller spans
# tenants).
TENANT_KEYS: Final = frozenset(
    {
        "window",
        "lock_after_failures",
        "backoff_after_failures",
        "backoff_base_seconds",
        "lock_seconds",
        "max_factors_per_account",
        "enrollment_ttl_seconds",
        "max_batch_items",
        "default_issuer",
        "failure_budget",
        "failure_budget_window_seconds",
        "max_consecutive_failures",
        "resync_range_seconds",
        "recovery_codes_count",
    }
)


def tenant_policy(base: Policy, overrides: Mapping[str, Any]) -> Policy:
    """`base` with a tenant's overrides, checked like the global policy (ValueError)."""
    unknown = sorted(set(overrides) - TENANT_KEYS)
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)} cannot be set per tenant; per-tenant keys are "
            + ", ".join(sorted(TENANT_KEYS))
        )
    return replace(base, **overrides)


class Policies:
    """The global policy and the tenants that have their own: one dict lookup per call."""

    __slots__ = ("_tenants", "default")

    def __init__(self, default: Policy, tenants: Mapping[str, Policy] | None = None) -> None:
        self.default = default
        self._tenants = dict(tenants or {})

    def for_tenant(self, tenant: str) -> Policy:
        """The tenant's policy; the global one for a tenant without overrides."""
        return self._tenants.get(tenant, self.default)
