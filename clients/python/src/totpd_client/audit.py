"""Audit events as ``TotpdClient.list_audit_events`` returns them: plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .errors import ErrorReason
from .types import VerifyResult
from .v1 import audit_pb2, errors_pb2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime | None) -> int:
    """Unix microseconds of an aware datetime (naive ones are taken as UTC); 0 for None."""
    if moment is None:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _reason(value: int) -> ErrorReason:
    try:
        return ErrorReason.parse(errors_pb2.ErrorReason.Name(value))
    except ValueError:  # a reason newer than this client
        return ErrorReason.UNSPECIFIED


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audited call: who did what to which account, and how it ended.

    Never a secret, a code, an otpauth URI or a token. ``verify_result`` is
    UNSPECIFIED for calls that decided no code, ``error_reason`` UNSPECIFIED for
    calls that succeeded; ``status_code`` is the gRPC code's name ("OK", ...).
    """

    event_id: int
    time: datetime
    caller: str
    tenant: str
    method: str
    account_id: str
    factor_id: str
    verify_result: VerifyResult
    error_reason: ErrorReason
    status_code: str
    step_offset: int
    request_id: str
    peer: str

    @classmethod
    def from_proto(cls, e: audit_pb2.AuditEvent) -> AuditEvent:
        return cls(
            event_id=e.event_id,
            time=_EPOCH + timedelta(microseconds=e.time_unix_micros),
            caller=e.caller,
            tenant=e.tenant,
            method=e.method,
            account_id=e.account_id,
            factor_id=e.factor_id,
            verify_result=VerifyResult(e.verify_result),
            error_reason=_reason(e.error_reason),
            status_code=e.status_code,
            step_offset=e.step_offset,
            request_id=e.request_id,
            peer=e.peer,
        )


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of events, oldest first; ``next_page_token`` is "" on the last page."""

    events: list[AuditEvent]
    next_page_token: str
