"""`totpd serve` reads its TLS files once at startup (`load_tls`) and builds the
server from what it read: the files are not read a second time to start."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.tls_certs import TlsFiles
from totpd.app import build_service
from totpd.config import Settings
from totpd.rpc.server import ServerError, create_server
from totpd.rpc.tls import load_tls


def test_the_server_starts_from_the_tls_material_read_at_startup(
    tmp_path: Path, rpc_settings: Settings, tls_files: TlsFiles
) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(tls_files.server_cert, cert)
    shutil.copy(tls_files.server_key, key)
    settings = replace(rpc_settings, tls_cert_file=cert, tls_key_file=key)
    material = load_tls(settings)
    cert.unlink()
    key.unlink()
    service = build_service(settings)

    # Read again, the files would be missing.
    with pytest.raises(ServerError, match="does not exist"):
        create_server(settings, service)

    server, port = create_server(settings, service, tls=material)
    server.start()
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=tls_files.ca.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
            check = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10
            )
        assert check.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(None).wait()
