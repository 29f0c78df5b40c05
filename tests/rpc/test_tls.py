"""TLS and mTLS on a real server on a free loopback port, with throwaway
certificates from tests/tls_certs.py: who is answered and who is turned away."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.rpc.harness import LiveServer, running_server
from tests.tls_certs import TlsFiles, write_tls_files
from totpd.config import Settings
from totpd.rpc.server import ServerError, create_server
from totpd.rpc.tls import tls_log_fields
from totpd.v1 import totp_service_pb2 as pb
from totpd.v1 import totp_service_pb2_grpc

TIMEOUT = 5


def credentials(ca: bytes, client: tuple[bytes, bytes] | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    cert, key = client
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def client_pair(files: TlsFiles) -> tuple[bytes, bytes]:
    return files.client_cert.read_bytes(), files.client_key.read_bytes()


def tls_settings(settings: Settings, files: TlsFiles, *, mtls: bool) -> Settings:
    return replace(
        settings,
        tls_cert_file=files.server_cert,
        tls_key_file=files.server_key,
        tls_client_ca_file=files.ca if mtls else None,
    )


def enroll_and_list(channel: grpc.Channel, account_id: str) -> list[str]:
    stub = totp_service_pb2_grpc.TotpServiceStub(channel)
    enrolled = stub.Enroll(pb.EnrollRequest(account_id=account_id), timeout=TIMEOUT)
    listed = stub.ListFactors(pb.ListFactorsRequest(account_id=account_id), timeout=TIMEOUT)
    assert [f.factor_id for f in listed.factors] == [enrolled.factor.factor_id]
    return [f.factor_id for f in listed.factors]


def refused(channel: grpc.Channel) -> grpc.StatusCode:
    stub = totp_service_pb2_grpc.TotpServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListFactors(pb.ListFactorsRequest(account_id="nobody"), timeout=TIMEOUT)
    code: grpc.StatusCode = caught.value.code()  # type: ignore[attr-defined]
    return code


@pytest.fixture
def tls_server(rpc_settings: Settings, tls_files: TlsFiles) -> Iterator[LiveServer]:
    from totpd.app import build_service

    settings = tls_settings(rpc_settings, tls_files, mtls=False)
    with running_server(
        settings, build_service(settings), credentials(tls_files.ca.read_bytes())
    ) as server:
        yield server


@pytest.fixture
def mtls_server(rpc_settings: Settings, tls_files: TlsFiles) -> Iterator[LiveServer]:
    from totpd.app import build_service

    settings = tls_settings(rpc_settings, tls_files, mtls=True)
    creds = credentials(tls_files.ca.read_bytes(), client_pair(tls_files))
    with running_server(settings, build_service(settings), creds) as server:
        yield server


def test_tls_server_answers_a_client_that_trusts_its_ca(tls_server: LiveServer) -> None:
    assert len(enroll_and_list(tls_server.channel, "tls-alice")) == 1
    health = health_pb2_grpc.HealthStub(tls_server.channel)
    check = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
    assert check.status == health_pb2.HealthCheckResponse.SERVING


def test_tls_server_name_localhost_matches_the_certificate(
    tls_server: LiveServer, tls_files: TlsFiles
) -> None:
    creds = credentials(tls_files.ca.read_bytes())
    with grpc.secure_channel(
        tls_server.address, creds, options=[("grpc.ssl_target_name_override", "localhost")]
    ) as channel:
        assert len(enroll_and_list(channel, "tls-by-name")) == 1


def test_tls_server_refuses_a_client_trusting_another_ca(
    tls_server: LiveServer, tls_files: TlsFiles
) -> None:
    with grpc.secure_channel(
        tls_server.address, credentials(tls_files.other_ca.read_bytes())
    ) as channel:
        assert refused(channel) == grpc.StatusCode.UNAVAILABLE


def test_tls_server_refuses_plaintext(tls_server: LiveServer) -> None:
    with grpc.insecure_channel(tls_server.address) as channel:
        assert refused(channel) == grpc.StatusCode.UNAVAILABLE


def test_tls_without_client_ca_does_not_ask_for_a_certificate(
    tls_server: LiveServer, tls_files: TlsFiles
) -> None:
    creds = credentials(tls_files.ca.read_bytes(), client_pair(tls_files))
    with grpc.secure_channel(tls_server.address, creds) as channel:
        assert len(enroll_and_list(channel, "tls-with-cert")) == 1


def test_mtls_server_accepts_a_client_with_the_right_certificate(
    mtls_server: LiveServer,
) -> None:
    assert len(enroll_and_list(mtls_server.channel, "mtls-alice")) == 1


def test_mtls_server_rejects_a_client_without_a_certificate(
    mtls_server: LiveServer, tls_files: TlsFiles
) -> None:
    with grpc.secure_channel(mtls_server.address, credentials(tls_files.ca.read_bytes())) as ch:
        assert refused(ch) == grpc.StatusCode.UNAVAILABLE


def test_mtls_server_rejects_a_certificate_from_another_ca(
    mtls_server: LiveServer, tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.tls_certs import write_tls_files

    stranger = write_tls_files(tmp_path_factory.mktemp("stranger"))  # its own CA
    creds = credentials(tls_files.ca.read_bytes(), client_pair(stranger))
    with grpc.secure_channel(mtls_server.address, creds) as channel:
        assert refused(channel) == grpc.StatusCode.UNAVAILABLE


def test_bad_tls_settings_fail_before_binding(rpc_settings: Settings, tls_files: TlsFiles) -> None:
    from totpd.app import build_service

    service = build_service(rpc_settings)
    wrong_key = replace(
        tls_settings(rpc_settings, tls_files, mtls=False), tls_key_file=tls_files.client_key
    )
    with pytest.raises(ServerError, match="is not the private key of the certificate"):
        create_server(wrong_key, service)
    half = replace(rpc_settings, tls_cert_file=tls_files.server_cert)
    with pytest.raises(ServerError, match="tls_key_file is not set"):
        create_server(half, service)


def test_startup_log_fields_name_the_mode_and_paths(
    rpc_settings: Settings, tls_files: TlsFiles
) -> None:
    assert tls_log_fields(rpc_settings) == {"tls": "off"}
    assert tls_log_fields(tls_settings(rpc_settings, tls_files, mtls=False)) == {
        "tls": "tls",
        "tls_cert_file": str(tls_files.server_cert),
    }
    assert tls_log_fields(tls_settings(rpc_settings, tls_files, mtls=True)) == {
        "tls": "mtls",
        "tls_cert_file": str(tls_files.server_cert),
        "tls_client_ca_file": str(tls_files.ca),
    }


def _install(source: TlsFiles, target: TlsFiles) -> None:
    """Rotate: the server's certificate and key files now hold `source`'s pair."""
    for name in ("server_cert", "server_key"):
        getattr(target, name).write_bytes(getattr(source, name).read_bytes())


def test_a_rotated_certificate_is_served_without_a_restart(
    rpc_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from totpd.app import build_service

    served = write_tls_files(tmp_path / "served")  # the files the server reads
    rotated = write_tls_files(tmp_path / "rotated")  # a new pair from another CA
    settings = tls_settings(rpc_settings, served, mtls=False)
    old_ca = served.ca.read_bytes()
    with running_server(settings, build_service(settings), credentials(old_ca)) as server:
        assert len(enroll_and_list(server.channel, "before-rotation")) == 1

        # A replacement that does not load is refused; the old pair stays in use.
        served.server_cert.write_bytes(rotated.server_cert.read_bytes())  # key not yet
        with caplog.at_level(logging.WARNING, logger="totpd.server"):
            with grpc.secure_channel(server.address, credentials(old_ca)) as channel:
                assert len(enroll_and_list(channel, "half-rotated")) == 1
        assert any("do not load" in r.getMessage() for r in caplog.records)

        _install(rotated, served)
        with grpc.secure_channel(server.address, credentials(rotated.ca.read_bytes())) as new:
            assert len(enroll_and_list(new, "after-rotation")) == 1
        with grpc.secure_channel(server.address, credentials(old_ca)) as stale:
            assert refused(stale) == grpc.StatusCode.UNAVAILABLE
