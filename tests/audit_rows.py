"""The audit trail as tests read it: every event joined with its call's row, one
row per event with the columns of the API's AuditEvent (the store splits them
over audit_events and audit_calls)."""

from __future__ import annotations

# A FROM item: `SELECT caller FROM {AUDIT_TRAIL} WHERE method = 'Verify' ORDER BY id`.
AUDIT_TRAIL = (
    "(SELECT audit_events.id AS id, audit_events.call_id AS call_id, time_us, caller, "
    "tenant, method, account_id, factor_id, verify_result, error_reason, status_code, "
    "step_offset, request_id, peer FROM audit_events "
    "JOIN audit_calls ON audit_calls.id = audit_events.call_id) AS audit_trail"
)
# The tables the trail is stored in, for whole-table checks.
AUDIT_TABLES = ("audit_calls", "audit_events")
