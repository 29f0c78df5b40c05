"""GenerateRecoveryCodes and VerifyRecoveryCode over a real server: responses, statuses
and ErrorInfo reasons, bad inputs that write nothing, the status in ListFactors and
after Disable, audit events free of codes, and outages (UNAVAILABLE, nothing used)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine, text

from tests.pg_faults import FaultyPostgres, faulty_postgres
from tests.rpc.conftest import Secrets, make_settings, mfa_service, sqlite_file_gone
from tests.rpc.harness import LiveServer, activate, call_fails, failure, running_server
from totpd.config import Settings
from totpd.service.policy import Policy
from totpd.store import migrate, open_engine
from totpd.v1 import audit_pb2, factor_pb2, lifecycle_pb2
from totpd.v1 import totp_service_pb2 as pb

TABLES = ("factors", "accounts", "recovery_codes", "audit_calls", "audit_events")
MALFORMED = "INVALID_ARGUMENT/ERROR_REASON_MALFORMED_CODE"
UNAVAILABLE = "UNAVAILABLE/ERROR_REASON_STORE_UNAVAILABLE"


def generate(live: LiveServer, secrets: Secrets, account: str) -> list[str]:
    response = live.stub.GenerateRecoveryCodes(
        lifecycle_pb2.GenerateRecoveryCodesRequest(account_id=account), timeout=10
    )
    codes = list(response.codes)
    secrets.add(*codes, *(code.replace("-", "") for code in codes))
    return codes


def verify(live: LiveServer, account: str, code: str) -> lifecycle_pb2.VerifyRecoveryCodeResponse:
    request = lifecycle_pb2.VerifyRecoveryCodeRequest(account_id=account, code=code)
    response: lifecycle_pb2.VerifyRecoveryCodeResponse = live.stub.VerifyRecoveryCode(
        request, timeout=10
    )
    return response


def answer(call: Any) -> str:
    try:
        call()
    except grpc.RpcError as error:
        failed = failure(error)
        return f"{failed.code.name}/{failed.reason}"
    return "OK"


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as connection:
        return {
            table: sorted(tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}")))
            for table in TABLES
        }


@pytest.fixture
def served(engine: Engine, rpc_settings: Settings) -> Iterator[LiveServer]:
    with running_server(rpc_settings, mfa_service(engine, rpc_settings, time.time)) as live:
        yield live


def test_generate_then_verify_once(served: LiveServer, secrets_seen: Secrets) -> None:
    activate(served, secrets_seen, "alice")
    before = time.time()
    response = served.stub.GenerateRecoveryCodes(
        lifecycle_pb2.GenerateRecoveryCodesRequest(account_id="alice"), timeout=10
    )
    secrets_seen.add(*response.codes)
    assert len(response.codes) == 10
    assert (response.status.remaining, response.status.issued) == (10, 10)
    assert abs(response.status.generated_at_unix - before) < 60

    first = verify(served, "alice", response.codes[0].upper().replace("-", " "))
    assert first.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert first.outcome.factor_id == ""
    assert first.status.remaining == 9 and first.status.issued == 10
    again = verify(served, "alice", response.codes[0])
    assert again.outcome.result == factor_pb2.VERIFY_RESULT_REPLAYED
    assert again.outcome.attempts_left > 0
    listed = served.stub.ListFactors(pb.ListFactorsRequest(account_id="alice"), timeout=10)
    assert (listed.recovery_codes.remaining, listed.recovery_codes.issued) == (9, 10)
    assert listed.recovery_codes.generated_at_unix == response.status.generated_at_unix


def test_generate_needs_an_active_factor(served: LiveServer, secrets_seen: Secrets) -> None:
    served.stub.Enroll(pb.EnrollRequest(account_id="bob"), timeout=10)  # pending only
    for account in ("bob", "nobody"):
        got = call_fails(
            served.stub.GenerateRecoveryCodes,
            lifecycle_pb2.GenerateRecoveryCodesRequest(account_id=account),
        )
        assert (got.code, got.reason) == (
            grpc.StatusCode.NOT_FOUND,
            "ERROR_REASON_ACCOUNT_NOT_FOUND",
        )
        assert got.metadata == {"field": "account_id"}
    got = call_fails(
        served.stub.GenerateRecoveryCodes, lifecycle_pb2.GenerateRecoveryCodesRequest()
    )
    assert (got.code, got.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_INVALID_ARGUMENT",
    )


# The design notes' bad inputs, and a recovery code's own.
BAD_CODES = [
    " 123456",
    "１２３４５６",
    "١٢٣٤٥٦",
    "123_456",
    "+12345",
    "",
    "12345a",
    "abcd-efgh-jkm\x00",
    "x" * 10_000,
    "abcd-efgh-jkmu",
    "abcd-efgh-jkmnp",
]


def test_bad_codes_are_refused_and_write_nothing(
    served: LiveServer, engine: Engine, secrets_seen: Secrets
) -> None:
    activate(served, secrets_seen, "alice")
    generate(served, secrets_seen, "alice")
    before = snapshot(engine)
    for code in BAD_CODES:
        got = call_fails(
            served.stub.VerifyRecoveryCode,
            lifecycle_pb2.VerifyRecoveryCodeRequest(account_id="alice", code=code),
        )
        assert f"{got.code.name}/{got.reason}" == MALFORMED, repr(code[:20])
        assert got.metadata == {"field": "code"}
        assert not code.strip() or code.strip() not in got.message
    got = call_fails(
        served.stub.VerifyRecoveryCode,
        lifecycle_pb2.VerifyRecoveryCodeRequest(account_id="al ice", code="abcd-efgh-jkmn"),
    )
    assert (got.code, got.metadata) == (grpc.StatusCode.INVALID_ARGUMENT, {"field": "account_id"})
    # Invalid UTF-8: the protobuf runtime refuses to parse the request.
    for method, body in (
        ("VerifyRecoveryCode", _bytes_field(1, b"alice") + _bytes_field(2, b"abcd-efgh-jkm\xff")),
        ("GenerateRecoveryCodes", _bytes_field(1, b"ali\xffce")),
    ):
        call = served.channel.unary_unary(f"/totpd.v1.TotpService/{method}", None, None)
        with pytest.raises(grpc.RpcError) as caught:
            call(body, timeout=10)
        got = failure(caught.value)
        assert (got.code, got.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_ARGUMENT",
        ), method
    assert snapshot(engine) == before


def _bytes_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (payloads under 128 bytes)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_an_unknown_account_is_not_found(served: LiveServer) -> None:
    got = call_fails(
        served.stub.VerifyRecoveryCode,
        lifecycle_pb2.VerifyRecoveryCodeRequest(account_id="nobody", code="abcd-efgh-jkmn"),
    )
    assert (got.code, got.reason) == (grpc.StatusCode.NOT_FOUND, "ERROR_REASON_ACCOUNT_NOT_FOUND")


@pytest.mark.parametrize("rpc_policy", [Policy(backoff_base_seconds=0, max_consecutive_failures=3)])
def test_wrong_codes_lock_the_account_and_a_right_one_opens_it(
    served: LiveServer, secrets_seen: Secrets
) -> None:
    activate(served, secrets_seen, "alice")
    codes = generate(served, secrets_seen, "alice")
    wrong = next(c for c in ("zzzz-zzzz-zzzz", "yyyy-yyyy-yyyy") if c not in codes)
    outcomes = [verify(served, "alice", wrong).outcome for _ in range(3)]
    assert [o.result for o in outcomes] == [factor_pb2.VERIFY_RESULT_INVALID] * 3
    assert [o.attempts_left for o in outcomes] == [2, 1, 0]
    assert outcomes[2].unlock_required
    totp = served.stub.Verify(pb.VerifyRequest(account_id="alice", code="000000"), timeout=10)
    assert totp.outcome.result == factor_pb2.VERIFY_RESULT_LOCKED and totp.outcome.unlock_required
    opened = verify(served, "alice", codes[0])
    assert opened.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert opened.status.remaining == 9


def test_disable_of_every_factor_removes_the_codes(
    served: LiveServer, secrets_seen: Secrets
) -> None:
    activate(served, secrets_seen, "alice")
    codes = generate(served, secrets_seen, "alice")
    served.stub.Disable(pb.DisableRequest(account_id="alice", force=True), timeout=10)
    listed = served.stub.ListFactors(pb.ListFactorsRequest(account_id="alice"), timeout=10)
    assert listed.recovery_codes == lifecycle_pb2.RecoveryCodesStatus()
    outcome = verify(served, "alice", codes[0]).outcome
    assert outcome.result == factor_pb2.VERIFY_RESULT_INVALID


def test_audit_events_record_each_call_and_no_code(
    served: LiveServer, engine: Engine, secrets_seen: Secrets
) -> None:
    activate(served, secrets_seen, "alice")
    codes = generate(served, secrets_seen, "alice")
    verify(served, "alice", codes[0])
    verify(served, "alice", codes[0])
    events = served.stub.ListAuditEvents(
        audit_pb2.ListAuditEventsRequest(account_id="alice"), timeout=10
    ).events
    recovery = [(e.method, e.verify_result, e.factor_id) for e in events[2:]]
    assert recovery == [
        ("GenerateRecoveryCodes", factor_pb2.VERIFY_RESULT_UNSPECIFIED, ""),
        ("VerifyRecoveryCode", factor_pb2.VERIFY_RESULT_VALID, ""),
        ("VerifyRecoveryCode", factor_pb2.VERIFY_RESULT_REPLAYED, ""),
    ]
    assert {e.status_code for e in events[2:]} == {"OK"}
    stored = repr([snapshot(engine)[t] for t in ("audit_calls", "audit_events")])
    stored += repr(list(events))
    assert not [code for code in codes if code in stored or code.replace("-", "") in stored]


# -- outages -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[FaultyPostgres]:
    with faulty_postgres() as server:
        yield server


class Halted:
    def __init__(self, pg: FaultyPostgres) -> None:
        self.pg = pg

    def __enter__(self) -> None:
        self.pg.halt("fast")

    def __exit__(self, *_: object) -> None:
        self.pg.restart()


def _outage_answers(
    engine: Engine, settings: Settings, secrets: Secrets, outage: AbstractContextManager[Any]
) -> None:
    with running_server(settings, mfa_service(engine, settings, time.time)) as live:
        account = f"outage-{time.time_ns()}"
        activate(live, secrets, account)
        codes = generate(live, secrets, account)
        calls = {
            "Generate": lambda: generate(live, secrets, account),
            "Verify": lambda: verify(live, account, codes[0]),
            "ListFactors": lambda: live.stub.ListFactors(
                pb.ListFactorsRequest(account_id=account), timeout=10
            ),
        }
        with outage:
            down = {name: answer(call) for name, call in calls.items()}
        assert down == dict.fromkeys(calls, UNAVAILABLE)
        # Nothing was replaced or consumed while the database was down.
        back = verify(live, account, codes[0])
        assert back.outcome.result == factor_pb2.VERIFY_RESULT_VALID
        assert back.status.remaining == 9


def test_an_sqlite_outage_is_unavailable_and_uses_nothing(
    tmp_path: Path, secrets_seen: Secrets
) -> None:
    settings = make_settings(tmp_path, Policy(backoff_base_seconds=0))
    database = tmp_path / "outage.sqlite3"
    engine = open_engine(f"sqlite:///{database}")
    migrate(engine)
    try:
        gone = sqlite_file_gone(database)

        class Disposed:
            def __enter__(self) -> None:
                engine.dispose()
                gone.__enter__()

            def __exit__(self, *error: Any) -> None:
                gone.__exit__(*error)

        _outage_answers(engine, settings, secrets_seen, Disposed())
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_postgresql_outage_is_unavailable_and_uses_nothing(
    pg: FaultyPostgres, tmp_path: Path, secrets_seen: Secrets
) -> None:
    settings = make_settings(tmp_path, Policy(backoff_base_seconds=0))
    engine = open_engine(pg.url)
    migrate(engine)
    try:
        _outage_answers(engine, settings, secrets_seen, Halted(pg))
    finally:
        engine.dispose()
