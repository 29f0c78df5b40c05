"""TLS settings: every source sets them, and bad ones stop totpd at startup with
one clear line (exit 2), naming the setting and the path, never file content."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.cli.processes import GRACE_SECONDS, dev_server, log_records, run_totpd
from tests.tls_certs import TlsFiles
from totpd.config import ConfigError, is_loopback_host, load_settings
from totpd.rpc.tls import load_tls, warn_if_plaintext_beyond_loopback


def test_tls_is_off_by_default() -> None:
    settings = load_settings(environ={})
    assert (settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file) == (
        None,
        None,
        None,
    )
    assert settings.tls_mode == "off"


def test_tls_from_toml_environment_and_flags(tmp_path: Path, tls_files: TlsFiles) -> None:
    config = tmp_path / "totpd.toml"
    config.write_text(
        f'tls_cert_file = "{tls_files.server_cert}"\ntls_key_file = "{tls_files.server_key}"\n',
        encoding="utf-8",
    )
    from_file = load_settings(config, environ={})
    assert from_file.tls_cert_file == tls_files.server_cert
    assert from_file.tls_mode == "tls"

    environ = {"TOTPD_TLS_CLIENT_CA_FILE": str(tls_files.ca)}
    with_env = load_settings(config, environ=environ)
    assert with_env.tls_client_ca_file == tls_files.ca
    assert with_env.tls_mode == "mtls"

    # A flag wins; an empty environment value unsets.
    flags = load_settings(config, {"tls_client_ca_file": str(tls_files.other_ca)}, environ)
    assert flags.tls_client_ca_file == tls_files.other_ca
    unset = load_settings(config, environ={"TOTPD_TLS_CLIENT_CA_FILE": ""})
    assert unset.tls_client_ca_file is None


def test_settings_repr_holds_paths_only(tls_files: TlsFiles) -> None:
    settings = load_settings(
        environ={
            "TOTPD_TLS_CERT_FILE": str(tls_files.server_cert),
            "TOTPD_TLS_KEY_FILE": str(tls_files.server_key),
        }
    )
    assert "PRIVATE KEY" not in repr(settings)


def _bad_cases(files: TlsFiles, tmp: Path) -> list[tuple[dict[str, str], str]]:
    not_pem = tmp / "not.pem"
    not_pem.write_text("hello\n", encoding="utf-8")
    key_as_cert = files.server_key
    cert, key, ca = str(files.server_cert), str(files.server_key), str(files.ca)
    missing = str(tmp / "missing.pem")
    return [
        ({"tls_cert_file": cert}, "TLS needs both tls_cert_file and tls_key_file; tls_key_file"),
        ({"tls_key_file": key}, "TLS needs both tls_cert_file and tls_key_file; tls_cert_file"),
        ({"tls_client_ca_file": ca}, "tls_client_ca_file needs tls_cert_file and tls_key_file"),
        (
            {"tls_cert_file": missing, "tls_key_file": key},
            f"tls_cert_file: {missing} does not exist",
        ),
        ({"tls_cert_file": cert, "tls_key_file": str(not_pem)}, "is not a PEM file"),
        (
            {"tls_cert_file": str(key_as_cert), "tls_key_file": key},
            "tls_cert_file: .* holds no PEM certificate",
        ),
        ({"tls_cert_file": cert, "tls_key_file": cert}, "holds no usable PEM private key"),
        (
            {"tls_cert_file": cert, "tls_key_file": str(files.client_key)},
            "is not the private key of the certificate",
        ),
        (
            {"tls_cert_file": cert, "tls_key_file": key, "tls_client_ca_file": missing},
            "tls_client_ca_file: .* does not exist",
        ),
        (
            {"tls_cert_file": cert, "tls_key_file": key, "tls_client_ca_file": key},
            "tls_client_ca_file: .* holds no PEM certificate",
        ),
    ]


def test_bad_tls_settings_are_config_errors(tmp_path: Path, tls_files: TlsFiles) -> None:
    for overrides, message in _bad_cases(tls_files, tmp_path):
        with pytest.raises(ConfigError, match=message) as caught:
            load_tls(load_settings(overrides=overrides, environ={}))
        assert "BEGIN" not in str(caught.value)


def test_unreadable_key_file(tmp_path: Path, tls_files: TlsFiles) -> None:
    directory = tmp_path / "a-directory.key"
    directory.mkdir()
    with pytest.raises(ConfigError, match=r"tls_key_file: .* is unreadable"):
        load_tls(
            load_settings(
                overrides={
                    "tls_cert_file": str(tls_files.server_cert),
                    "tls_key_file": str(directory),
                },
                environ={},
            )
        )


def test_bad_tls_flags_are_a_one_line_startup_error(
    tmp_path: Path, tls_files: TlsFiles, subprocess_env: dict[str, str]
) -> None:
    result = run_totpd(
        "serve",
        "--dev",
        "--data-dir",
        str(tmp_path),
        "--tls-cert-file",
        str(tls_files.server_cert),
        env=subprocess_env,
    )
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "totpd: error: TLS needs both tls_cert_file and tls_key_file; tls_key_file is not set",
    )
    env = {
        **subprocess_env,
        "TOTPD_TLS_CERT_FILE": str(tls_files.server_cert),
        "TOTPD_TLS_KEY_FILE": str(tls_files.client_key),
    }
    result = run_totpd("serve", "--dev", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "is not the private key of the certificate" in result.stderr
    assert not (tmp_path / "totpd.key").exists()  # stopped before touching anything


@pytest.mark.slow  # a `totpd serve` process
def test_mtls_server_process_logs_the_mode_and_never_the_key(
    tmp_path: Path, tls_files: TlsFiles, subprocess_env: dict[str, str]
) -> None:
    tls_args = (
        "--tls-cert-file",
        str(tls_files.server_cert),
        "--tls-key-file",
        str(tls_files.server_key),
        "--tls-client-ca-file",
        str(tls_files.ca),
    )
    with dev_server(tmp_path, subprocess_env, *tls_args) as (process, address):
        creds = grpc.ssl_channel_credentials(
            root_certificates=tls_files.ca.read_bytes(),
            private_key=tls_files.client_key.read_bytes(),
            certificate_chain=tls_files.client_cert.read_bytes(),
        )
        with grpc.secure_channel(address, creds) as channel:
            check = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=GRACE_SECONDS + 10)
    assert process.returncode == 0, stderr
    records = log_records(stderr)
    serving = next(r for r in records if r["msg"] == "serving")
    assert serving["tls"] == "mtls"
    assert serving["tls_cert_file"] == str(tls_files.server_cert)
    assert serving["tls_client_ca_file"] == str(tls_files.ca)
    key_pem = tls_files.server_key.read_text(encoding="ascii")
    key_body = "".join(key_pem.strip().splitlines()[1:-1])
    assert "PRIVATE KEY" not in stderr
    assert key_body[:40] not in stderr.replace("\n", "")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("localhost", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("[::]", False),
        ("10.1.2.3", False),
        ("totpd.internal", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_plaintext_beyond_loopback_is_warned_about_and_tls_or_loopback_is_not(
    tls_files: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    wide = load_settings(None, {"listen_address": "0.0.0.0:50051"}, environ={})
    with caplog.at_level(logging.WARNING, logger="totpd.server"):
        assert warn_if_plaintext_beyond_loopback(wide, "0.0.0.0:50051")
    assert any("plaintext beyond loopback" in r.getMessage() for r in caplog.records)
    loopback = load_settings(environ={})
    assert not warn_if_plaintext_beyond_loopback(loopback, "127.0.0.1:50051")
    wide_tls = load_settings(
        None,
        {
            "listen_address": "0.0.0.0:50051",
            "tls_cert_file": str(tls_files.server_cert),
            "tls_key_file": str(tls_files.server_key),
        },
        environ={},
    )
    assert not warn_if_plaintext_beyond_loopback(wide_tls, "0.0.0.0:50051")
