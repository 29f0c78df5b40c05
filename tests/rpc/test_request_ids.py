"""request_id over gRPC (AIP-155), on a real server with SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from tests.pg_server import ThrowawayPostgres
from tests.rpc.conftest import Secrets, make_settings
from tests.rpc.harness import Enrolled, LiveServer, call_fails, running_server
from totpd.store import open_engine
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb

REUSED = "ERROR_REASON_REQUEST_ID_REUSED"


@pytest.fixture
def server(engine: Engine, tmp_path: Path) -> Iterator[LiveServer]:
    """A live server on the `engine` fixture's database (SQLite, then PostgreSQL)."""
    from totpd.app import build_service

    url = engine.url.render_as_string(hide_password=False)
    settings = replace(make_settings(tmp_path), database_url=url)
    with running_server(settings, build_service(settings)) as live:
        yield live


def enroll(server: LiveServer, secrets: Secrets, **fields: Any) -> pb.EnrollResponse:
    response = server.stub.Enroll(pb.EnrollRequest(**fields), timeout=10)
    secrets.add(response.secret_base32, response.otpauth_uri)
    return response


def listed(server: LiveServer, account: str) -> list[str]:
    request = pb.ListFactorsRequest(account_id=account, include_inactive=True)
    return [f.factor_id for f in server.stub.ListFactors(request, timeout=10).factors]


def test_a_retried_enroll_gets_the_same_factor_and_secret(
    server: LiveServer, secrets_seen: Secrets
) -> None:
    first = enroll(server, secrets_seen, account_id="alice", label="phone", request_id="e-1")
    again = enroll(server, secrets_seen, account_id="alice", label="phone", request_id="e-1")
    assert again.factor.factor_id == first.factor.factor_id
    assert again.secret_base32 == first.secret_base32
    assert again == first
    assert listed(server, "alice") == [first.factor.factor_id]


def test_a_request_id_reused_for_other_fields_is_refused(
    server: LiveServer, secrets_seen: Secrets
) -> None:
    enroll(server, secrets_seen, account_id="alice", label="phone", request_id="e-1")
    failure = call_fails(
        server.stub.Enroll,
        pb.EnrollRequest(account_id="alice", label="tablet", request_id="e-1"),
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, REUSED)
    assert failure.metadata == {"field": "request_id"}
    assert len(listed(server, "alice")) == 1


@pytest.mark.parametrize("bad", ["x" * 65, "with space", "tab\there", "nul\x00", "caf\u00e9"])
def test_a_malformed_request_id_is_refused_and_nothing_is_written(
    server: LiveServer, bad: str
) -> None:
    for method, request in (
        (server.stub.Enroll, pb.EnrollRequest(account_id="alice", request_id=bad)),
        (
            server.stub.Disable,
            pb.DisableRequest(account_id="alice", force=True, request_id=bad),
        ),
        (
            server.stub.ConfirmEnrollment,
            pb.ConfirmEnrollmentRequest(
                account_id="alice",
                factor_id="00000000-0000-4000-8000-000000000000",
                code="123456",
                request_id=bad,
            ),
        ),
    ):
        failure = call_fails(method, request)
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_ARGUMENT",
        )
        assert failure.metadata == {"field": "request_id"}
        assert bad not in failure.message
    assert listed(server, "alice") == []


def test_a_retried_confirm_and_disable_get_the_first_result_without_new_codes(
    server: LiveServer, secrets_seen: Secrets
) -> None:
    enrolled = Enrolled(enroll(server, secrets_seen, account_id="alice"))
    factor_id = enrolled.factor.factor_id
    code = enrolled.code()
    secrets_seen.add(code)
    confirm = pb.ConfirmEnrollmentRequest(
        account_id="alice", factor_id=factor_id, code=code, request_id="c-1"
    )
    first = server.stub.ConfirmEnrollment(confirm, timeout=10)
    again = server.stub.ConfirmEnrollment(confirm, timeout=10)
    assert first.outcome.result == again.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert again.factor.state == factor_pb2.FACTOR_STATE_ACTIVE

    code = enrolled.code(offset_steps=1)  # the next step: the current one is used
    secrets_seen.add(code)
    disable = pb.DisableRequest(account_id="alice", code=code, request_id="d-1")
    disabled = server.stub.Disable(disable, timeout=10)
    assert disabled.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    assert [f.factor_id for f in disabled.factors] == [factor_id]
    # The lost-response retry: same id, same (now used) code.
    retried = server.stub.Disable(disable, timeout=10)
    assert retried == disabled


def test_concurrent_duplicate_enrolls_create_one_factor(
    server: LiveServer, secrets_seen: Secrets
) -> None:
    threads = 6
    barrier = threading.Barrier(threads)
    factor_ids: list[str] = []
    refused: list[grpc.StatusCode] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait(timeout=30)
        request = pb.EnrollRequest(account_id="alice", label="phone", request_id="dup")
        try:
            response = server.stub.Enroll(request, timeout=30)
        except grpc.RpcError as error:
            with lock:
                refused.append(error.code())
            return
        secrets_seen.add(response.secret_base32, response.otpauth_uri)
        with lock:
            factor_ids.append(response.factor.factor_id)

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    # A duplicate still running after the wait is told to retry, never served twice.
    assert set(refused) <= {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert len(factor_ids) + len(refused) == threads and factor_ids
    assert len(set(factor_ids)) == 1
    assert listed(server, "alice") == factor_ids[:1]


def set_connections(admin: Engine, allowed: bool) -> None:
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(
            text(f"ALTER DATABASE totpd ALLOW_CONNECTIONS {'true' if allowed else 'false'}")
        )
        if not allowed:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = 'totpd' AND pid <> pg_backend_pid()"
                )
            )


@pytest.mark.postgres
def test_a_request_id_call_during_an_outage_is_unavailable_and_its_retry_acts_once(
    tmp_path: Path, secrets_seen: Secrets
) -> None:
    from totpd.app import build_service

    database = ThrowawayPostgres()
    database.start()
    admin = open_engine(
        make_url(database.url).set(database="postgres").render_as_string(hide_password=False)
    )
    try:
        settings = replace(make_settings(tmp_path), database_url=database.url)
        with running_server(settings, build_service(settings)) as server:
            set_connections(admin, allowed=False)
            request = pb.EnrollRequest(account_id="alice", label="phone", request_id="e-1")
            failure = call_fails(server.stub.Enroll, request)
            assert (failure.code, failure.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                "ERROR_REASON_STORE_UNAVAILABLE",
            )
            set_connections(admin, allowed=True)
            # The pool may still hold connections the outage ended: retry as a client would.
            first = None
            for _ in range(5):
                try:
                    first = server.stub.Enroll(request, timeout=10)
                    break
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert first is not None
            secrets_seen.add(first.secret_base32, first.otpauth_uri)
            assert server.stub.Enroll(request, timeout=10) == first
            assert listed(server, "alice") == [first.factor.factor_id]
    finally:
        admin.dispose()
        database.stop()
