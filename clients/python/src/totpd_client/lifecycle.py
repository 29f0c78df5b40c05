"""The MFA lifecycle calls of :class:`totpd_client.TotpdClient`: recovery codes, unlock, resync."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .retries import RetryPolicy, refused_before_work, retryable
from .types import (
    Factor,
    MfaStatus,
    RecoveryCodes,
    RecoveryCodesStatus,
    RecoveryCodeVerification,
    ResyncResult,
    UnlockResult,
    VerifyOutcome,
)
from .v1 import lifecycle_pb2, totp_service_pb2

T = TypeVar("T")


class LifecycleCalls:
    """Mixed into :class:`TotpdClient`, which provides the stub and the retrying call."""

    _stub: Any  # totp_service_pb2_grpc.TotpServiceStub (generated untyped)

    def _call(
        self,
        method: Callable[..., T],
        request: Any,
        timeout: float | None,
        retry: RetryPolicy = retryable,
    ) -> T:
        raise NotImplementedError

    def generate_recovery_codes(
        self, account_id: str, *, timeout: float | None = None
    ) -> RecoveryCodes:
        """Issues a new set of single-use recovery codes, replacing any earlier set.

        The account needs an ACTIVE factor. The response is the only copy of the
        codes: show them to the user once. Retried only when the server refused
        before any work (OVERLOADED): after an UNAVAILABLE the set may exist, and
        calling again replaces it.
        """
        req = lifecycle_pb2.GenerateRecoveryCodesRequest(account_id=account_id)
        r = self._call(self._stub.GenerateRecoveryCodes, req, timeout, refused_before_work)
        return RecoveryCodes(list(r.codes), RecoveryCodesStatus.from_proto(r.status))

    def verify_recovery_code(
        self, account_id: str, code: str, *, timeout: float | None = None
    ) -> RecoveryCodeVerification:
        """Consumes one recovery code: VALID once, REPLAYED afterwards, INVALID, or LOCKED.

        ``code`` as the user typed it (either case, with or without '-' or spaces);
        wrong codes count toward the account's attempt limits like wrong TOTP codes.
        Retried only on OVERLOADED: a retry after a lost VALID would answer
        REPLAYED for the code just used.
        """
        req = lifecycle_pb2.VerifyRecoveryCodeRequest(account_id=account_id, code=code)
        r = self._call(self._stub.VerifyRecoveryCode, req, timeout, refused_before_work)
        return RecoveryCodeVerification(
            VerifyOutcome.from_proto(r.outcome), RecoveryCodesStatus.from_proto(r.status)
        )

    def unlock(
        self, account_id: str, factor_id: str = "", *, timeout: float | None = None
    ) -> UnlockResult:
        """Clears the account's lock, failure run and budget, and its factors' failures
        (or only ``factor_id``'s). An operator's action: needs the ``admin`` permission.

        Idempotent, so retried like a read; a retry after a lost response reports
        what was left to clear (nothing), not what the first attempt cleared.
        """
        req = lifecycle_pb2.UnlockRequest(account_id=account_id, factor_id=factor_id or "")
        r = self._call(self._stub.Unlock, req, timeout)
        return UnlockResult(
            lock_lifted=r.lock_lifted,
            consecutive_failures_cleared=r.consecutive_failures_cleared,
            factors_cleared=r.factors_cleared,
            budget_refilled=r.budget_refilled,
        )

    def resync(
        self,
        account_id: str,
        factor_id: str,
        code1: str,
        code2: str,
        *,
        timeout: float | None = None,
    ) -> ResyncResult:
        """Measures an ACTIVE factor's clock drift from two consecutive codes of its app.

        VALID stores the drift (``factor.drift_steps``) and consumes both steps;
        INVALID counts one failure; REPLAYED (steps already used) stores no drift.
        Retried only on OVERLOADED: a retry after a lost VALID would answer REPLAYED.
        """
        req = lifecycle_pb2.ResyncRequest(
            account_id=account_id, factor_id=factor_id, code1=code1, code2=code2
        )
        r = self._call(self._stub.Resync, req, timeout, refused_before_work)
        return ResyncResult(VerifyOutcome.from_proto(r.outcome), Factor.from_proto(r.factor))

    def mfa_status(
        self, account_id: str, *, include_inactive: bool = False, timeout: float | None = None
    ) -> MfaStatus:
        """The account's factors (as :meth:`list_factors`) and its recovery codes left."""
        req = totp_service_pb2.ListFactorsRequest(
            account_id=account_id, include_inactive=include_inactive
        )
        r = self._call(self._stub.ListFactors, req, timeout)
        return MfaStatus(
            [Factor.from_proto(f) for f in r.factors],
            RecoveryCodesStatus.from_proto(r.recovery_codes),
        )
