"""MfaService, the service API the servicer calls: one method per RPC, each handing its
job's module (enrollment, verifying, disabling, factors) the shared :class:`Deps` and
the call's tenant (read here, at the entry, and passed down to the store)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from totpd.crypto import Keyring
from totpd.service.audit import AuditContext, AuditLog
from totpd.service.coalescing import Coalescer
from totpd.service.errors import TotpdError
from totpd.service.mfa import (
    disabling,
    enrollment,
    factors,
    recovery,
    resync,
    unlocking,
    verifying,
)
from totpd.service.mfa.deps import Deps, current_tenant
from totpd.service.policy import Policies, Policy
from totpd.service.recovery_codes import RecoveryStatus
from totpd.service.types import (
    Enrollment,
    EnrollParams,
    Factor,
    Unlocked,
    VerifyItem,
    VerifyOutcome,
)
from totpd.store import FactorStore


class MfaService:
    """Every method validates its input first and raises `TotpdError` before anything is
    written or counted. `caller` (on every code check): who asks, for the per-caller rate
    of failures (caller_limits.py); None for a call from inside totpd. Every method acts
    in the tenant of the call being served (`totpd.calls`), "default" outside a call."""

    def __init__(
        self,
        store: FactorStore,
        keyring: Keyring,
        policy: Policy,
        clock: Callable[[], float],
        tenant_policies: Mapping[str, Policy] | None = None,
        *,
        coalesce_verify: bool = False,
        verify_rounds_in_flight: int = 1,
    ) -> None:
        """`coalesce_verify`: concurrent Verify calls of a tenant share rounds, at most
        `verify_rounds_in_flight` at once (service/coalescing.py)."""
        self._deps = Deps(store, keyring, policy, clock, dict(tenant_policies or {}))
        self._audit_log = AuditLog(store, policy, clock)
        self._coalescer = (
            Coalescer(self._deps.checker, verify_rounds_in_flight) if coalesce_verify else None
        )

    @property
    def policy(self) -> Policy:
        """The global policy (a tenant's own: `policies.for_tenant`)."""
        return self._deps.policy

    @property
    def policies(self) -> Policies:
        return self._deps.policies

    @property
    def deps(self) -> Deps:
        """The parts the service runs on (tests and benchmarks reach the store and the
        engine through them)."""
        return self._deps

    @property
    def coalescer(self) -> Coalescer | None:
        """Where concurrent Verify calls meet (None: coalescing is off)."""
        return self._coalescer

    @property
    def audit(self) -> AuditLog:
        """The audit trail: denied calls' events (the rpc layer), ListAuditEvents."""
        return self._audit_log

    def _audit(
        self, method: str, tenant: str, request_id: str | None = None
    ) -> AuditContext | None:
        """The call's audit context, read here at the entry, in the tenant the call
        acts in (None: audit turned off)."""
        if not self._deps.policy.audit_enabled:
            return None
        return AuditContext.of_call(method, request_id, tenant=tenant)

    def ping(self) -> None:
        """Return if the store answers now, raise its error if not (the health probe)."""
        self._deps.store.ping()

    def enroll(self, params: EnrollParams, request_id: str | None = None) -> Enrollment:
        tenant = current_tenant()
        audit = self._audit("Enroll", tenant, request_id)
        return enrollment.enroll(self._deps, tenant, params, request_id, audit)

    def confirm(
        self,
        account_id: str,
        factor_id: str,
        code: str,
        request_id: str | None = None,
        caller: str | None = None,
    ) -> tuple[VerifyOutcome, Factor]:
        tenant = current_tenant()
        audit = self._audit("ConfirmEnrollment", tenant, request_id)
        return enrollment.confirm(
            self._deps, tenant, account_id, factor_id, code, request_id, caller, audit
        )

    def verify(self, item: VerifyItem, caller: str | None = None) -> VerifyOutcome:
        tenant = current_tenant()
        audit = self._audit("Verify", tenant)
        return verifying.verify(self._deps, tenant, item, caller, audit, self._coalescer)

    async def verify_on_loop(self, item: VerifyItem, caller: str | None = None) -> VerifyOutcome:
        """`verify` as a coroutine on the rpc layer's event loop, waiting for its
        round without a thread (needs coalescing on: `coalescer`)."""
        coalescer = self._coalescer
        if coalescer is None:
            raise RuntimeError("verify_on_loop needs coalesce_verify")
        tenant = current_tenant()
        audit = self._audit("Verify", tenant)
        return await verifying.verify_on_loop(tenant, item, caller, audit, coalescer)

    def check_batch_size(self, count: int) -> None:
        """BATCH_TOO_LARGE, the one error that fails a whole batch, before any work."""
        verifying.check_batch_size(self._deps.policies.for_tenant(current_tenant()), count)

    def verify_batch(
        self, items: Sequence[VerifyItem], caller: str | None = None
    ) -> list[VerifyOutcome | TotpdError]:
        """Each item as `verify` would answer it; item errors stay per item."""
        tenant = current_tenant()
        audit = self._audit("BatchVerify", tenant)
        return verifying.verify_batch(self._deps, tenant, items, caller, audit)

    def disable(
        self,
        account_id: str,
        factor_id: str | None,
        code: str | None,
        force: bool,
        request_id: str | None = None,
        caller: str | None = None,
    ) -> tuple[VerifyOutcome, list[Factor]]:
        tenant = current_tenant()
        audit = self._audit("Disable", tenant, request_id)
        return disabling.disable(
            self._deps, tenant, account_id, factor_id, code, force, request_id, caller, audit
        )

    def get_factor(self, account_id: str, factor_id: str) -> Factor:
        return factors.get_factor(self._deps, current_tenant(), account_id, factor_id)

    def list_factors(self, account_id: str, include_inactive: bool) -> list[Factor]:
        return factors.list_factors(self._deps, current_tenant(), account_id, include_inactive)

    # -- Unlock and Resync (issue 15) -------------------------------------------

    def unlock(self, account_id: str, factor_id: str | None = None) -> Unlocked:
        """Lift the account's attempt limits (an admin's call); `factor_id`: clear
        only that factor's failures (the account-wide state is cleared either way)."""
        tenant = current_tenant()
        found = unlocking.unlock_account(
            self._deps.store,
            self._deps.clock,
            tenant,
            account_id,
            factor_id,
            self._audit("Unlock", tenant),
        )
        return unlocking.unlocked(found, self._deps.now())

    def resync(
        self,
        account_id: str,
        factor_id: str,
        code1: str,
        code2: str,
        caller: str | None = None,
    ) -> tuple[VerifyOutcome, Factor]:
        """Measure the factor's drift from two consecutive codes (mfa/resync.py)."""
        tenant = current_tenant()
        audit = self._audit("Resync", tenant)
        return resync.resync(
            self._deps, tenant, account_id, factor_id, (code1, code2), caller, audit
        )

    # -- recovery codes (service/mfa/recovery.py) --

    def generate_recovery_codes(self, account_id: str) -> recovery.NewRecoveryCodes:
        tenant = current_tenant()
        audit = self._audit("GenerateRecoveryCodes", tenant)
        return recovery.generate(self._deps, tenant, account_id, audit)

    def verify_recovery_code(
        self, account_id: str, code: str, caller: str | None = None
    ) -> recovery.RecoveryVerdict:
        tenant = current_tenant()
        audit = self._audit("VerifyRecoveryCode", tenant)
        return recovery.verify(self._deps, tenant, account_id, code, caller, audit)

    def recovery_codes_status(self, account_id: str) -> RecoveryStatus:
        return recovery.status(self._deps, current_tenant(), account_id)
