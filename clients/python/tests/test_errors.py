"""Error decoding and enum mirrors, without a server."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from totpd_client import ErrorReason, FactorState, TotpdError, VerifyOutcome, VerifyResult
from totpd_client.v1 import errors_pb2, factor_pb2


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, trailers: tuple) -> None:
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._trailers


def rich(domain: str, reason: str, field: str) -> bytes:
    detail = any_pb2.Any()
    info = error_details_pb2.ErrorInfo(domain=domain, reason=reason, metadata={"field": field})
    detail.Pack(info)
    return status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message="bad code", details=[detail]
    ).SerializeToString()


def test_decodes_reason_and_field() -> None:
    err = TotpdError.from_rpc_error(
        FakeRpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "bad code",
            (("grpc-status-details-bin", rich("totpd.v1", "ERROR_REASON_MALFORMED_CODE", "code")),),
        )
    )
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason is ErrorReason.MALFORMED_CODE
    assert err.field == "code"
    assert err.metadata == {"field": "code"}


def test_foreign_domain_and_unknown_reason_are_unspecified() -> None:
    for domain, reason in (
        ("example.com", "ERROR_REASON_MALFORMED_CODE"),
        ("totpd.v1", "ERROR_REASON_FROM_THE_FUTURE"),
    ):
        err = TotpdError.from_rpc_error(
            FakeRpcError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "x",
                (("grpc-status-details-bin", rich(domain, reason, "f")),),
            )
        )
        assert err.reason is ErrorReason.UNSPECIFIED
        assert err.code is grpc.StatusCode.INVALID_ARGUMENT


def test_plain_status_and_garbage_trailer() -> None:
    err = TotpdError.from_rpc_error(
        FakeRpcError(
            grpc.StatusCode.UNAVAILABLE, "down", (("grpc-status-details-bin", b"\xff\xff\xff"),)
        )
    )
    assert (err.code, err.reason, err.field) == (
        grpc.StatusCode.UNAVAILABLE,
        ErrorReason.UNSPECIFIED,
        "",
    )


def test_item_error() -> None:
    err = TotpdError.from_item_error(5, "ERROR_REASON_ACCOUNT_NOT_FOUND", "no", "account_id")
    assert err.code is grpc.StatusCode.NOT_FOUND
    assert err.reason is ErrorReason.ACCOUNT_NOT_FOUND
    assert err.field == "account_id"


def test_enums_mirror_the_proto() -> None:
    assert {r.value for r in ErrorReason} == set(errors_pb2.ErrorReason.keys())
    assert {f"VERIFY_RESULT_{r.name}": r.value for r in VerifyResult} == dict(
        factor_pb2.VerifyResult.items()
    )
    assert {f"FACTOR_STATE_{s.name}": s.value for s in FactorState} == dict(
        factor_pb2.FactorState.items()
    )
    assert VerifyResult(99) is VerifyResult.UNSPECIFIED


def test_new_reasons_decode() -> None:
    for name, reason in (
        ("ERROR_REASON_DEADLINE_EXCEEDED", ErrorReason.DEADLINE_EXCEEDED),
        ("ERROR_REASON_RATE_LIMITED", ErrorReason.RATE_LIMITED),
        ("ERROR_REASON_REQUEST_ID_REUSED", ErrorReason.REQUEST_ID_REUSED),
    ):
        err = TotpdError.from_rpc_error(
            FakeRpcError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "x",
                (("grpc-status-details-bin", rich("totpd.v1", name, "request_id")),),
            )
        )
        assert err.reason is reason
        assert TotpdError.from_item_error(3, name, "x", "").reason is reason


def with_retry_info(reason: str, seconds: int, nanos: int) -> bytes:
    info, retry = any_pb2.Any(), any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(domain="totpd.v1", reason=reason))
    retry.Pack(
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds, nanos=nanos))
    )
    return status_pb2.Status(
        code=code_pb2.RESOURCE_EXHAUSTED, message="slow down", details=[info, retry]
    ).SerializeToString()


def test_retry_info_delay_is_exposed_beside_the_reason() -> None:
    err = TotpdError.from_rpc_error(
        FakeRpcError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "slow down",
            (
                (
                    "grpc-status-details-bin",
                    with_retry_info("ERROR_REASON_RATE_LIMITED", 1, 500_000_000),
                ),
            ),
        )
    )
    assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.reason is ErrorReason.RATE_LIMITED
    assert err.retry_after == 1.5


def test_no_retry_info_means_no_retry_after() -> None:
    err = TotpdError.from_rpc_error(
        FakeRpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "bad code",
            (("grpc-status-details-bin", rich("totpd.v1", "ERROR_REASON_MALFORMED_CODE", "code")),),
        )
    )
    assert err.retry_after is None


def test_unlock_required_decodes() -> None:
    locked = factor_pb2.VerifyOutcome(
        result=factor_pb2.VERIFY_RESULT_LOCKED, factor_id="f", unlock_required=True
    )
    outcome = VerifyOutcome.from_proto(locked)
    assert outcome.result is VerifyResult.LOCKED
    assert outcome.unlock_required is True
    assert VerifyOutcome.from_proto(factor_pb2.VerifyOutcome()).unlock_required is False
