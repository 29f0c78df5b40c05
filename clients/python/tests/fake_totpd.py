"""An in-process TotpService that answers from a script and records what it received.

For what a real totpd cannot be made to do on demand: fail an attempt with
UNAVAILABLE or OVERLOADED, attach a google.rpc.RetryInfo, answer a new reason,
and for rendering checks with fixed answers (recovery codes, unlock, resync).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from totpd_client.v1 import (
    audit_pb2,
    factor_pb2,
    lifecycle_pb2,
    totp_service_pb2,
    totp_service_pb2_grpc,
)

RECOVERY_CODES = [f"k7q2-9xmf-w{i:03d}" for i in range(10)]
GENERATED_AT = 1_764_662_400  # 2025-12-02T08:00:00Z


@dataclass(frozen=True)
class Fail:
    """One scripted failure: a status with a totpd ErrorInfo and maybe a RetryInfo."""

    code: grpc.StatusCode
    reason: str = ""
    retry_after: float | None = None


def status_details(
    code: grpc.StatusCode, reason: str, message: str, retry_after: float | None
) -> bytes:
    """A serialized google.rpc.Status as totpd sends it in grpc-status-details-bin."""
    details = []
    if reason:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(domain="totpd.v1", reason=reason))
        details.append(info)
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(retry_after * 1e9))
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    return status_pb2.Status(
        code=code.value[0], message=message, details=details
    ).SerializeToString()


@dataclass
class Received:
    method: str
    request: Any
    at: float  # time.monotonic() on arrival
    metadata: dict[str, str] = field(default_factory=dict)  # the call's metadata


@dataclass
class FakeTotpd(totp_service_pb2_grpc.TotpServiceServicer):
    """Pops one scripted `Fail` per call while the script lasts, then succeeds."""

    script: list[Fail] = field(default_factory=list)
    outcome: factor_pb2.VerifyOutcome = field(
        default_factory=lambda: factor_pb2.VerifyOutcome(result=factor_pb2.VERIFY_RESULT_VALID)
    )
    received: list[Received] = field(default_factory=list)
    audit_events: list[audit_pb2.AuditEvent] = field(default_factory=list)
    recovery_status: lifecycle_pb2.RecoveryCodesStatus = field(
        default_factory=lambda: lifecycle_pb2.RecoveryCodesStatus(
            remaining=9, issued=10, generated_at_unix=GENERATED_AT
        )
    )
    unlocked: lifecycle_pb2.UnlockResponse = field(
        default_factory=lambda: lifecycle_pb2.UnlockResponse(
            lock_lifted=True, consecutive_failures_cleared=10, factors_cleared=1
        )
    )
    drift_steps: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _answer(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        with self._lock:
            metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            self.received.append(Received(method, request, time.monotonic(), metadata))
            fail = self.script.pop(0) if self.script else None
        if fail is not None:
            message = f"scripted {fail.code.name}"
            context.set_trailing_metadata(
                (
                    (
                        "grpc-status-details-bin",
                        status_details(fail.code, fail.reason, message, fail.retry_after),
                    ),
                )
            )
            context.abort(fail.code, message)

    def _factor(self, request: Any) -> factor_pb2.Factor:
        # A new id per attempt, so a test can tell which attempt answered.
        return factor_pb2.Factor(
            factor_id=f"factor-{len(self.received)}",
            account_id=request.account_id,
            state=factor_pb2.FACTOR_STATE_PENDING,
            drift_steps=self.drift_steps,
        )

    def Enroll(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer("Enroll", request, context)
        return totp_service_pb2.EnrollResponse(factor=self._factor(request))

    def ConfirmEnrollment(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer("ConfirmEnrollment", request, context)
        return totp_service_pb2.ConfirmEnrollmentResponse(
            outcome=self.outcome, factor=self._factor(request)
        )

    def Verify(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer("Verify", request, context)
        return totp_service_pb2.VerifyResponse(outcome=self.outcome)

    def Disable(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer("Disable", request, context)
        return totp_service_pb2.DisableResponse(outcome=self.outcome)

    def GetFactor(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer("GetFactor", request, context)
        return totp_service_pb2.GetFactorResponse(factor=self._factor(request))

    def ListFactors(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer("ListFactors", request, context)
        active = factor_pb2.Factor(
            factor_id="f-1",
            account_id=request.account_id,
            label="Pixel 8",
            issuer="totpd",
            algorithm=factor_pb2.ALGORITHM_SHA1,
            digits=6,
            period_seconds=30,
            state=factor_pb2.FACTOR_STATE_ACTIVE,
            drift_steps=self.drift_steps,
        )
        return totp_service_pb2.ListFactorsResponse(
            factors=[active], recovery_codes=self.recovery_status
        )

    def GenerateRecoveryCodes(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer("GenerateRecoveryCodes", request, context)
        status = lifecycle_pb2.RecoveryCodesStatus(
            remaining=len(RECOVERY_CODES),
            issued=len(RECOVERY_CODES),
            generated_at_unix=GENERATED_AT,
        )
        return lifecycle_pb2.GenerateRecoveryCodesResponse(codes=RECOVERY_CODES, status=status)

    def VerifyRecoveryCode(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer("VerifyRecoveryCode", request, context)
        return lifecycle_pb2.VerifyRecoveryCodeResponse(
            outcome=self.outcome, status=self.recovery_status
        )

    def Unlock(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer("Unlock", request, context)
        return self.unlocked

    def Resync(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer("Resync", request, context)
        return lifecycle_pb2.ResyncResponse(outcome=self.outcome, factor=self._factor(request))

    def ListAuditEvents(self, request: Any, context: grpc.ServicerContext) -> Any:
        """`audit_events` paged as the server does: offset tokens, 100 per page by default."""
        self._answer("ListAuditEvents", request, context)
        start = int(request.page_token or 0)
        end = start + (request.page_size or 100)
        more = end < len(self.audit_events)
        return audit_pb2.ListAuditEventsResponse(
            events=self.audit_events[start:end], next_page_token=str(end) if more else ""
        )


@contextmanager
def serving(fake: FakeTotpd) -> Iterator[str]:
    """Serves `fake` on a free loopback port; yields HOST:PORT."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    totp_service_pb2_grpc.add_TotpServiceServicer_to_server(fake, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
