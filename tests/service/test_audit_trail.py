"""The audit trail on both databases: one event per decided code and state change, in
the transaction of what it describes; a failed audit write fails the call and stores
nothing; no event holds a secret or a code."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.audit_rows import events, verdict_events
from tests.conftest import Clock
from tests.enrollments import enroll_active, wrong_for_all
from tests.service.conftest import results_of
from tests.totp_oracle import code_at, wrong_code
from totpd import calls
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.purging import Purger
from totpd.service.types import EnrollParams, VerifyItem, VerifyOutcome, VerifyResult
from totpd.store import FactorStore
from totpd.store.errors import StoreInternalError

SCOPE = calls.CallScope("login-backend", "shop", "ipv4:127.0.0.1:5000", "Verify")


def audit_calls(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM audit_calls")).scalar_one())


@contextmanager
def refusing_audit_writes(engine: Engine, table: str = "audit_events") -> Iterator[None]:
    """A trigger that makes every insert into `table` fail: the database's own refusal."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    f"CREATE TRIGGER audit_refused BEFORE INSERT ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE OR REPLACE FUNCTION audit_refused() RETURNS trigger "
                    "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$"
                )
            )
            connection.execute(
                text(
                    f"CREATE TRIGGER audit_refused BEFORE INSERT ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION audit_refused()"
                )
            )
    try:
        yield
    finally:
        with engine.begin() as connection:
            if engine.dialect.name == "sqlite":
                connection.execute(text("DROP TRIGGER audit_refused"))
            else:
                connection.execute(text(f"DROP TRIGGER audit_refused ON {table}"))
                connection.execute(text("DROP FUNCTION audit_refused()"))


@pytest.mark.usefixtures("audit_writes")  # INSERTed and COPYed (tests/conftest.py)
def test_a_mixed_run_has_one_event_per_verdict_and_state_change(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    other = account_id + "-b"
    with calls.scoped(SCOPE):
        first = enroll_active(service, clock, account_id, "phone")
        second = enroll_active(service, clock, other, "phone")
        returned: list[tuple[str, str, VerifyResult]] = []

        def verify(account: str, code: str) -> None:
            outcome = service.verify(VerifyItem(account, code))
            returned.append(("Verify", account, outcome.result))

        right = code_at(first, clock.now)
        verify(account_id, right)  # VALID
        verify(account_id, right)  # REPLAYED
        verify(account_id, wrong_code(right))  # INVALID
        for _ in range(12):  # INVALID, then LOCKED by the backoff and the lock
            verify(other, wrong_for_all([second], clock.now))
        items = [
            VerifyItem(account_id, wrong_code(right)),
            VerifyItem(other, "123456"),
            VerifyItem("nobody-" + account_id, "123456"),  # ACCOUNT_NOT_FOUND: no event
            VerifyItem(account_id, "12"),  # malformed: no event
        ]
        for item, result in zip(items, service.verify_batch(items), strict=True):
            if isinstance(result, VerifyOutcome):
                returned.append(("BatchVerify", item.account_id, result.result))
        clock.advance(30)
        outcome, disabled = service.disable(
            account_id, None, code_at(first, clock.now), force=False
        )
        assert outcome.result is VerifyResult.VALID and len(disabled) == 1
        returned.append(("Disable", account_id, VerifyResult.VALID))
        service.disable(other, None, None, force=True)
    stored = events(engine)
    verdicts = [
        (e["method"], e["account_id"], VerifyResult[e["verify_result"]])
        for e in stored
        if e["verify_result"] is not None and e["method"] != "ConfirmEnrollment"
    ]
    assert Counter(verdicts) == Counter(returned)
    assert len(verdicts) == len(returned)
    # Two enrollments, their confirmations, two factors disabled.
    changes = Counter((e["method"], e["verify_result"]) for e in stored)
    assert changes[("Enroll", None)] == 2
    assert changes[("ConfirmEnrollment", "VALID")] == 2
    assert changes[("Disable", None)] == 2
    assert {e["caller"] for e in stored} == {"login-backend"}
    assert {e["tenant"] for e in stored} == {"shop"}
    assert {e["peer"] for e in stored} == {"ipv4:127.0.0.1:5000"}
    assert all(e["status_code"] == "OK" for e in stored)
    valid = [e for e in stored if e["verify_result"] == "VALID" and e["method"] == "Verify"]
    assert valid[0]["factor_id"] == first.factor.factor_id
    assert valid[0]["step_offset"] == 0
    assert len(stored) == len(returned) + 6
    # No column of any event holds a secret, a code or an otpauth URI.
    forbidden = {first.secret_base32, second.secret_base32, first.otpauth_uri, right}
    forbidden |= {code_at(e, clock.now + d) for e in (first, second) for d in range(-90, 91, 30)}
    for event in stored:
        for value in event.values():
            if isinstance(value, str):
                assert not any(secret in value for secret in forbidden), event


@pytest.mark.usefixtures("audit_writes")  # INSERTed and COPYed (tests/conftest.py)
@pytest.mark.parametrize("table", ["audit_calls", "audit_events"])
def test_a_failed_audit_write_fails_the_call_and_stores_no_verdict(
    engine: Engine, service: MfaService, clock: Clock, account_id: str, table: str
) -> None:
    enrollment = enroll_active(service, clock, account_id)
    before = events(engine)
    calls_before = audit_calls(engine)
    code = code_at(enrollment, clock.now)
    store = service.deps.store
    with refusing_audit_writes(engine, table):
        for call in (
            lambda: service.verify(VerifyItem(account_id, code)),
            lambda: service.verify(VerifyItem(account_id, wrong_code(code))),
            lambda: service.verify_batch([VerifyItem(account_id, code)]),
            lambda: service.enroll(EnrollParams(account_id, "second")),
            lambda: service.disable(account_id, None, None, force=True),
        ):
            with pytest.raises(StoreInternalError):
                call()
    factor = store.get(enrollment.factor.factor_id)
    assert factor is not None and factor.failed_attempts == 0
    assert factor.state.value == "active"
    assert len(store.list_for_account(account_id, tuple(factor.state.__class__), now=0)) == 1
    assert events(engine) == before
    assert audit_calls(engine) == calls_before  # no call row without its events
    # The code was not consumed: it verifies now, with its event.
    assert service.verify(VerifyItem(account_id, code)).result is VerifyResult.VALID
    assert len(events(engine)) == len(before) + 1


def test_a_locked_round_writes_its_events_with_its_verdicts(
    engine: Engine,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A conflict sends the round to its locked form: still one event per verdict."""
    from tests.store.conftest import interleave_after_read

    enrollment = enroll_active(service, clock, account_id)
    code = code_at(enrollment, clock.now)
    before = len(events(engine))

    def other_attempt() -> None:
        service.verify(VerifyItem(account_id, wrong_code(code)))

    locked = interleave_after_read(service, monkeypatch, other_attempt)
    assert service.verify(VerifyItem(account_id, code)).result is VerifyResult.VALID
    assert locked[0] == 1
    added = events(engine)[before:]
    assert sorted(e["verify_result"] for e in added) == ["INVALID", "VALID"]


def test_threads_verifying_at_once_write_one_event_each(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    accounts = [f"{account_id}-{n}" for n in range(8)]
    enrollments = [enroll_active(service, clock, account) for account in accounts]
    before = len(verdict_events(engine))
    barrier = threading.Barrier(len(accounts))
    results: list[VerifyResult] = []

    def attempt(index: int) -> None:
        barrier.wait(timeout=30)
        code = code_at(enrollments[index], clock.now)
        results.append(service.verify(VerifyItem(accounts[index], code)).result)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(len(accounts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [VerifyResult.VALID] * len(accounts)
    assert len(verdict_events(engine)) - before == len(accounts)


@pytest.mark.usefixtures("audit_writes")  # INSERTed and COPYed (tests/conftest.py)
def test_batches_at_once_write_one_event_per_item_under_their_own_call(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    batches = [[f"{account_id}-{t}-{n}" for n in range(3)] for t in range(4)]
    enrollments = {a: enroll_active(service, clock, a) for batch in batches for a in batch}
    before = len(verdict_events(engine))
    barrier = threading.Barrier(len(batches))
    results: list[object] = []

    def attempt(batch: list[str]) -> None:
        barrier.wait(timeout=30)
        items = [VerifyItem(a, code_at(enrollments[a], clock.now)) for a in batch]
        results.extend(results_of(service.verify_batch(items)))

    threads = [threading.Thread(target=attempt, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [VerifyResult.VALID] * len(enrollments)
    added = verdict_events(engine)[before:]
    assert sorted(e["account_id"] for e in added) == sorted(enrollments)
    # Each batch's events share one call row, and no two batches share one.
    call_of = {e["account_id"]: e["call_id"] for e in added}
    assert [len({call_of[a] for a in batch}) for batch in batches] == [1] * len(batches)
    assert len(set(call_of.values())) == len(batches)


def test_audit_off_writes_no_event(
    engine: Engine, keyring: Any, clock: Clock, account_id: str
) -> None:
    service = MfaService(FactorStore(engine), keyring, Policy(audit_enabled=False), clock)
    enrollment = enroll_active(service, clock, account_id)
    service.verify_batch([VerifyItem(account_id, code_at(enrollment, clock.now))])
    service.audit.record_denied(SCOPE, "Verify", ErrorReason.PERMISSION_DENIED, account_id)
    assert events(engine) == []


def test_a_denied_call_is_recorded_alone(engine: Engine, service: MfaService) -> None:
    service.audit.record_denied(SCOPE, "Disable", ErrorReason.PERMISSION_DENIED, "alice")
    service.audit.record_denied(
        calls.CallScope("", "", "ipv4:10.0.0.9:1"), "Verify", ErrorReason.UNAUTHENTICATED
    )
    (denied, unknown) = events(engine)
    assert denied["error_reason"] == "PERMISSION_DENIED"
    assert denied["status_code"] == "PERMISSION_DENIED"
    assert (denied["caller"], denied["tenant"], denied["method"]) == (
        "login-backend",
        "shop",
        "Disable",
    )
    assert denied["account_id"] == "alice" and denied["verify_result"] is None
    assert unknown["status_code"] == "UNAUTHENTICATED" and unknown["peer"] == "ipv4:10.0.0.9:1"


def test_retention_prunes_old_events_in_batches(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    policy = Policy(audit_retention_days=1)
    enrollment = enroll_active(service, clock, account_id)
    for _ in range(5):
        service.verify(VerifyItem(account_id, wrong_code(code_at(enrollment, clock.now))))
        clock.advance(30)
    old = len(events(engine))
    clock.advance(2 * 86400)
    service.verify(VerifyItem(account_id, code_at(enrollment, clock.now)))
    purger = Purger(service.deps.store, policy, clock, interval=3600, batch=2, pause=0)
    report = purger.run_once()
    assert report.audit_events == old
    (left,) = events(engine)
    assert left["verify_result"] == "VALID"
    assert audit_calls(engine) == 1  # the pruned events' calls went with them
    assert purger.run_once().audit_events == 0


def test_an_error_that_decides_nothing_writes_no_event(
    engine: Engine, service: MfaService, account_id: str
) -> None:
    with pytest.raises(TotpdError):
        service.verify(VerifyItem(account_id, "123456"))  # no such account
    with pytest.raises(TotpdError):
        service.verify(VerifyItem(account_id, "12x456"))  # malformed
    assert events(engine) == []


def test_a_named_caller_lists_only_its_tenants_events(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    from totpd.service.audit import AuditQuery

    bank = calls.CallScope("teller", "bank", "ipv4:10.0.0.2:1")
    with calls.scoped(SCOPE):
        enroll_active(service, clock, account_id)
    with calls.scoped(bank):
        enroll_active(service, clock, account_id + "-bank")
        seen, _ = service.audit.list_events(AuditQuery())
        assert {record.row.tenant for record in seen} == {"bank"} and len(seen) == 2
        with pytest.raises(TotpdError) as refused:
            service.audit.list_events(AuditQuery(tenant="shop"))
        assert refused.value.reason is ErrorReason.PERMISSION_DENIED
    # A caller holding several tenants (CallScope.tenants, set by the rpc layer) reads
    # all of them, whichever its call acts in.
    with calls.scoped(calls.CallScope("auditor", "card", tenants=("bank", "card", "shop"))):
        seen, _ = service.audit.list_events(AuditQuery())
        assert {record.row.tenant for record in seen} == {"shop", "bank"}
    with calls.scoped(calls.CallScope("auditor", "card", tenants=("bank", "card"))):
        seen, _ = service.audit.list_events(AuditQuery(tenant="bank"))
        assert {record.row.tenant for record in seen} == {"bank"}
        with pytest.raises(TotpdError) as refused:
            service.audit.list_events(AuditQuery(tenant="shop"))
        assert refused.value.reason is ErrorReason.PERMISSION_DENIED
    everything, _ = service.audit.list_events(AuditQuery())  # the local caller sees all
    assert {record.row.tenant for record in everything} == {"shop", "bank"}


def test_items_answered_locked_without_a_round_of_their_own_get_events(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    phone = enroll_active(service, clock, account_id)
    wrong = wrong_for_all([phone], clock.now)
    for _ in range(3):  # the backoff starts: the factor is blocked for a while
        service.verify(VerifyItem(account_id, wrong))
    before = len(verdict_events(engine))
    results = service.verify_batch([VerifyItem(account_id, wrong)] * 4)
    assert [r.result for r in results if isinstance(r, VerifyOutcome)] == [VerifyResult.LOCKED] * 4
    added = verdict_events(engine)[before:]
    assert [(e["method"], e["verify_result"]) for e in added] == [("BatchVerify", "LOCKED")] * 4


@pytest.mark.usefixtures("audit_writes")  # INSERTed and COPYed (tests/conftest.py)
def test_account_ids_with_json_syntax_reach_their_rows_and_events_intact(
    engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    # A round binds its keys, writes and events as JSON text: an id made of
    # JSON's own syntax must reach its own rows, not break or cross the text.
    accounts = [f'{account_id}-"q', f"{account_id}-\\b", f"{account_id}-],[x}}", '{"a":1}']
    enrollments = {a: enroll_active(service, clock, a) for a in accounts}
    before = len(verdict_events(engine))
    right = {a: code_at(enrollments[a], clock.now) for a in accounts}
    items = [VerifyItem(accounts[0], right[accounts[0]])]
    items += [VerifyItem(a, wrong_code(right[a])) for a in accounts[1:]]
    assert (
        results_of(service.verify_batch(items)) == [VerifyResult.VALID] + [VerifyResult.INVALID] * 3
    )
    added = verdict_events(engine)[before:]
    assert [(e["account_id"], e["verify_result"]) for e in added] == [
        (a, "VALID" if a == accounts[0] else "INVALID") for a in accounts
    ]
    # Each failure was counted on its own account, the success's step on its factor.
    again = service.verify_batch([VerifyItem(a, wrong_code(right[a])) for a in accounts[1:]])
    left = service.policy.lock_after_failures - 2
    assert [o.attempts_left for o in again if isinstance(o, VerifyOutcome)] == [left] * 3
    replay = service.verify(VerifyItem(accounts[0], right[accounts[0]]))
    assert replay.result is VerifyResult.REPLAYED
