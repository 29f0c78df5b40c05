"""What every MfaService job works with: the store, the keyring, the policy, the clock,
the verification engine and the request records; the tenant of the call."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from totpd import calls
from totpd.crypto import Keyring
from totpd.service import idempotency, validation
from totpd.service.policy import Policies, Policy
from totpd.service.verification import CodeChecker
from totpd.store import FactorStore


@dataclass(frozen=True)
class Deps:
    store: FactorStore
    keyring: Keyring
    policy: Policy
    clock: Callable[[], float]
    # Tenants with their own policy (the global one with their overrides).
    tenant_policies: Mapping[str, Policy] = field(default_factory=dict)
    policies: Policies = field(init=False)
    checker: CodeChecker = field(init=False)
    requests: idempotency.Idempotency = field(init=False)

    def __post_init__(self) -> None:
        policies = Policies(self.policy, self.tenant_policies)
        object.__setattr__(self, "policies", policies)
        checker = CodeChecker(self.store, self.keyring, policies, self.clock)
        requests = idempotency.Idempotency(
            self.store.requests, self.keyring, self.policy, self.clock
        )
        object.__setattr__(self, "checker", checker)
        object.__setattr__(self, "requests", requests)

    def now(self) -> int:
        """The clock in whole seconds, as the store records times."""
        return math.floor(self.clock())


def current_tenant() -> str:
    """The tenant the call being served acts in (set by the rpc layer; "default"
    outside a call). Read once, at the service's entry; passed down from there."""
    return validation.tenant(calls.current().tenant)
