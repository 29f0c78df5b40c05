"""design.md section 5: every RPC survives every bad input with a clear status,
and nothing is written or counted.

One real server per module holds an account with an active and a pending
factor and a set of recovery codes. Each case sends one bad request and then
compares the whole `factors`, `accounts`, `recovery_codes`, `audit_calls` and
`audit_events` tables (every column, including failure counters, last used step, drift and
used codes) with the snapshot taken before: a single written byte fails the case.

Findings worth knowing (asserted below):
* Invalid UTF-8 in a string field: the protobuf runtime refuses to parse it;
  the server answers INVALID_ARGUMENT with an ErrorInfo (not grpc's bare
  INTERNAL "Exception deserializing request!").
* A negative period or digits sent by a client that encodes them as signed
  ints arrives as a huge uint32 (proto truncates the varint) and is refused.
* Zero digits/period/algorithm mean "server default" by proto convention and
  are therefore accepted (see test_zero_means_default).
* Messages over max_message_bytes are refused by grpc itself with
  RESOURCE_EXHAUSTED before any handler runs (no ErrorInfo: grpc's own status).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, text

from tests.rpc.conftest import Secrets, make_settings
from tests.rpc.harness import LiveServer, failure, running_server
from tests.totp_oracle import wire_code_at
from totpd.service.policy import Policy
from totpd.v1 import errors_pb2, factor_pb2, lifecycle_pb2
from totpd.v1 import totp_service_pb2 as pb

ACCOUNT = "victim"
MAX_BATCH = 5
MAX_MESSAGE = 64 * 1024  # make_settings

BAD_CODES = {
    "leading space": " 123456",
    "trailing newline": "123456\n",
    "full-width digits": "１２３４５６",
    "arabic-indic digits": "١٢٣٤٥٦",
    "underscore": "123_456",
    "plus sign": "+12345",
    "minus sign": "-12345",
    "empty": "",
    "seven digits for a six-digit factor": "1234567",
    "nine digits": "123456789",
    "five digits": "12345",
    "letter": "12345a",
    "NUL byte": "123\x00456",
    "10 KB": "1" * 10 * 1024,
}
BAD_ACCOUNT_IDS = {
    "empty": "",
    "leading space": " " + ACCOUNT,
    "trailing space": ACCOUNT + " ",
    "inner space": "vic tim",
    "full-width": "ｖｉｃｔｉｍ",
    "NUL byte": "vic\x00tim",
    "newline": ACCOUNT + "\n",
    "10 KB": "a" * 10 * 1024,
    "129 bytes": "a" * 129,
}
BAD_NAMES = {  # labels and issuers
    "colon": "Acme:Corp",
    "NUL byte": "Ac\x00me",
    "newline": "Acme\nCorp",
    "right-to-left override": "Acme\u202eproC",
    "leading space": " Acme",
    "10 KB": "x" * 10 * 1024,
    "65 characters": "x" * 65,
}


@dataclass(frozen=True)
class Victim:
    live: LiveServer
    database_url: str
    active_id: str
    pending_id: str


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victim]:
    from totpd.app import build_service

    tmp: Path = tmp_path_factory.mktemp("bad-inputs")
    settings = make_settings(tmp, Policy(max_batch_items=MAX_BATCH, backoff_base_seconds=0))
    with running_server(settings, build_service(settings)) as live:
        active = live.stub.Enroll(pb.EnrollRequest(account_id=ACCOUNT, label="active"), timeout=10)
        f = active.factor
        code = wire_code_at(
            active.secret_base32, f.algorithm, f.digits, f.period_seconds, time.time()
        )
        confirmed = live.stub.ConfirmEnrollment(
            pb.ConfirmEnrollmentRequest(account_id=ACCOUNT, factor_id=f.factor_id, code=code),
            timeout=10,
        )
        assert confirmed.outcome.result == factor_pb2.VERIFY_RESULT_VALID
        pending = live.stub.Enroll(pb.EnrollRequest(account_id=ACCOUNT, label="new"), timeout=10)
        live.stub.GenerateRecoveryCodes(
            lifecycle_pb2.GenerateRecoveryCodesRequest(account_id=ACCOUNT), timeout=10
        )
        yield Victim(live, settings.resolved_database_url(), f.factor_id, pending.factor.factor_id)


# Every table a call may write, in a stable order.
SNAPSHOT_QUERIES = {
    "factors": "SELECT * FROM factors ORDER BY id",
    "accounts": "SELECT * FROM accounts ORDER BY account_id, tenant",
    "recovery_codes": "SELECT * FROM recovery_codes ORDER BY code_hash",
    "audit_calls": "SELECT * FROM audit_calls ORDER BY id",
    "audit_events": "SELECT * FROM audit_events ORDER BY id",
}


def table_snapshot(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {
                table: [tuple(row) for row in connection.execute(text(query))]
                for table, query in SNAPSHOT_QUERIES.items()
            }
    finally:
        engine.dispose()


@pytest.fixture
def unchanged(victim: Victim) -> Iterator[None]:
    """Fails the test if the bad request wrote or counted anything."""
    before = table_snapshot(victim.database_url)
    assert len(before["factors"]) >= 2 and len(before["recovery_codes"]) == 10
    yield
    assert table_snapshot(victim.database_url) == before


Build = Callable[[Victim], Any]


# One builder per request shape: the bad value goes in exactly one field.
def code_requests(bad: str) -> dict[str, Build]:
    return {
        "ConfirmEnrollment": lambda v: pb.ConfirmEnrollmentRequest(
            account_id=ACCOUNT, factor_id=v.pending_id, code=bad
        ),
        "Verify": lambda v: pb.VerifyRequest(account_id=ACCOUNT, code=bad),
        "Verify one factor": lambda v: pb.VerifyRequest(
            account_id=ACCOUNT, code=bad, factor_id=v.active_id
        ),
        "Disable": lambda v: pb.DisableRequest(account_id=ACCOUNT, factor_id=v.active_id, code=bad),
        "BatchVerify": lambda v: pb.BatchVerifyRequest(
            items=[pb.BatchVerifyItem(account_id=ACCOUNT, code=bad)]
        ),
        "Resync code1": lambda v: lifecycle_pb2.ResyncRequest(
            account_id=ACCOUNT, factor_id=v.active_id, code1=bad, code2="123456"
        ),
        "Resync code2": lambda v: lifecycle_pb2.ResyncRequest(
            account_id=ACCOUNT, factor_id=v.active_id, code1="123456", code2=bad
        ),
        "VerifyRecoveryCode": lambda v: lifecycle_pb2.VerifyRecoveryCodeRequest(
            account_id=ACCOUNT, code=bad
        ),
    }


# Typed by hand, a recovery code may vary in case and separators; these may not.
BAD_RECOVERY_CODES = {
    "eleven characters": "k7q2-9xmf-w4c",
    "thirteen characters": "k7q2-9xmf-w4c8a",
    "u (not in the alphabet)": "k7q2-9xmf-w4cu",
    "underscore separator": "k7q2_9xmf_w4c8",
    "full-width letters": "ｋ7q2-9xmf-w4c8",
    "NUL byte": "k7q2-9xmf\x00w4c8",
}


def account_requests(bad: str) -> dict[str, Build]:
    return {
        "Enroll": lambda v: pb.EnrollRequest(account_id=bad),
        "ConfirmEnrollment": lambda v: pb.ConfirmEnrollmentRequest(
            account_id=bad, factor_id=v.pending_id, code="123456"
        ),
        "Verify": lambda v: pb.VerifyRequest(account_id=bad, code="123456"),
        "BatchVerify": lambda v: pb.BatchVerifyRequest(
            items=[pb.BatchVerifyItem(account_id=bad, code="123456")]
        ),
        "Disable": lambda v: pb.DisableRequest(account_id=bad, force=True),
        "GetFactor": lambda v: pb.GetFactorRequest(account_id=bad, factor_id=v.active_id),
        "ListFactors": lambda v: pb.ListFactorsRequest(account_id=bad),
        "GenerateRecoveryCodes": lambda v: lifecycle_pb2.GenerateRecoveryCodesRequest(
            account_id=bad
        ),
        "VerifyRecoveryCode": lambda v: lifecycle_pb2.VerifyRecoveryCodeRequest(
            account_id=bad, code="k7q2-9xmf-w4c8"
        ),
        "Unlock": lambda v: lifecycle_pb2.UnlockRequest(account_id=bad),
        "Resync": lambda v: lifecycle_pb2.ResyncRequest(
            account_id=bad, factor_id=v.active_id, code1="123456", code2="654321"
        ),
    }


def factor_requests(spoil: Callable[[str], str]) -> dict[str, Build]:
    return {
        "ConfirmEnrollment": lambda v: pb.ConfirmEnrollmentRequest(
            account_id=ACCOUNT, factor_id=spoil(v.pending_id), code="123456"
        ),
        "Verify": lambda v: pb.VerifyRequest(
            account_id=ACCOUNT, code="123456", factor_id=spoil(v.active_id)
        ),
        "BatchVerify": lambda v: pb.BatchVerifyRequest(
            items=[
                pb.BatchVerifyItem(account_id=ACCOUNT, code="123456", factor_id=spoil(v.active_id))
            ]
        ),
        "Disable": lambda v: pb.DisableRequest(
            account_id=ACCOUNT, factor_id=spoil(v.active_id), force=True
        ),
        "GetFactor": lambda v: pb.GetFactorRequest(
            account_id=ACCOUNT, factor_id=spoil(v.active_id)
        ),
        "Unlock": lambda v: lifecycle_pb2.UnlockRequest(
            account_id=ACCOUNT, factor_id=spoil(v.active_id)
        ),
        "Resync": lambda v: lifecycle_pb2.ResyncRequest(
            account_id=ACCOUNT, factor_id=spoil(v.active_id), code1="123456", code2="654321"
        ),
    }


def enroll_request(**fields: Any) -> Build:
    return lambda v: pb.EnrollRequest(account_id=ACCOUNT, **fields)


BAD_FACTOR_IDS: dict[str, Callable[[str], str]] = {
    "leading space": lambda fid: " " + fid,
    "NUL byte": lambda fid: fid + "\x00",
    "upper case": str.upper,
    "full-width": lambda fid: fid.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789"}),
    "10 KB": lambda fid: fid * 300,
}


def _cases() -> Iterator[Any]:
    """(rpc, request builder, expected reason, expected field) for every bad input."""

    def case(name: str, target: str, build: Build, reason: str, fld: str) -> Any:
        rpc = target.split()[0]
        return pytest.param(rpc, build, reason, fld, id=f"{target}-{name}")

    for name, bad in BAD_CODES.items():
        for target, build in code_requests(bad).items():
            reason = "CODE_REQUIRED" if (bad, target) == ("", "Disable") else "MALFORMED_CODE"
            fld = target.split()[1] if target.startswith("Resync") else "code"
            yield case(f"code {name}", target, build, reason, fld)
    for name, bad in BAD_RECOVERY_CODES.items():
        build = code_requests(bad)["VerifyRecoveryCode"]
        yield case(f"code {name}", "VerifyRecoveryCode", build, "MALFORMED_CODE", "code")
    for name, bad in BAD_ACCOUNT_IDS.items():
        for target, build in account_requests(bad).items():
            yield case(f"account_id {name}", target, build, "INVALID_ARGUMENT", "account_id")
    for name, spoil in BAD_FACTOR_IDS.items():
        for target, build in factor_requests(spoil).items():
            yield case(f"factor_id {name}", target, build, "INVALID_ARGUMENT", "factor_id")
    for name, bad in BAD_NAMES.items():
        for fld in ("label", "issuer"):
            yield case(
                f"{fld} {name}", "Enroll", enroll_request(**{fld: bad}), "INVALID_ARGUMENT", fld
            )
    for digits in (1, 5, 9, 10, 2**32 - 1):
        build = enroll_request(label="x", digits=digits)
        yield case(f"digits {digits}", "Enroll", build, "INVALID_ARGUMENT", "digits")
    for period in (1, 14, 121, 3600, 2**32 - 1):
        build = enroll_request(label="x", period_seconds=period)
        yield case(f"period {period}", "Enroll", build, "INVALID_ARGUMENT", "period_seconds")
    for algorithm in (4, 99, 2**31 - 1, -1):
        build = enroll_request(label="x", algorithm=algorithm)
        yield case(f"algorithm {algorithm}", "Enroll", build, "INVALID_ARGUMENT", "algorithm")
    yield case(
        "without code or force",
        "Disable",
        lambda v: pb.DisableRequest(account_id=ACCOUNT, factor_id=v.active_id),
        "CODE_REQUIRED",
        "code",
    )


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(("rpc", "build", "reason", "field"), list(_cases()))
def test_bad_input_is_invalid_argument_and_writes_nothing(
    victim: Victim, rpc: str, build: Build, reason: str, field: str
) -> None:
    request = build(victim)
    method = getattr(victim.live.stub, rpc)
    if rpc == "BatchVerify":
        # A malformed item never fails the batch: it carries its own error.
        (result,) = method(request, timeout=10).results
        assert result.WhichOneof("result") == "error"
        assert result.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert result.error.reason == errors_pb2.ErrorReason.Value(f"ERROR_REASON_{reason}")
        assert result.error.field == field
        return
    with pytest.raises(grpc.RpcError) as caught:
        method(request, timeout=10)
    failed = failure(caught.value)
    assert failed.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (failed.reason, failed.domain, failed.metadata) == (
        f"ERROR_REASON_{reason}",
        "totpd.v1",
        {"field": field},
    )
    assert failed.detail_count == 1
    assert len(failed.message) < 300  # a rule, never an echo of a 10 KB input


# --- bytes the Python protobuf API refuses to produce -----------------------------


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2) with a short payload."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _varint_field(number: int, value: int) -> bytes:
    """A varint field; negative values are encoded as 64-bit two's complement."""
    value &= (1 << 64) - 1
    out = bytearray([number << 3])
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


INVALID_UTF8 = b"vic\xfftim"
RAW_METHODS = {
    "Enroll": _field(1, INVALID_UTF8),
    "ConfirmEnrollment": _field(1, INVALID_UTF8),
    "Verify": _field(1, INVALID_UTF8),
    "BatchVerify": _field(1, _field(1, INVALID_UTF8)),
    "Disable": _field(1, INVALID_UTF8),
    "GetFactor": _field(1, INVALID_UTF8),
    "ListFactors": _field(1, INVALID_UTF8),
    "GenerateRecoveryCodes": _field(1, INVALID_UTF8),
    "VerifyRecoveryCode": _field(1, INVALID_UTF8),
    "VerifyRecoveryCode code": _field(1, ACCOUNT.encode()) + _field(2, b"k7q2-9xmf\xffw4c"),
    "Unlock": _field(1, INVALID_UTF8),
    "Resync": _field(1, INVALID_UTF8),
    "Verify code": _field(1, ACCOUNT.encode()) + _field(2, b"12345\xc0"),
    "Enroll label": _field(1, ACCOUNT.encode()) + _field(2, b"\xed\xa0\x80"),  # a surrogate
}


def _raw_call(live: LiveServer, method: str, body: bytes) -> grpc.RpcError:
    call = live.channel.unary_unary(f"/totpd.v1.TotpService/{method}", None, None)
    with pytest.raises(grpc.RpcError) as caught:
        call(body, timeout=10)
    return caught.value


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("target", list(RAW_METHODS))
def test_invalid_utf8_is_invalid_argument(victim: Victim, target: str) -> None:
    failed = failure(_raw_call(victim.live, target.split()[0], RAW_METHODS[target]))
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_INVALID_ARGUMENT",
    )


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(("field_number", "name"), [(5, "digits"), (6, "period_seconds")])
def test_negative_numbers_arrive_huge_and_are_refused(
    victim: Victim, field_number: int, name: str
) -> None:
    body = _field(1, ACCOUNT.encode()) + _field(2, b"neg") + _varint_field(field_number, -1)
    assert pb.EnrollRequest.FromString(body).ListFields()[-1][1] == 2**32 - 1
    failed = failure(_raw_call(victim.live, "Enroll", body))
    assert (failed.code, failed.reason, failed.metadata) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_INVALID_ARGUMENT",
        {"field": name},
    )


@pytest.mark.usefixtures("unchanged")
def test_oversized_batch_is_refused_whole(victim: Victim) -> None:
    items = [pb.BatchVerifyItem(account_id=ACCOUNT, code="123456")] * (MAX_BATCH + 1)
    with pytest.raises(grpc.RpcError) as caught:
        victim.live.stub.BatchVerify(pb.BatchVerifyRequest(items=items), timeout=10)
    failed = failure(caught.value)
    assert (failed.code, failed.reason, failed.metadata) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_BATCH_TOO_LARGE",
        {"field": "items"},
    )


OVERSIZED: dict[str, Callable[[str], Any]] = {
    "Enroll": lambda big: pb.EnrollRequest(account_id=ACCOUNT, label=big),
    "ConfirmEnrollment": lambda big: pb.ConfirmEnrollmentRequest(account_id=ACCOUNT, code=big),
    "Verify": lambda big: pb.VerifyRequest(account_id=ACCOUNT, code=big),
    "BatchVerify": lambda big: pb.BatchVerifyRequest(
        items=[pb.BatchVerifyItem(account_id=ACCOUNT, code=big[:1000])] * 70
    ),
    "Disable": lambda big: pb.DisableRequest(account_id=ACCOUNT, code=big),
    "GetFactor": lambda big: pb.GetFactorRequest(account_id=ACCOUNT, factor_id=big),
    "ListFactors": lambda big: pb.ListFactorsRequest(account_id=big),
}


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("rpc", list(OVERSIZED))
def test_message_over_the_limit_is_resource_exhausted(victim: Victim, rpc: str) -> None:
    request = OVERSIZED[rpc]("1" * (MAX_MESSAGE + 1))
    assert request.ByteSize() > MAX_MESSAGE
    with pytest.raises(grpc.RpcError) as caught:
        getattr(victim.live.stub, rpc)(request, timeout=10)
    assert failure(caught.value).code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_zero_means_default(victim: Victim, secrets_seen: Secrets) -> None:
    """Proto3 zero values are "unset": digits 0, period 0, ALGORITHM_UNSPECIFIED."""
    enrolled = victim.live.stub.Enroll(
        pb.EnrollRequest(account_id="zero-defaults", digits=0, period_seconds=0),
        timeout=10,
    )
    secrets_seen.add(enrolled.secret_base32, enrolled.otpauth_uri)
    f = enrolled.factor
    assert (f.algorithm, f.digits, f.period_seconds) == (factor_pb2.ALGORITHM_SHA1, 6, 30)
