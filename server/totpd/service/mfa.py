"""The MFA domain service: enrollment, confirmation, verification, disable.

No grpc and no SQL here: the store persists, the native core computes codes,
this module decides. Every public method validates its input first and raises
`TotpdError` before anything is written or counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from totpd.service.errors import TotpdError
from totpd.service.policy import Policy
from totpd.service.types import (
    Enrollment,
    EnrollParams,
    Factor,
    VerifyItem,
    VerifyOutcome,
)


class MfaService:
    def __init__(self, store: object, policy: Policy, clock: Callable[[], float]) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock

    @property
    def policy(self) -> Policy:
        return self._policy

    def enroll(self, params: EnrollParams) -> Enrollment:
        raise NotImplementedError

    def confirm(self, account_id: str, factor_id: str, code: str) -> tuple[VerifyOutcome, Factor]:
        raise NotImplementedError

    def verify(self, item: VerifyItem) -> VerifyOutcome:
        raise NotImplementedError

    def verify_batch(self, items: Sequence[VerifyItem]) -> list[VerifyOutcome | TotpdError]:
        raise NotImplementedError

    def disable(
        self, account_id: str, factor_id: str | None, code: str | None, force: bool
    ) -> tuple[VerifyOutcome, list[Factor]]:
        raise NotImplementedError

    def get_factor(self, account_id: str, factor_id: str) -> Factor:
        raise NotImplementedError

    def list_factors(self, account_id: str, include_inactive: bool) -> list[Factor]:
        raise NotImplementedError
