"""The gRPC layer alone, over a real server, with a recording stand-in for the
domain service: what the servicer passes down, what it sends back, and how
every kind of exception becomes a status. The real service is exercised in
test_flows.py and test_bad_inputs.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
import sqlalchemy.exc
from google.protobuf.message import DecodeError

from tests.rpc.conftest import make_settings
from tests.rpc.harness import LiveServer, LogCapture, call_fails, failure, running_server
from totpd import otp
from totpd.crypto import SecretUnavailableError
from totpd.rpc.status import STATUS_BY_REASON, numeric_code
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.mfa.recovery import NewRecoveryCodes, RecoveryVerdict
from totpd.service.recovery_codes import RecoveryStatus
from totpd.service.types import (
    Algorithm,
    Enrollment,
    EnrollParams,
    Factor,
    FactorState,
    VerifyItem,
    VerifyOutcome,
    VerifyResult,
)
from totpd.store.faults import as_store_error
from totpd.v1 import errors_pb2, factor_pb2, lifecycle_pb2
from totpd.v1 import totp_service_pb2 as pb

FACTOR = Factor(
    factor_id="0f8fad5b-d9cb-469f-a165-70867728950e",
    account_id="alice",
    label="Pixel 8",
    issuer="Example",
    algorithm=Algorithm.SHA256,
    digits=8,
    period_seconds=60,
    state=FactorState.ACTIVE,
    created_at=1_700_000_000,
    confirmed_at=1_700_000_100,
    last_used_at=None,
    expires_at=None,
)


def _given(request_id: str | None) -> tuple[str, ...]:
    """A request_id among the recorded arguments only when the call sent one."""
    return () if request_id is None else (request_id,)


@dataclass
class RecordingService:
    """Answers every call with fixed values, or raises `error`; records arguments."""

    error: BaseException | None = None
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    batch_results: list[VerifyOutcome | TotpdError] = field(default_factory=list)
    # The caller identity each code check was given (kept apart from `calls`).
    callers: list[str | None] = field(default_factory=list)
    # No coalescing: the servicer's Verify stays the thread-side `verify` below.
    coalescer: None = None

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.error is not None:
            raise self.error

    def enroll(self, params: EnrollParams, request_id: str | None = None) -> Enrollment:
        self._record("enroll", params, *_given(request_id))
        return Enrollment(FACTOR, "otpauth://totp/x", "SECRET", b"\x89PNG", "<svg/>")

    def confirm(
        self,
        account_id: str,
        factor_id: str,
        code: str,
        request_id: str | None = None,
        caller: str | None = None,
    ) -> tuple[VerifyOutcome, Factor]:
        self.callers.append(caller)
        self._record("confirm", account_id, factor_id, code, *_given(request_id))
        return VerifyOutcome(VerifyResult.VALID, FACTOR.factor_id, -1, 10, 0), FACTOR

    def verify(self, item: VerifyItem, caller: str | None = None) -> VerifyOutcome:
        self.callers.append(caller)
        self._record("verify", item)
        return VerifyOutcome(VerifyResult.LOCKED, FACTOR.factor_id, 0, 0, 900)

    def check_batch_size(self, count: int) -> None:
        pass  # the fake's verify_batch raises `error` instead

    def verify_batch(
        self, items: list[VerifyItem], caller: str | None = None
    ) -> list[VerifyOutcome | TotpdError]:
        self.callers.append(caller)
        self._record("verify_batch", items)
        return self.batch_results

    def disable(
        self,
        account_id: str,
        factor_id: str | None,
        code: str | None,
        force: bool,
        request_id: str | None = None,
        caller: str | None = None,
    ) -> tuple[VerifyOutcome, list[Factor]]:
        self.callers.append(caller)
        self._record("disable", account_id, factor_id, code, force, *_given(request_id))
        return VerifyOutcome(VerifyResult.VALID), [FACTOR]

    def get_factor(self, account_id: str, factor_id: str) -> Factor:
        self._record("get_factor", account_id, factor_id)
        return FACTOR

    def list_factors(self, account_id: str, include_inactive: bool) -> list[Factor]:
        self._record("list_factors", account_id, include_inactive)
        return [FACTOR, FACTOR]

    # -- recovery codes --

    def recovery_codes_status(self, account_id: str) -> RecoveryStatus:
        self._record("recovery_codes_status", account_id)
        return RecoveryStatus(7, 10, 1_700_000_200)

    def generate_recovery_codes(self, account_id: str) -> NewRecoveryCodes:
        self._record("generate_recovery_codes", account_id)
        return NewRecoveryCodes(["k7q2-9xmf-w4c8"], RecoveryStatus(1, 1, 1_700_000_300))

    def verify_recovery_code(
        self, account_id: str, code: str, caller: str | None = None
    ) -> RecoveryVerdict:
        self.callers.append(caller)
        self._record("verify_recovery_code", account_id, code)
        outcome = VerifyOutcome(VerifyResult.LOCKED, None, 0, 0, 60, unlock_required=True)
        return RecoveryVerdict(outcome, RecoveryStatus(3, 10, 1_700_000_400))


@pytest.fixture
def fake() -> RecordingService:
    return RecordingService()


@pytest.fixture
def server(tmp_path: Path, fake: RecordingService) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path)
    with running_server(settings, cast(MfaService, fake)) as live:
        yield live


def test_enroll_maps_zero_values_to_server_defaults(
    server: LiveServer, fake: RecordingService
) -> None:
    response = server.stub.Enroll(pb.EnrollRequest(account_id="alice"), timeout=5)

    assert fake.calls == [("enroll", (EnrollParams("alice", "", None, None, None, None),))]
    assert response.otpauth_uri == "otpauth://totp/x"
    assert response.secret_base32 == "SECRET"
    assert response.qr_png == b"\x89PNG"
    assert response.qr_svg == "<svg/>"


def test_request_ids_reach_the_service_and_empty_means_none(
    server: LiveServer, fake: RecordingService
) -> None:
    server.stub.Enroll(pb.EnrollRequest(account_id="alice", request_id="r-1"), timeout=5)
    server.stub.ConfirmEnrollment(
        pb.ConfirmEnrollmentRequest(
            account_id="alice", factor_id="f", code="123456", request_id="r-2"
        ),
        timeout=5,
    )
    server.stub.Disable(
        pb.DisableRequest(account_id="alice", force=True, request_id="r-3"), timeout=5
    )
    server.stub.Disable(pb.DisableRequest(account_id="alice", force=True), timeout=5)
    assert fake.calls == [
        ("enroll", (EnrollParams("alice", "", None, None, None, None), "r-1")),
        ("confirm", ("alice", "f", "123456", "r-2")),
        ("disable", ("alice", None, None, True, "r-3")),
        ("disable", ("alice", None, None, True)),
    ]


def test_enroll_passes_every_chosen_option(server: LiveServer, fake: RecordingService) -> None:
    server.stub.Enroll(
        pb.EnrollRequest(
            account_id="alice",
            label="Pixel 8",
            issuer="Example",
            algorithm=factor_pb2.ALGORITHM_SHA512,
            digits=8,
            period_seconds=60,
        ),
        timeout=5,
    )
    expected = EnrollParams("alice", "Pixel 8", "Example", Algorithm.SHA512, 8, 60)
    assert fake.calls == [("enroll", (expected,))]


def test_factor_and_outcome_are_translated_field_by_field(server: LiveServer) -> None:
    response = server.stub.ConfirmEnrollment(
        pb.ConfirmEnrollmentRequest(account_id="alice", factor_id=FACTOR.factor_id, code="1"),
        timeout=5,
    )
    assert response.outcome == factor_pb2.VerifyOutcome(
        result=factor_pb2.VERIFY_RESULT_VALID,
        factor_id=FACTOR.factor_id,
        step_offset=-1,
        attempts_left=10,
    )
    assert response.factor == factor_pb2.Factor(
        factor_id=FACTOR.factor_id,
        account_id="alice",
        label="Pixel 8",
        issuer="Example",
        algorithm=factor_pb2.ALGORITHM_SHA256,
        digits=8,
        period_seconds=60,
        state=factor_pb2.FACTOR_STATE_ACTIVE,
        created_at_unix=1_700_000_000,
        confirmed_at_unix=1_700_000_100,
    )


def test_verify_empty_factor_id_means_every_factor(
    server: LiveServer, fake: RecordingService
) -> None:
    response = server.stub.Verify(pb.VerifyRequest(account_id="alice", code="123456"), timeout=5)
    assert fake.calls == [("verify", (VerifyItem("alice", "123456", None),))]
    # The caller is the peer's host, without its port.
    assert fake.callers == ["127.0.0.1"]
    assert response.outcome.result == factor_pb2.VERIFY_RESULT_LOCKED
    assert response.outcome.retry_after_seconds == 900


def test_disable_empty_strings_mean_none(server: LiveServer, fake: RecordingService) -> None:
    response = server.stub.Disable(pb.DisableRequest(account_id="alice", force=True), timeout=5)
    assert fake.calls == [("disable", ("alice", None, None, True))]
    assert [f.factor_id for f in response.factors] == [FACTOR.factor_id]


def test_list_and_get(server: LiveServer, fake: RecordingService) -> None:
    listed = server.stub.ListFactors(
        pb.ListFactorsRequest(account_id="alice", include_inactive=True), timeout=5
    )
    got = server.stub.GetFactor(
        pb.GetFactorRequest(account_id="alice", factor_id=FACTOR.factor_id), timeout=5
    )
    assert len(listed.factors) == 2
    assert listed.recovery_codes == lifecycle_pb2.RecoveryCodesStatus(
        remaining=7, issued=10, generated_at_unix=1_700_000_200
    )
    assert got.factor.factor_id == FACTOR.factor_id
    assert fake.calls == [
        ("list_factors", ("alice", True)),
        ("recovery_codes_status", ("alice",)),
        ("get_factor", ("alice", FACTOR.factor_id)),
    ]


def test_recovery_codes(server: LiveServer, fake: RecordingService) -> None:
    generated = server.stub.GenerateRecoveryCodes(
        lifecycle_pb2.GenerateRecoveryCodesRequest(account_id="alice"), timeout=5
    )
    verified = server.stub.VerifyRecoveryCode(
        lifecycle_pb2.VerifyRecoveryCodeRequest(account_id="alice", code="K7Q2 9XMF"), timeout=5
    )
    assert list(generated.codes) == ["k7q2-9xmf-w4c8"]
    assert generated.status == lifecycle_pb2.RecoveryCodesStatus(
        remaining=1, issued=1, generated_at_unix=1_700_000_300
    )
    assert verified.outcome == factor_pb2.VerifyOutcome(
        result=factor_pb2.VERIFY_RESULT_LOCKED, retry_after_seconds=60, unlock_required=True
    )
    assert verified.status.remaining == 3
    # The code goes down exactly as sent: the service normalises it.
    assert fake.calls == [
        ("generate_recovery_codes", ("alice",)),
        ("verify_recovery_code", ("alice", "K7Q2 9XMF")),
    ]
    assert fake.callers[-1] is not None  # the per-caller rate applies


def test_batch_items_carry_their_own_errors(server: LiveServer, fake: RecordingService) -> None:
    fake.batch_results = [
        VerifyOutcome(VerifyResult.VALID, FACTOR.factor_id),
        TotpdError(ErrorReason.MALFORMED_CODE, "code must be digits", field="code"),
        TotpdError(ErrorReason.FACTOR_NOT_FOUND, "no such factor"),
    ]
    items = [pb.BatchVerifyItem(account_id="a", code="1", factor_id="") for _ in range(3)]
    response = server.stub.BatchVerify(pb.BatchVerifyRequest(items=items), timeout=5)

    assert [r.WhichOneof("result") for r in response.results] == ["outcome", "error", "error"]
    assert response.results[0].outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert response.results[1].error == errors_pb2.ItemError(
        code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
        reason=errors_pb2.ERROR_REASON_MALFORMED_CODE,
        message="code must be digits",
        field="code",
    )
    assert response.results[2].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert response.results[2].error.field == ""
    assert fake.calls == [("verify_batch", ([VerifyItem("a", "1", None)] * 3,))]


def test_batch_too_large_fails_the_whole_call(server: LiveServer, fake: RecordingService) -> None:
    fake.error = TotpdError(ErrorReason.BATCH_TOO_LARGE, "too many items", field="items")
    failed = call_fails(server.stub.BatchVerify, pb.BatchVerifyRequest())
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_BATCH_TOO_LARGE",
    )
    assert failed.metadata == {"field": "items"}


@pytest.mark.parametrize("reason", list(ErrorReason))
def test_every_reason_has_its_status_and_error_info(
    server: LiveServer, fake: RecordingService, reason: ErrorReason
) -> None:
    fake.error = TotpdError(reason, f"because {reason.name.lower()}", field="account_id")
    failed = call_fails(server.stub.GetFactor, pb.GetFactorRequest(account_id="a"))

    assert failed.code == STATUS_BY_REASON[reason]
    assert failed.reason == f"ERROR_REASON_{reason.name}"
    assert failed.reason in errors_pb2.ErrorReason.keys()
    assert failed.domain == "totpd.v1"
    assert failed.metadata == {"field": "account_id"}
    assert failed.message == f"because {reason.name.lower()}"
    assert failed.detail_count == 1


def test_a_known_delay_travels_as_retry_info(server: LiveServer, fake: RecordingService) -> None:
    fake.error = TotpdError(ErrorReason.RATE_LIMITED, "slow down", retry_after_seconds=2.5)
    failed = call_fails(server.stub.GetFactor, pb.GetFactorRequest(account_id="a"))

    assert (failed.code, failed.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "ERROR_REASON_RATE_LIMITED",
    )
    assert failed.detail_count == 1
    assert failed.retry_delay_seconds == 2.5


def test_status_table_covers_every_reason_with_the_documented_code() -> None:
    expected = {
        "INVALID_ARGUMENT": "INVALID_ARGUMENT",
        "MALFORMED_CODE": "INVALID_ARGUMENT",
        "BATCH_TOO_LARGE": "INVALID_ARGUMENT",
        "CODE_REQUIRED": "INVALID_ARGUMENT",
        "ACCOUNT_NOT_FOUND": "NOT_FOUND",
        "FACTOR_NOT_FOUND": "NOT_FOUND",
        "FACTOR_NOT_ACTIVE": "FAILED_PRECONDITION",
        "FACTOR_LIMIT_REACHED": "FAILED_PRECONDITION",
        "ENROLLMENT_EXPIRED": "FAILED_PRECONDITION",
        "LABEL_TAKEN": "ALREADY_EXISTS",
        "OVERLOADED": "RESOURCE_EXHAUSTED",
        "STORE_UNAVAILABLE": "UNAVAILABLE",
        "SECRET_UNAVAILABLE": "INTERNAL",
        "INTERNAL": "INTERNAL",
        "DEADLINE_EXCEEDED": "DEADLINE_EXCEEDED",
        "RATE_LIMITED": "RESOURCE_EXHAUSTED",
        "REQUEST_ID_REUSED": "INVALID_ARGUMENT",
        "UNAUTHENTICATED": "UNAUTHENTICATED",
        "PERMISSION_DENIED": "PERMISSION_DENIED",
        "TENANT_REQUIRED": "INVALID_ARGUMENT",
    }
    assert {r.name: c.name for r, c in STATUS_BY_REASON.items()} == expected
    # The domain enum and the proto enum name the same reasons.
    proto_names = {n.removeprefix("ERROR_REASON_") for n in errors_pb2.ErrorReason.keys()}
    assert proto_names - {"UNSPECIFIED"} == set(expected)
    assert numeric_code(grpc.StatusCode.INVALID_ARGUMENT) == 3


def _native_error() -> otp.NativeError:
    """What the C core raises for input it refuses (here: digits the service never sends)."""
    try:
        otp.KeyTable.of([b"k" * 20], [Algorithm.SHA1], [9], [0])
    except otp.NativeError as error:
        return error
    raise AssertionError("the core accepted 9 digits")


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (SecretUnavailableError("x"), grpc.StatusCode.INTERNAL, "ERROR_REASON_SECRET_UNAVAILABLE"),
        # SQLAlchemy's errors as the store raises them (its boundary: store/faults.py)
        (
            as_store_error(
                sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
            ),
            grpc.StatusCode.UNAVAILABLE,
            "ERROR_REASON_STORE_UNAVAILABLE",
        ),
        (
            as_store_error(
                sqlalchemy.exc.DBAPIError(
                    "SELECT 1", {}, Exception("gone"), connection_invalidated=True
                )
            ),
            grpc.StatusCode.UNAVAILABLE,
            "ERROR_REASON_STORE_UNAVAILABLE",
        ),
        (
            as_store_error(
                sqlalchemy.exc.TimeoutError("QueuePool limit of size 20 overflow 20 reached")
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "ERROR_REASON_OVERLOADED",
        ),
        (
            as_store_error(sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("dup"))),
            grpc.StatusCode.INTERNAL,
            "ERROR_REASON_INTERNAL",
        ),
        (ZeroDivisionError("boom"), grpc.StatusCode.INTERNAL, "ERROR_REASON_INTERNAL"),
        # Past the store, a SQLAlchemy error is no known error: the interceptor knows none.
        (
            sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused")),
            grpc.StatusCode.INTERNAL,
            "ERROR_REASON_INTERNAL",
        ),
        (_native_error(), grpc.StatusCode.INTERNAL, "ERROR_REASON_INTERNAL"),
    ],
)
def test_infrastructure_errors(
    server: LiveServer, fake: RecordingService, error: Exception, code: grpc.StatusCode, reason: str
) -> None:
    fake.error = error
    failed = call_fails(server.stub.Verify, pb.VerifyRequest(account_id="a", code="1"))
    assert (failed.code, failed.reason, failed.domain) == (code, reason, "totpd.v1")


def test_a_store_outage_logs_the_drivers_cause_but_not_the_statement(
    server: LiveServer, fake: RecordingService, no_secrets_in_logs: LogCapture
) -> None:
    fake.error = as_store_error(
        sqlalchemy.exc.OperationalError(
            "UPDATE factors SET x = ? WHERE id = ?",
            ("987654", "otpauth://totp/leak"),
            Exception("database is locked\nsecond line"),
        )
    )
    failed = call_fails(server.stub.Verify, pb.VerifyRequest(account_id="a", code="987654"))

    assert failed.reason == "ERROR_REASON_STORE_UNAVAILABLE"
    records = [json.loads(line) for line in no_secrets_in_logs.lines]
    (outage,) = [r for r in records if r["msg"] == "store unavailable"]
    assert outage["cause"] == "Exception: database is locked"
    logged = "\n".join(no_secrets_in_logs.lines)
    for leak in ("987654", "otpauth", "UPDATE factors", "second line"):
        assert leak not in logged


def test_unexpected_error_is_logged_with_stack_but_not_its_message(
    server: LiveServer, fake: RecordingService, no_secrets_in_logs: LogCapture
) -> None:
    # A message that quotes the input, as int("12345a") would.
    fake.error = ValueError("invalid literal: '987654' otpauth://totp/leak?secret=SEKRIT")
    failed = call_fails(server.stub.Verify, pb.VerifyRequest(account_id="a", code="987654"))

    assert failed.code == grpc.StatusCode.INTERNAL
    assert "987654" not in failed.message
    records = [json.loads(line) for line in no_secrets_in_logs.lines]
    unhandled = [r for r in records if r["msg"] == "unhandled error"]
    assert len(unhandled) == 1
    assert unhandled[0]["error_type"] == "builtins.ValueError"
    assert "_record" in unhandled[0]["stack"]  # the frame that raised
    logged = "\n".join(no_secrets_in_logs.lines)
    for leak in ("987654", "otpauth", "SEKRIT"):
        assert leak not in logged


def test_unknown_algorithm_number_is_invalid_argument(
    server: LiveServer, fake: RecordingService
) -> None:
    failed = call_fails(
        server.stub.Enroll, pb.EnrollRequest(account_id="a", algorithm=cast(Any, 42))
    )
    assert (failed.code, failed.reason, failed.metadata) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_INVALID_ARGUMENT",
        {"field": "algorithm"},
    )
    assert fake.calls == []


def _raw_verify_request(account_id: bytes) -> bytes:
    """VerifyRequest{account_id} serialized by hand: field 1, wire type 2."""
    assert len(account_id) < 128
    return b"\x0a" + bytes([len(account_id)]) + account_id


def test_invalid_utf8_is_invalid_argument_and_never_reaches_the_service(
    server: LiveServer, fake: RecordingService
) -> None:
    # The Python protobuf runtime refuses such a message, so the bytes are sent raw.
    with pytest.raises(DecodeError):
        pb.VerifyRequest.FromString(_raw_verify_request(b"al\xffice"))
    raw = server.channel.unary_unary(
        "/totpd.v1.TotpService/Verify",
        request_serializer=None,
        response_deserializer=None,
    )
    with pytest.raises(grpc.RpcError) as caught:
        raw(_raw_verify_request(b"al\xffice"), timeout=5)
    failed = failure(caught.value)
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_INVALID_ARGUMENT",
    )
    assert fake.calls == []
    # The same bytes with valid UTF-8 do reach the service.
    raw(_raw_verify_request(b"alice"), timeout=5)
    assert fake.calls == [("verify", (VerifyItem("alice", "", None),))]


def test_message_over_the_size_limit_is_resource_exhausted(
    server: LiveServer, fake: RecordingService
) -> None:
    huge = "a" * (64 * 1024 + 1)  # make_settings caps messages at 64 KiB
    failed = call_fails(server.stub.Verify, pb.VerifyRequest(account_id=huge, code="1"))
    assert failed.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert fake.calls == []


def test_access_log_has_method_code_duration_and_no_payload(
    server: LiveServer, fake: RecordingService, no_secrets_in_logs: LogCapture
) -> None:
    server.stub.Verify(pb.VerifyRequest(account_id="alice-xyz", code="135791"), timeout=5)
    fake.error = TotpdError(ErrorReason.FACTOR_NOT_FOUND, "no")
    call_fails(server.stub.GetFactor, pb.GetFactorRequest(account_id="alice-xyz"))

    access = [json.loads(line) for line in no_secrets_in_logs.lines]
    access = [r for r in access if r["logger"] == "totpd.access"]
    assert [(r["method"], r["code"]) for r in access] == [
        ("/totpd.v1.TotpService/Verify", "OK"),
        ("/totpd.v1.TotpService/GetFactor", "NOT_FOUND"),
    ]
    assert all(isinstance(r["duration_ms"], float) and r["duration_ms"] >= 0 for r in access)
    logged = "\n".join(no_secrets_in_logs.lines)
    assert "135791" not in logged
    assert "alice-xyz" not in logged
