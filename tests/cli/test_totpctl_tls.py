"""totpctl over TLS and mTLS to a real server on a free loopback port, with the
throwaway certificates of tests/tls_certs.py: who gets through and what the others read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from tests.cli.conftest import Run, Totpctl, field
from tests.rpc.conftest import Secrets
from tests.rpc.harness import LiveServer, running_server
from tests.tls_certs import TlsFiles
from totpd.config import Settings
from totpd_client.cli.totpctl import is_loopback


def serve_tls(settings: Settings, files: TlsFiles, *, mtls: bool) -> Iterator[LiveServer]:
    from totpd.app import build_service

    settings = replace(
        settings,
        tls_cert_file=files.server_cert,
        tls_key_file=files.server_key,
        tls_client_ca_file=files.ca if mtls else None,
    )
    ca = files.ca.read_bytes()
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=files.client_key.read_bytes(),
        certificate_chain=files.client_cert.read_bytes(),
    )
    with running_server(settings, build_service(settings), creds) as server:
        yield server


@pytest.fixture
def tls_server(rpc_settings: Settings, tls_files: TlsFiles) -> Iterator[LiveServer]:
    yield from serve_tls(rpc_settings, tls_files, mtls=False)


@pytest.fixture
def mtls_server(rpc_settings: Settings, tls_files: TlsFiles) -> Iterator[LiveServer]:
    yield from serve_tls(rpc_settings, tls_files, mtls=True)


def last_line(err: str) -> str:
    """totpctl's own line: gRPC's C core may log the TLS handshake failure above it."""
    return err.splitlines()[-1]


def refused_trusting(totpctl_at: Totpctl, server: LiveServer, ca: Path) -> Run:
    """A command trusting `ca` (and nothing else) that the server's TLS refuses."""
    refused = totpctl_at(server.address, "--timeout", "3", "--tls-ca", str(ca), "list", "x")
    assert_unavailable(refused)
    return refused


def assert_unavailable(refused: Run) -> None:
    """A connection that did not come about: exit 2, totpctl's UNAVAILABLE line last."""
    assert refused.exit_code == 2
    assert last_line(refused.err).startswith("totpctl: error: UNAVAILABLE")


def mtls_options(files: TlsFiles) -> list[str]:
    return [
        "--tls-ca",
        str(files.ca),
        "--tls-cert",
        str(files.client_cert),
        "--tls-key",
        str(files.client_key),
    ]


def enroll_then_list(
    totpctl_at: Totpctl, server: str, options: list[str], secrets_seen: Secrets
) -> None:
    enrolled = totpctl_at(server, *options, "enroll", "tls-alice", "--label", "Pixel", "--no-qr")
    assert enrolled.exit_code == 0, enrolled.err
    secrets_seen.add(field(enrolled.out, "secret"), field(enrolled.out, "uri"))
    listed = totpctl_at(server, *options, "list", "tls-alice")
    assert listed.exit_code == 0, listed.err
    assert listed.out.startswith("FACTOR ID")
    assert f"{field(enrolled.out, 'factor id')}  Pixel" in listed.out


def test_tls_with_the_servers_ca_works_like_plaintext(
    tls_server: LiveServer, tls_files: TlsFiles, totpctl_at: Totpctl, secrets_seen: Secrets
) -> None:
    enroll_then_list(totpctl_at, tls_server.address, ["--tls-ca", str(tls_files.ca)], secrets_seen)


def test_tls_ca_and_client_files_come_from_the_environment(
    mtls_server: LiveServer,
    tls_files: TlsFiles,
    totpctl_at: Totpctl,
    secrets_seen: Secrets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOTPCTL_TLS_CA", str(tls_files.ca))
    monkeypatch.setenv("TOTPCTL_TLS_CERT", str(tls_files.client_cert))
    monkeypatch.setenv("TOTPCTL_TLS_KEY", str(tls_files.client_key))
    enroll_then_list(totpctl_at, mtls_server.address, [], secrets_seen)


def test_the_server_name_can_be_checked_against_another_name(
    tls_server: LiveServer, tls_files: TlsFiles, totpctl_at: Totpctl
) -> None:
    options = ["--tls-ca", str(tls_files.ca), "--tls-server-name"]
    by_name = totpctl_at(tls_server.address, *options, "localhost", "list", "nobody")
    assert by_name.exit_code == 0, by_name.err
    assert by_name.out.strip() == "no factors for nobody"
    wrong = totpctl_at(
        tls_server.address, "--timeout", "3", *options, "elsewhere.test", "list", "nobody"
    )
    assert_unavailable(wrong)


def test_plaintext_to_a_tls_server_says_tls_is_needed(
    tls_server: LiveServer, totpctl_at: Totpctl
) -> None:
    refused = totpctl_at(tls_server.address, "--timeout", "3", "list", "nobody")
    assert_unavailable(refused)
    assert refused.out == ""
    assert f"is totpd running at {tls_server.address}?" in refused.err
    assert "a TLS server needs --tls or --tls-ca" in refused.err


def test_a_server_certificate_from_another_ca_is_refused(
    tls_server: LiveServer, tls_files: TlsFiles, totpctl_at: Totpctl
) -> None:
    refused = refused_trusting(totpctl_at, tls_server, tls_files.other_ca)
    assert "check --tls-ca, --tls-cert and --tls-key" in refused.err


def test_mtls_with_the_client_certificate_works(
    mtls_server: LiveServer, tls_files: TlsFiles, totpctl_at: Totpctl, secrets_seen: Secrets
) -> None:
    enroll_then_list(totpctl_at, mtls_server.address, mtls_options(tls_files), secrets_seen)


def test_mtls_without_a_client_certificate_is_refused(
    mtls_server: LiveServer, tls_files: TlsFiles, totpctl_at: Totpctl
) -> None:
    refused_trusting(totpctl_at, mtls_server, tls_files.ca)


@pytest.mark.parametrize("given", ["--tls-cert", "--tls-key"])
def test_a_client_certificate_needs_its_key_and_the_reverse(
    tls_files: TlsFiles, totpctl_at: Totpctl, given: str
) -> None:
    path = tls_files.client_cert if given == "--tls-cert" else tls_files.client_key
    refused = totpctl_at("127.0.0.1:1", given, str(path), "list", "x")
    assert (refused.exit_code, refused.out) == (2, "")
    assert refused.err == "totpctl: error: mTLS needs both --tls-cert and --tls-key\n"


def test_an_unreadable_ca_file_is_named(totpctl_at: Totpctl, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing-ca.pem")
    refused = totpctl_at("127.0.0.1:1", "--tls-ca", missing, "list", "x")
    assert refused.exit_code == 2
    assert refused.err.startswith(f"totpctl: error: cannot read --tls-ca {missing}: ")


def test_a_server_name_without_tls_is_refused(totpctl_at: Totpctl) -> None:
    refused = totpctl_at("127.0.0.1:1", "--tls-server-name", "localhost", "list", "x")
    assert refused.exit_code == 2
    assert "--tls-server-name needs TLS" in refused.err


def test_plaintext_beyond_loopback_is_warned_about(totpctl_at: Totpctl) -> None:
    # 192.0.2.0/24 is TEST-NET-1: nothing answers, so the call fails after the warning.
    run = totpctl_at("192.0.2.1:50051", "--timeout", "0.5", "list", "x")
    assert run.exit_code == 2
    assert run.err.startswith(
        "totpctl: warning: plaintext to 192.0.2.1:50051: codes and secrets cross the network"
    )


@pytest.mark.parametrize(
    ("server", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.8.9.10:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("::1", True),
        ("dns:///localhost:50051", True),
        ("unix:/run/totpd.sock", True),
        ("10.0.0.5:50051", False),
        ("totpd.internal:50051", False),
        ("[2001:db8::1]:50051", False),
    ],
)
def test_loopback_addresses_are_told_from_the_others(server: str, loopback: bool) -> None:
    assert is_loopback(server) is loopback
