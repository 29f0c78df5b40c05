"""Callers named by their mTLS client certificate: from a URI SAN (a SPIFFE ID), a DNS
SAN or the subject CN; an expired or foreign certificate is refused at the handshake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from tests.rpc.callers_files import TestCaller, write_callers
from tests.rpc.conftest import Secrets, make_settings
from tests.rpc.harness import LogCapture, failure, running_server
from tests.tls_certs import (
    CLIENT_CN,
    CLIENT_DNS,
    SPIFFE_ID,
    ClientIdentity,
    IdentityFiles,
    write_identity_files,
)
from totpd.app import build_service
from totpd.config import Settings
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc

REQUEST = pb.ListFactorsRequest(account_id="alice")
TOKEN_CALLER = TestCaller("by-token", permissions=["read"])


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> IdentityFiles:
    return write_identity_files(tmp_path_factory.mktemp("identities"))


def mtls_settings(tmp_path: Path, files: IdentityFiles, identity: str) -> Settings:
    callers = [
        TestCaller(name, permissions=["read"], token=None)
        for name in (SPIFFE_ID, CLIENT_DNS, CLIENT_CN)
    ]
    return replace(
        make_settings(tmp_path),
        tls_cert_file=files.server_cert,
        tls_key_file=files.server_key,
        tls_client_ca_file=files.ca,
        callers_file=write_callers(tmp_path / "callers.toml", [*callers, TOKEN_CALLER]),
        client_identity=identity,
    )


@pytest.fixture
def identity_setting() -> str:
    return "uri,dns,cn"


@pytest.fixture
def mtls_port(
    tmp_path: Path, identities: IdentityFiles, identity_setting: str, secrets_seen: Secrets
) -> Iterator[int]:
    secrets_seen.add(TOKEN_CALLER.token or "")
    settings = mtls_settings(tmp_path, identities, identity_setting)
    with running_server(settings, build_service(settings)) as live:
        yield live.port


def list_as(
    port: int, files: IdentityFiles, client: ClientIdentity, metadata: list[tuple[str, str]]
) -> grpc.StatusCode:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=files.ca.read_bytes(),
        private_key=client.key.read_bytes(),
        certificate_chain=client.cert.read_bytes(),
    )
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        stub = totp_service_pb2_grpc.TotpServiceStub(channel)
        try:
            stub.ListFactors(REQUEST, metadata=metadata, timeout=5)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
            if code is grpc.StatusCode.UNAUTHENTICATED:
                assert failure(error).reason == "ERROR_REASON_UNAUTHENTICATED"
            return code
    return grpc.StatusCode.OK


def callers_logged(capture: LogCapture) -> list[str]:
    lines = (json.loads(line) for line in capture.lines)
    return [line.get("caller", "?") for line in lines if line.get("logger") == "totpd.access"]


def test_a_caller_is_named_by_its_uri_san_else_dns_san_else_cn(
    mtls_port: int, identities: IdentityFiles, no_secrets_in_logs: LogCapture
) -> None:
    for client in (identities.uri, identities.dns, identities.cn):
        assert list_as(mtls_port, identities, client, []) is grpc.StatusCode.OK
    # A bearer token names the caller even over a certificate of another.
    assert list_as(mtls_port, identities, identities.uri, TOKEN_CALLER.metadata()) is (
        grpc.StatusCode.OK
    )
    assert callers_logged(no_secrets_in_logs) == [SPIFFE_ID, CLIENT_DNS, CLIENT_CN, "by-token"]


@pytest.mark.parametrize("identity_setting", ["cn"])
def test_client_identity_chooses_which_name_counts(
    mtls_port: int, identities: IdentityFiles, no_secrets_in_logs: LogCapture
) -> None:
    """With client_identity "cn" the SPIFFE certificate is its CN, which no caller has."""
    assert list_as(mtls_port, identities, identities.uri, []) is grpc.StatusCode.UNAUTHENTICATED
    assert list_as(mtls_port, identities, identities.cn, []) is grpc.StatusCode.OK
    assert callers_logged(no_secrets_in_logs) == ["", CLIENT_CN]


def test_an_expired_or_foreign_certificate_is_refused_at_the_handshake(
    mtls_port: int, identities: IdentityFiles, no_secrets_in_logs: LogCapture
) -> None:
    for client in (identities.expired, identities.foreign):
        assert list_as(mtls_port, identities, client, []) is grpc.StatusCode.UNAVAILABLE
    assert callers_logged(no_secrets_in_logs) == []  # no call reached a handler
    assert list_as(mtls_port, identities, identities.uri, []) is grpc.StatusCode.OK
