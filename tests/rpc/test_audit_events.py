"""ListAuditEvents on a real server: the events of a flow, filters, paging (also while
events are appended), and the refusals of a bad page size or token."""

from __future__ import annotations

import threading
import time

import grpc

from tests.rpc.conftest import Secrets
from tests.rpc.harness import LiveServer, activate, call_fails
from totpd.v1 import audit_pb2, factor_pb2
from totpd.v1 import totp_service_pb2 as pb


def list_all(live: LiveServer, **filters: object) -> list[audit_pb2.AuditEvent]:
    request = audit_pb2.ListAuditEventsRequest(**filters)  # type: ignore[arg-type]
    found: list[audit_pb2.AuditEvent] = []
    for _ in range(10_000):
        page = live.stub.ListAuditEvents(request, timeout=10)
        found.extend(page.events)
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token
    raise AssertionError("paging did not end")


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def test_a_flow_is_listed_oldest_first(live: LiveServer, secrets_seen: Secrets) -> None:
    enrolled = activate(live, secrets_seen, "alice")
    code = enrolled.code(1)
    live.stub.Verify(pb.VerifyRequest(account_id="alice", code=wrong(code)), timeout=10)
    events = list_all(live)
    assert [e.method for e in events] == ["Enroll", "ConfirmEnrollment", "Verify"]
    assert [e.event_id for e in events] == sorted(e.event_id for e in events)
    enroll, confirm, verify = events
    assert enroll.verify_result == factor_pb2.VERIFY_RESULT_UNSPECIFIED
    assert confirm.verify_result == factor_pb2.VERIFY_RESULT_VALID
    assert verify.verify_result == factor_pb2.VERIFY_RESULT_INVALID
    assert enroll.factor_id == confirm.factor_id == enrolled.factor.factor_id
    assert verify.factor_id == ""  # an account-wide INVALID names no factor
    assert {e.caller for e in events} == {"local"} and {e.tenant for e in events} == {"default"}
    assert {e.status_code for e in events} == {"OK"}
    assert abs(verify.time_unix_micros / 1e6 - time.time()) < 60


def test_filters_select_their_events(live: LiveServer, secrets_seen: Secrets) -> None:
    activate(live, secrets_seen, "alice")
    middle = int(time.time() * 1e6)
    time.sleep(0.01)
    activate(live, secrets_seen, "bob")
    assert {e.account_id for e in list_all(live, account_id="bob")} == {"bob"}
    assert len(list_all(live, method="Enroll")) == 2
    assert len(list_all(live, caller="local")) == 4
    assert list_all(live, caller="someone-else") == []
    assert {e.account_id for e in list_all(live, start_time_unix_micros=middle)} == {"bob"}
    assert {e.account_id for e in list_all(live, end_time_unix_micros=middle)} == {"alice"}
    assert len(list_all(live, tenant="default")) == 4
    assert list_all(live, tenant="shop") == []


def test_pages_hold_every_event_once_while_events_are_appended(
    live: LiveServer, secrets_seen: Secrets
) -> None:
    enrolled = activate(live, secrets_seen, "alice")
    bad = wrong(enrolled.code())
    for _ in range(3):
        live.stub.Verify(pb.VerifyRequest(account_id="alice", code=bad), timeout=10)
    stop = threading.Event()

    def append() -> None:  # INVALID, then LOCKED: an event per call, until stopped
        while not stop.is_set():
            live.stub.Verify(pb.VerifyRequest(account_id="alice", code=bad), timeout=10)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        paged = list_all(live, page_size=2)
    finally:
        stop.set()
        writer.join(timeout=30)
    ids = [e.event_id for e in paged]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    everything = [e.event_id for e in list_all(live, page_size=1000)]
    assert ids == everything[: len(ids)]  # no event skipped or repeated


def test_bad_page_sizes_and_tokens_are_refused(live: LiveServer, secrets_seen: Secrets) -> None:
    activate(live, secrets_seen, "alice")
    stub = live.stub
    refused = call_fails(stub.ListAuditEvents, audit_pb2.ListAuditEventsRequest(page_size=1001))
    assert refused.code is grpc.StatusCode.INVALID_ARGUMENT
    assert refused.reason == "ERROR_REASON_INVALID_ARGUMENT"
    assert refused.metadata.get("field") == "page_size"
    for token in ("garbage", "eyJhZnRlciI6ICJ4In0", "%%%"):
        refused = call_fails(
            stub.ListAuditEvents, audit_pb2.ListAuditEventsRequest(page_token=token)
        )
        assert refused.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in refused.message
    first = stub.ListAuditEvents(audit_pb2.ListAuditEventsRequest(page_size=1), timeout=10)
    assert len(first.events) == 1 and first.next_page_token
    refused = call_fails(
        stub.ListAuditEvents,
        audit_pb2.ListAuditEventsRequest(
            page_size=1, page_token=first.next_page_token, account_id="bob"
        ),
    )
    assert refused.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "other filters" in refused.message
    # The same filters and another page size: the token holds.
    rest = stub.ListAuditEvents(
        audit_pb2.ListAuditEventsRequest(page_size=5, page_token=first.next_page_token),
        timeout=10,
    )
    assert [e.method for e in rest.events] == ["ConfirmEnrollment"]
    assert rest.next_page_token == ""
