"""Transport security: the TLS files read and checked, served, and reloaded when they change.

Design notes: ARCHITECTURE.md, "Module notes", rpc/tls.py.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from totpd.config import ConfigError, Settings, is_loopback_host, parse_listen_address

_log = logging.getLogger("totpd.server")


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The PEM bytes `grpc.ssl_server_credentials` takes; never logged or printed."""

    certificate_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = field(default=None, repr=False)


def _read_pem(key: str, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"{key}: {path} is unreadable: {error.strerror or error}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{key}: {path} is not a PEM file")
    return data


def _load_certificates(key: str, path: Path, data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"{key}: {path} holds no PEM certificate") from None


def _public_der(public_key: Any) -> bytes:
    der: bytes = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def load_tls(settings: Settings) -> TlsMaterial | None:
    """Read and check the TLS files: None when TLS is off, ConfigError when they are wrong.

    Error messages name the setting and the path, never the file's content.
    """
    cert_file, key_file, ca_file = (
        settings.tls_cert_file,
        settings.tls_key_file,
        settings.tls_client_ca_file,
    )
    if cert_file is None and key_file is None:
        if ca_file is not None:
            raise ConfigError(
                "tls_client_ca_file needs tls_cert_file and tls_key_file: "
                "mTLS is TLS with client certificates"
            )
        return None
    if cert_file is None or key_file is None:
        missing = "tls_key_file" if key_file is None else "tls_cert_file"
        raise ConfigError(f"TLS needs both tls_cert_file and tls_key_file; {missing} is not set")
    chain = _read_pem("tls_cert_file", cert_file)
    private_key = _read_pem("tls_key_file", key_file)
    leaf = _load_certificates("tls_cert_file", cert_file, chain)[0]
    try:
        loaded_key = serialization.load_pem_private_key(private_key, password=None)
    except TypeError:
        raise ConfigError(
            f"tls_key_file: {key_file} is encrypted; totpd needs it unencrypted"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"tls_key_file: {key_file} holds no usable PEM private key") from None
    if _public_der(loaded_key.public_key()) != _public_der(leaf.public_key()):
        raise ConfigError(
            f"tls_key_file: {key_file} is not the private key of the certificate in {cert_file}"
        )
    client_ca = None
    if ca_file is not None:
        client_ca = _read_pem("tls_client_ca_file", ca_file)
        _load_certificates("tls_client_ca_file", ca_file, client_ca)
    return TlsMaterial(chain, private_key, client_ca)


def server_credentials(
    settings: Settings, material: TlsMaterial | None
) -> grpc.ServerCredentials | None:
    """TLS (or mTLS) credentials from the files `load_tls` read; None for plaintext.

    The files are read again when they change (see CertificateReloader), so a
    rotated certificate is served without a restart.
    """
    if material is None:
        return None
    reloader = CertificateReloader(settings, material)
    return grpc.dynamic_ssl_server_credentials(
        reloader.current,
        # grpc documents None as "no change"; its type stubs leave None out.
        reloader.fetch,  # type: ignore[arg-type]
        require_client_authentication=material.client_ca is not None,
    )


class CertificateReloader:
    """Serves the TLS files as they are now: gRPC asks before every handshake.

    A change in any file's content (compared by SHA-256: file timestamps are
    too coarse to tell two quick writes apart) is loaded and checked like at
    startup; a replacement that does not load (half written, key and
    certificate from different pairs) is refused with one warning, and the
    certificates in use stay, so a botched rotation never takes the server
    down. Whether clients must present a certificate is fixed at startup; the
    client CA's content may rotate. Reading a few small files per new
    connection is cheap next to the TLS handshake itself.
    """

    def __init__(self, settings: Settings, material: TlsMaterial) -> None:
        self._settings = settings
        self._paths = [
            path
            for path in (
                settings.tls_cert_file,
                settings.tls_key_file,
                settings.tls_client_ca_file,
            )
            if path is not None
        ]
        # The files as `material` was read from them: no second read at startup.
        self._stamp: tuple[bytes | None, ...] = tuple(
            hashlib.sha256(data).digest()
            for data in (material.certificate_chain, material.private_key, material.client_ca)
            if data is not None
        )
        self._refused: tuple[bytes | None, ...] | None = None
        self.current = _certificate_configuration(material)

    def _stamps(self) -> tuple[bytes | None, ...]:
        stamps: list[bytes | None] = []
        for path in self._paths:
            try:
                stamps.append(hashlib.sha256(path.read_bytes()).digest())
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """None keeps the configuration in use; never raises (gRPC would drop the handshake)."""
        stamp = self._stamps()
        if stamp == self._stamp or stamp == self._refused:
            return None
        try:
            material = load_tls(self._settings)
        except ConfigError as error:  # the message names the setting and path, no content
            self._refused = stamp
            _log.warning(
                "TLS files changed but do not load; the previous certificates stay in use",
                extra={"error": str(error)},
            )
            return None
        if material is None:  # not with the startup settings, which turned TLS on
            return None
        self._stamp, self._refused = stamp, None
        self.current = _certificate_configuration(material)
        _log.info("TLS certificates reloaded", extra=tls_log_fields(self._settings))
        return self.current


def _certificate_configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.private_key, material.certificate_chain)],
        root_certificates=material.client_ca,
    )


def tls_log_fields(settings: Settings) -> dict[str, str]:
    """What the startup log says about transport security: the mode and paths, no bytes."""
    fields = {"tls": settings.tls_mode}
    if settings.tls_cert_file is not None:
        fields["tls_cert_file"] = str(settings.tls_cert_file)
    if settings.tls_client_ca_file is not None:
        fields["tls_client_ca_file"] = str(settings.tls_client_ca_file)
    return fields


def warn_if_plaintext_beyond_loopback(settings: Settings, address: str) -> bool:
    """Codes crossing a network in the clear: allowed (a TLS-terminating sidecar is a
    valid setup), but never silently. Returns whether it warned."""
    host, _ = parse_listen_address(settings.listen_address)
    if settings.tls_mode != "off" or is_loopback_host(host):
        return False
    _log.warning(
        "plaintext beyond loopback: set tls_cert_file and tls_key_file"
        " (and tls_client_ca_file for mTLS), or listen on 127.0.0.1",
        extra={"address": address},
    )
    return True
