"""What every MfaService job works with: the store, the keyring, the policy, the clock,
the verification engine and the request records."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from totpd.crypto import Keyring
from totpd.service import idempotency
from totpd.service.policy import Policy
from totpd.service.verification import CodeChecker
from totpd.store import FactorStore


@dataclass(frozen=True)
class Deps:
    store: FactorStore
    keyring: Keyring
    policy: Policy
    clock: Callable[[], float]
    checker: CodeChecker = field(init=False)
    requests: idempotency.Idempotency = field(init=False)

    def __post_init__(self) -> None:
        checker = CodeChecker(self.store, self.keyring, self.policy, self.clock)
        requests = idempotency.Idempotency(
            self.store.requests, self.keyring, self.policy, self.clock
        )
        object.__setattr__(self, "checker", checker)
        object.__setattr__(self, "requests", requests)

    def now(self) -> int:
        """The clock in whole seconds, as the store records times."""
        return math.floor(self.clock())
