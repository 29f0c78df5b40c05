"""Admission by cost over a real server, on SQLite and PostgreSQL: a server whose
item budget is full refuses at once with RESOURCE_EXHAUSTED/OVERLOADED and a
retry delay, before any work (nothing counted), and gets its budget back on every
path. The admitted call is held inside the server by a lock the test takes on
the database's writes, so "full" is a fact, not a race."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import Engine, text

from tests.conftest import Clock
from tests.rpc.conftest import Secrets, make_settings
from tests.rpc.harness import LiveServer, RpcFailure, call_fails, failure, running_server
from tests.totp_oracle import wire_code_at
from totpd.rpc.admission import MAX_RETRY_SECONDS, MIN_RETRY_SECONDS
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb

BUDGET = 1_000  # max_items_in_flight, and max_batch_items: one full batch fills it
CALLS = 12
LOOP_LIMIT = 400  # bounded polls of 50 ms


@pytest.fixture
def policy() -> Policy:
    return Policy(max_batch_items=BUDGET, backoff_base_seconds=0)


@pytest.fixture
def live(tmp_path: Path, policy: Policy, service: MfaService) -> Iterator[LiveServer]:
    settings = replace(make_settings(tmp_path, policy), max_items_in_flight=BUDGET)
    with running_server(settings, service) as server:
        yield server


@contextmanager
def writes_blocked(engine: Engine) -> Iterator[None]:
    """Hold the database's write lock: verification rounds wait inside the server."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        assert database is not None
        connection = sqlite3.connect(database, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            yield
            connection.execute("ROLLBACK")
        finally:
            connection.close()
        return
    with engine.connect() as pg:
        # Reads go on; UPDATE and SELECT ... FOR UPDATE wait.
        pg.execute(text("LOCK TABLE factors IN EXCLUSIVE MODE"))
        yield
        pg.rollback()


def activate(live: LiveServer, clock: Clock, secrets: Secrets, account: str) -> str:
    """An active factor for `account`; returns a wrong code for it."""
    enrolled = live.stub.Enroll(pb.EnrollRequest(account_id=account), timeout=10)
    factor = enrolled.factor
    code = wire_code_at(
        enrolled.secret_base32, factor.algorithm, factor.digits, factor.period_seconds, clock.now
    )
    secrets.add(enrolled.secret_base32, enrolled.otpauth_uri, code)
    confirmed = live.stub.ConfirmEnrollment(
        pb.ConfirmEnrollmentRequest(account_id=account, factor_id=factor.factor_id, code=code),
        timeout=10,
    )
    assert confirmed.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    wrong = "".join(str((int(digit) + 5) % 10) for digit in code)
    secrets.add(wrong)
    return wrong


def full_batch(account: str, code: str) -> pb.BatchVerifyRequest:
    return pb.BatchVerifyRequest(items=[pb.BatchVerifyItem(account_id=account, code=code)] * BUDGET)


def failures_by_account(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT account_id, failed_attempts FROM factors"))
        return {account: failed for account, failed in rows}


def outcome_of(call: Future[Any]) -> RpcFailure | None:
    """None for a call that succeeded, its decoded status otherwise."""
    try:
        call.result()
    except grpc.RpcError as error:
        return failure(error)
    return None


def assert_overloaded(refused: RpcFailure | None) -> None:
    assert refused is not None
    assert refused.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.reason == "ERROR_REASON_OVERLOADED"
    assert refused.retry_delay_seconds is not None
    assert MIN_RETRY_SECONDS <= refused.retry_delay_seconds <= 1.5 * MAX_RETRY_SECONDS


def hold_the_budget(live: LiveServer, request: pb.BatchVerifyRequest) -> Any:
    """Send a batch of the whole budget until the server admits and holds it.

    A probe admitted at the same instant takes budget, and the batch is then
    refused (correctly): send it again. Bounded."""
    probe = pb.VerifyRequest(account_id="nobody-probe", code="000000")
    for _ in range(LOOP_LIMIT):
        held = live.stub.BatchVerify.future(request, timeout=30)
        while not held.done():
            try:
                live.stub.Verify(probe, timeout=10)
            except grpc.RpcError as error:
                if failure(error).reason == "ERROR_REASON_OVERLOADED":
                    return held
            time.sleep(0.05)
        assert_overloaded(outcome_of(held))  # refused beside a probe: send it again
    pytest.fail("the batch was never admitted")


def assert_budget_is_empty(live: LiveServer, account: str, code: str) -> None:
    """A batch of the whole budget is admitted only if nothing is left in flight;
    the calls before may still be finishing inside the server, so poll (bounded)."""
    # Unknown accounts, each once: one round for the whole batch (items of one
    # account take a round each, seconds on a loaded machine).
    probe = pb.BatchVerifyRequest(
        items=[pb.BatchVerifyItem(account_id=f"{account}-{k}", code=code) for k in range(BUDGET)]
    )
    for _ in range(LOOP_LIMIT):
        try:
            live.stub.BatchVerify(probe, timeout=30)
            return
        except grpc.RpcError as error:
            assert failure(error).reason == "ERROR_REASON_OVERLOADED"
        time.sleep(0.05)
    pytest.fail("the item budget never returned to zero")


def test_concurrent_large_batches_beyond_the_budget_are_refused_at_once_with_a_delay(
    live: LiveServer, engine: Engine, clock: Clock, secrets_seen: Secrets
) -> None:
    accounts = [f"overload-{number}" for number in range(CALLS)]
    wrong = {account: activate(live, clock, secrets_seen, account) for account in accounts}

    # The pool outlives the lock: leaving it waits for every call, the held one too.
    with ThreadPoolExecutor(max_workers=CALLS) as pool, writes_blocked(engine):
        calls = {
            pool.submit(live.stub.BatchVerify, full_batch(account, wrong[account]), timeout=30): (
                account
            )
            for account in accounts
        }
        # Every call but the admitted one (held by the lock) comes back while it is held.
        done: set[Future[Any]] = set()
        for _ in range(LOOP_LIMIT):
            done, _pending = wait(calls, timeout=0.05)
            if len(done) >= CALLS - 1:
                break
        assert len(done) == CALLS - 1, "the refusals did not come back while the budget was full"
        health = health_pb2_grpc.HealthStub(live.channel)
        check = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert check.status == health_pb2.HealthCheckResponse.SERVING  # never refused
        refused_unary = call_fails(
            live.stub.Verify, pb.VerifyRequest(account_id=accounts[0], code=wrong[accounts[0]])
        )
        assert_overloaded(refused_unary)
        # An oversized batch keeps its permanent error on a full server.
        oversized = pb.BatchVerifyRequest(
            items=[pb.BatchVerifyItem(account_id=accounts[0], code="000000")] * (BUDGET + 1)
        )
        assert call_fails(live.stub.BatchVerify, oversized).reason == "ERROR_REASON_BATCH_TOO_LARGE"
    wait(calls, timeout=30)

    results = {calls[call]: outcome_of(call) for call in calls}
    admitted = [account for account, result in results.items() if result is None]
    refused = [account for account, result in results.items() if result is not None]
    assert len(admitted) == 1, results
    for account in refused:
        assert_overloaded(results[account])
    assert not any(
        result is not None and result.code is grpc.StatusCode.DEADLINE_EXCEEDED
        for result in results.values()
    )
    failures = failures_by_account(engine)
    assert failures[admitted[0]] > 0  # the admitted batch was counted
    # Refused before any work: no failure recorded for their accounts, nor for the
    # refused unary Verify of accounts[0] (unless it was the admitted one).
    assert all(failures[account] == 0 for account in refused)
    assert_budget_is_empty(live, "nobody", "000000")


def test_the_budget_comes_back_after_errors_refusals_and_cancelled_calls(
    live: LiveServer, engine: Engine, clock: Clock, secrets_seen: Secrets
) -> None:
    wrong = activate(live, clock, secrets_seen, "release-paths")
    # Errors raised inside admitted calls: unknown account, label taken, bad batch items.
    assert call_fails(live.stub.Verify, pb.VerifyRequest(account_id="ghost", code="123456"))
    enroll = pb.EnrollRequest(account_id="release-paths", label="same")
    live.stub.Enroll(enroll, timeout=10)
    assert call_fails(live.stub.Enroll, enroll).reason == "ERROR_REASON_LABEL_TAKEN"
    malformed = pb.BatchVerifyRequest(
        items=[pb.BatchVerifyItem(account_id="release-paths", code="12 456")] * BUDGET
    )
    response = live.stub.BatchVerify(malformed, timeout=10)
    assert all(result.WhichOneof("result") == "error" for result in response.results)
    assert_budget_is_empty(live, "nobody", "000000")

    # A call the client cancels while it is held inside the server.
    with writes_blocked(engine):
        held = hold_the_budget(live, full_batch("release-paths", wrong))
        assert held.cancel()
        assert_overloaded(
            call_fails(live.stub.BatchVerify, full_batch("release-paths-other", "000000"))
        )
    assert_budget_is_empty(live, "nobody", "000000")
