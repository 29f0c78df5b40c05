"""Deadlines over gRPC, on a hung database of each kind (tests/hung_database.py).

The server waits for the database until the call's deadline (the client's,
capped by `max_database_wait_seconds`), then answers DEADLINE_EXCEEDED with
nothing stored: the user's retry with the same code is VALID, and an abandoned
wrong guess is not counted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.hung_database import HangingDatabase, database, hang_before_write, paused_postgres
from tests.rpc.conftest import Secrets, make_settings
from tests.rpc.harness import LiveServer, LogCapture, activate, failure, running_server
from tests.totp_oracle import wrong_code
from totpd.app import build_service
from totpd.service.policy import Policy
from totpd.v1 import errors_pb2, factor_pb2, lifecycle_pb2
from totpd.v1 import totp_service_pb2 as pb

__all__ = ["database", "paused_postgres"]  # fixtures

# The server's max_database_wait_seconds here. It caps every call, the set-up
# enrollments included: long enough that a loaded 2-core CI machine's slow
# fsync does not end those, short enough for the calls that wait it out.
LONGEST_WAIT = 2.0
VERIFY = "/totpd.v1.TotpService/Verify"
LOCK_AFTER = Policy().lock_after_failures  # make_settings keeps the default policy


@pytest.fixture
def live_on(database: HangingDatabase, tmp_path: Path) -> Iterator[LiveServer]:
    settings = replace(
        make_settings(tmp_path),
        database_url=database.url,
        max_database_wait_seconds=LONGEST_WAIT,
        max_workers=8,
    )
    with running_server(settings, build_service(settings)) as server:
        yield server


def verify(live: LiveServer, account: str, code: str, **options: Any) -> Any:
    request = pb.VerifyRequest(account_id=account, code=code)
    return live.stub.Verify(request, **options).outcome


def access_codes(capture: LogCapture, method: str) -> list[str]:
    lines = [json.loads(line) for line in capture.lines]
    return [line["code"] for line in lines if line.get("method") == method and "code" in line]


def wait_for_access_line(capture: LogCapture, method: str, code: str) -> None:
    for _ in range(400):
        if code in access_codes(capture, method):
            return
        time.sleep(0.025)
    raise AssertionError(f"the server never ended {method} with {code}")


def test_a_verify_whose_client_gives_up_ends_on_the_server_and_consumes_nothing(
    database: HangingDatabase,
    live_on: LiveServer,
    secrets_seen: Secrets,
    no_secrets_in_logs: LogCapture,
) -> None:
    enrolled = activate(live_on, secrets_seen, "alice")
    code = enrolled.code(offset_steps=1)  # the confirmation used the current step
    secrets_seen.add(code)
    with database.hung():
        with pytest.raises(grpc.RpcError) as caught:
            verify(live_on, "alice", code, timeout=0.3)
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        # The server ends the call too, while the database is still hung.
        wait_for_access_line(no_secrets_in_logs, VERIFY, "DEADLINE_EXCEEDED")
    assert verify(live_on, "alice", code, timeout=10).result == factor_pb2.VERIFY_RESULT_VALID


def test_the_configured_maximum_bounds_a_call_without_a_client_deadline(
    database: HangingDatabase, live_on: LiveServer, secrets_seen: Secrets
) -> None:
    enrolled = activate(live_on, secrets_seen, "bob")
    guess = wrong_code(enrolled.code(offset_steps=1))
    request = pb.VerifyRequest(account_id="bob", code=guess)
    with database.hung():
        call = live_on.stub.Verify.future(request)  # no deadline
        error = call.exception(timeout=60)
    assert isinstance(error, grpc.RpcError)
    answer = failure(error)
    assert answer.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert answer.reason == "ERROR_REASON_DEADLINE_EXCEEDED"
    assert "nothing was stored" in answer.message
    # The abandoned guess was not counted: this one is the first failure.
    outcome = verify(live_on, "bob", guess, timeout=10)
    assert outcome.result == factor_pb2.VERIFY_RESULT_INVALID
    assert outcome.attempts_left == LOCK_AFTER - 1


def test_batch_verify_fails_per_item_only_the_rounds_it_could_not_commit(
    database: HangingDatabase,
    live_on: LiveServer,
    secrets_seen: Secrets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = activate(live_on, secrets_seen, "carol")
    other = activate(live_on, secrets_seen, "dave")
    code, other_code = first.code(offset_steps=1), other.code(offset_steps=1)
    secrets_seen.add(code, other_code)
    items = [
        pb.BatchVerifyItem(account_id="carol", code=wrong_code(code)),
        pb.BatchVerifyItem(account_id="dave", code=other_code),
        pb.BatchVerifyItem(account_id="carol", code=code),  # a second round
    ]
    with ExitStack() as stack:
        hang_before_write(monkeypatch, database, stack, write=2)
        response = live_on.stub.BatchVerify(pb.BatchVerifyRequest(items=items), timeout=60)
    monkeypatch.undo()
    # The second round's success resets carol's failure: one statement (the
    # account's row, the factor's and the event) that ran late, its deadline passed.
    database.settle("WITH locked_account AS")

    first_two = [result.outcome.result for result in response.results[:2]]
    assert first_two == [factor_pb2.VERIFY_RESULT_INVALID, factor_pb2.VERIFY_RESULT_VALID]
    late = response.results[2]
    assert late.WhichOneof("result") == "error"
    assert late.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert late.error.reason == errors_pb2.ERROR_REASON_DEADLINE_EXCEEDED
    assert verify(live_on, "carol", code, timeout=10).result == factor_pb2.VERIFY_RESULT_VALID


def test_a_guess_whose_client_gave_up_is_not_counted(
    database: HangingDatabase,
    live_on: LiveServer,
    secrets_seen: Secrets,
    no_secrets_in_logs: LogCapture,
) -> None:
    """The probe of the issue: a short-deadline guess the client abandoned
    while the database was hung is not counted when the database returns."""
    enrolled = activate(live_on, secrets_seen, "erin")
    guess = wrong_code(enrolled.code(offset_steps=1))
    with database.hung():
        with pytest.raises(grpc.RpcError) as caught:
            verify(live_on, "erin", guess, timeout=0.3)
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        wait_for_access_line(no_secrets_in_logs, VERIFY, "DEADLINE_EXCEEDED")
    outcome = verify(live_on, "erin", guess, timeout=10)
    assert outcome.result == factor_pb2.VERIFY_RESULT_INVALID
    assert outcome.attempts_left == LOCK_AFTER - 1


def test_many_calls_hung_at_once_all_end_and_the_server_recovers(
    database: HangingDatabase,
    live_on: LiveServer,
    secrets_seen: Secrets,
    no_secrets_in_logs: LogCapture,
) -> None:
    accounts = [f"grace-{number}" for number in range(6)]
    enrollments = [activate(live_on, secrets_seen, account) for account in accounts]
    codes = [enrollment.code(offset_steps=1) for enrollment in enrollments]
    secrets_seen.add(*codes)
    with database.hung():
        calls = [
            live_on.stub.Verify.future(pb.VerifyRequest(account_id=account, code=code))
            for account, code in zip(accounts, codes, strict=True)
        ]  # no client deadline: the server's maximum ends them
        errors = [call.exception(timeout=60) for call in calls]
    assert all(isinstance(error, grpc.RpcError) for error in errors)
    assert {failure(error).reason for error in errors} == {"ERROR_REASON_DEADLINE_EXCEEDED"}
    assert access_codes(no_secrets_in_logs, VERIFY).count("DEADLINE_EXCEEDED") == len(calls)
    for account, code in zip(accounts, codes, strict=True):
        assert verify(live_on, account, code, timeout=10).result == factor_pb2.VERIFY_RESULT_VALID


def test_the_lifecycle_rpcs_end_at_the_deadline_on_a_hung_database_and_change_nothing(
    database: HangingDatabase,
    live_on: LiveServer,
    secrets_seen: Secrets,
    no_secrets_in_logs: LogCapture,
) -> None:
    # GenerateRecoveryCodes, VerifyRecoveryCode, Unlock and Resync wait at most until
    # the deadline and then store nothing: the set is not replaced, the code not
    # consumed, the pair not used, the failures not cleared.
    enrolled = activate(live_on, secrets_seen, "heidi")
    factor_id = enrolled.factor.factor_id
    request = lifecycle_pb2.GenerateRecoveryCodesRequest(account_id="heidi")
    codes = list(live_on.stub.GenerateRecoveryCodes(request, timeout=10).codes)
    secrets_seen.add(*codes)
    wrong = wrong_code(enrolled.code(offset_steps=1))
    secrets_seen.add(wrong)
    assert verify(live_on, "heidi", wrong, timeout=10).result == factor_pb2.VERIFY_RESULT_INVALID
    # The pair from one instant; the drift it stores is counted from the step the
    # final Resync runs in (a step may end while the database hangs).
    at, period = time.time(), enrolled.factor.period_seconds
    pair = (enrolled.code_at(at + period), enrolled.code_at(at + 2 * period))
    secrets_seen.add(*pair)
    stub = live_on.stub
    calls = {
        "GenerateRecoveryCodes": lambda: stub.GenerateRecoveryCodes.future(request),
        "VerifyRecoveryCode": lambda: stub.VerifyRecoveryCode.future(
            lifecycle_pb2.VerifyRecoveryCodeRequest(account_id="heidi", code=codes[0])
        ),
        "Unlock": lambda: stub.Unlock.future(lifecycle_pb2.UnlockRequest(account_id="heidi")),
        "Resync": lambda: stub.Resync.future(
            lifecycle_pb2.ResyncRequest(
                account_id="heidi", factor_id=factor_id, code1=pair[0], code2=pair[1]
            )
        ),
    }
    with database.hung():
        futures = {name: start() for name, start in calls.items()}  # the server's maximum
        errors = {name: future.exception(timeout=60) for name, future in futures.items()}
    assert {name: failure(error).reason for name, error in errors.items()} == dict.fromkeys(
        calls, "ERROR_REASON_DEADLINE_EXCEEDED"
    )
    # Nothing was stored: the first set, its first code, the pair and the failure stand.
    listed = stub.ListFactors(pb.ListFactorsRequest(account_id="heidi"), timeout=10)
    assert (listed.recovery_codes.remaining, listed.recovery_codes.issued) == (10, 10)
    used = stub.VerifyRecoveryCode(
        lifecycle_pb2.VerifyRecoveryCodeRequest(account_id="heidi", code=codes[0]), timeout=10
    )
    assert used.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    unlocked = stub.Unlock(lifecycle_pb2.UnlockRequest(account_id="heidi"), timeout=10)
    assert unlocked.factors_cleared == 1  # the wrong code's failure was still counted
    step_before = int(time.time()) // period
    resynced = stub.Resync(
        lifecycle_pb2.ResyncRequest(
            account_id="heidi", factor_id=factor_id, code1=pair[0], code2=pair[1]
        ),
        timeout=10,
    )
    step_after = int(time.time()) // period
    assert resynced.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    pair_step = int(at) // period + 2
    assert resynced.factor.drift_steps in {pair_step - step_before, pair_step - step_after}
