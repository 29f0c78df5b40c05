"""ListAuditEvents: filters on the wire, events decoded, paging helpers."""

from __future__ import annotations

from datetime import UTC, datetime

from fake_totpd import FakeTotpd, serving

from totpd_client import AuditEvent, ErrorReason, TotpdClient, VerifyResult
from totpd_client.v1 import audit_pb2, errors_pb2, factor_pb2

T0 = 1_764_662_400_123_456  # 2025-12-02 08:00:00.123456 UTC, in µs


def events(n: int) -> list[audit_pb2.AuditEvent]:
    return [
        audit_pb2.AuditEvent(
            event_id=i + 1,
            time_unix_micros=T0 + i,
            caller="payments",
            tenant="shop",
            method="Verify",
            account_id=f"user-{i}",
            verify_result=factor_pb2.VERIFY_RESULT_VALID,
            status_code="OK",
            peer="ipv4:127.0.0.1:4242",
        )
        for i in range(n)
    ]


def test_filters_are_sent_and_an_event_is_decoded() -> None:
    denied = audit_pb2.AuditEvent(
        event_id=7,
        time_unix_micros=T0,
        caller="console",
        method="Enroll",
        error_reason=errors_pb2.ERROR_REASON_PERMISSION_DENIED,
        status_code="PERMISSION_DENIED",
    )
    fake = FakeTotpd(audit_events=[denied])
    since = datetime(2025, 12, 1, tzinfo=UTC)
    with serving(fake) as target, TotpdClient(target, insecure=True) as c:
        page = c.list_audit_events(
            tenant="shop",
            account_id="alice",
            caller="console",
            method="Enroll",
            since=since,
            until=datetime(2025, 12, 3),  # naive: UTC
            page_size=10,
        )
    req = fake.received[0].request
    assert (req.tenant, req.account_id, req.caller, req.method) == (
        "shop",
        "alice",
        "console",
        "Enroll",
    )
    assert req.start_time_unix_micros == 1_764_547_200_000_000
    assert req.end_time_unix_micros == 1_764_720_000_000_000
    assert req.page_size == 10
    assert page.next_page_token == ""
    (event,) = page.events
    assert event == AuditEvent(
        event_id=7,
        time=datetime(2025, 12, 2, 8, 0, 0, 123456, tzinfo=UTC),
        caller="console",
        tenant="",
        method="Enroll",
        account_id="",
        factor_id="",
        verify_result=VerifyResult.UNSPECIFIED,
        error_reason=ErrorReason.PERMISSION_DENIED,
        status_code="PERMISSION_DENIED",
        step_offset=0,
        request_id="",
        peer="",
    )


def test_iter_follows_the_page_tokens_with_the_same_filters() -> None:
    fake = FakeTotpd(audit_events=events(25))
    with serving(fake) as target, TotpdClient(target, insecure=True) as c:
        got = list(c.iter_audit_events(page_size=10, method="Verify"))
    assert [e.event_id for e in got] == list(range(1, 26))
    assert [r.request.page_token for r in fake.received] == ["", "10", "20"]
    assert {r.request.method for r in fake.received} == {"Verify"}


def test_iter_stops_at_the_limit_without_fetching_more() -> None:
    fake = FakeTotpd(audit_events=events(250))
    with serving(fake) as target, TotpdClient(target, insecure=True) as c:
        got = list(c.iter_audit_events(limit=120))
    assert [e.event_id for e in got] == list(range(1, 121))
    assert [r.request.page_size for r in fake.received] == [100, 20]
