"""ListAuditEvents between proto messages and the service's audit values."""

from __future__ import annotations

from totpd.rpc.status import proto_reason
from totpd.service.audit import AuditQuery
from totpd.service.errors import ErrorReason
from totpd.service.types import VerifyResult
from totpd.store.audit import AuditRecord
from totpd.v1 import audit_pb2, factor_pb2

_RESULTS = {
    VerifyResult.VALID: factor_pb2.VERIFY_RESULT_VALID,
    VerifyResult.INVALID: factor_pb2.VERIFY_RESULT_INVALID,
    VerifyResult.REPLAYED: factor_pb2.VERIFY_RESULT_REPLAYED,
    VerifyResult.LOCKED: factor_pb2.VERIFY_RESULT_LOCKED,
}


def audit_query(request: audit_pb2.ListAuditEventsRequest) -> AuditQuery:
    return AuditQuery(
        tenant=request.tenant,
        account_id=request.account_id,
        caller=request.caller,
        method=request.method,
        start_us=request.start_time_unix_micros,
        end_us=request.end_time_unix_micros,
        page_size=request.page_size,
        page_token=request.page_token,
    )


def audit_event_to_proto(record: AuditRecord) -> audit_pb2.AuditEvent:
    row = record.row
    event = audit_pb2.AuditEvent(
        event_id=record.event_id,
        time_unix_micros=row.time_us,
        caller=row.caller,
        tenant=row.tenant,
        method=row.method,
        account_id=row.account_id,
        factor_id=row.factor_id or "",
        status_code=row.status_code,
        step_offset=row.step_offset or 0,
        request_id=row.request_id or "",
        peer=row.peer,
    )
    if row.verify_result is not None:
        event.verify_result = _RESULTS[VerifyResult[row.verify_result]]
    if row.error_reason is not None and row.error_reason in ErrorReason.__members__:
        event.error_reason = proto_reason(ErrorReason[row.error_reason])
    return event
