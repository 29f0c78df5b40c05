"""Throwaway TLS material for tests: a CA, a server certificate for the loopback
addresses, a client certificate, and an unrelated second CA.

    python -m tests.tls_certs OUTDIR

writes ca.pem, server.pem, server.key, client.pem, client.key and other-ca.pem
(keys are unencrypted PKCS#8 PEM, which Python, Go, Node and Java all read) and
prints OUTDIR. The client suites call it with the server's Python; the server
tests call `write_tls_files`. Nothing here is fit for anything but a test.
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1", "::1")
VALIDITY = datetime.timedelta(days=7)


@dataclass(frozen=True)
class TlsFiles:
    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "totpd tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_usage(*, authority: bool) -> x509.KeyUsage:
    """Signatures for everyone; certificate and CRL signing only for the CA."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=authority,
        crl_sign=authority,
        encipher_only=False,
        decipher_only=False,
    )


class _Authority:
    def __init__(self, common_name: str) -> None:
        self.key = _key()
        self.name = _name(common_name)
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            self._builder(self.name, self.key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(authority=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def _builder(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        now: datetime.datetime,
        *,
        expired: bool = False,
    ) -> x509.CertificateBuilder:
        # An expired certificate ended an hour ago (it began two days before).
        start = now - (datetime.timedelta(days=2) if expired else datetime.timedelta(hours=1))
        end = now - datetime.timedelta(hours=1) if expired else now + VALIDITY
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
        )

    def issue(
        self,
        common_name: str,
        usage: x509.ObjectIdentifier,
        names: x509.SubjectAlternativeName | None,
        *,
        expired: bool = False,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A leaf certificate; `names` None leaves out the SAN extension (a CN-only client)."""
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            self._builder(_name(common_name), key.public_key(), now, expired=expired)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(authority=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names is not None:
            builder = builder.add_extension(names, critical=False)
        certificate = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
            critical=False,
        ).sign(self.key, hashes.SHA256())
        return certificate, key


def _cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_tls_files(directory: Path) -> TlsFiles:
    """Generate fresh material into `directory` (created if missing); keys mode 0600."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _Authority("totpd test CA")
    other = _Authority("unrelated test CA")
    server_names = x509.SubjectAlternativeName(
        [x509.DNSName(name) for name in SERVER_NAMES]
        + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
    )
    server_cert, server_key = ca.issue("localhost", ExtendedKeyUsageOID.SERVER_AUTH, server_names)
    client_names = x509.SubjectAlternativeName([x509.DNSName("totpd-test-client")])
    client_cert, client_key = ca.issue(
        "totpd-test-client", ExtendedKeyUsageOID.CLIENT_AUTH, client_names
    )
    files = TlsFiles(
        directory=directory,
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
    )
    files.ca.write_bytes(_cert_pem(ca.certificate))
    files.other_ca.write_bytes(_cert_pem(other.certificate))
    files.server_cert.write_bytes(_cert_pem(server_cert))
    files.client_cert.write_bytes(_cert_pem(client_cert))
    for path, key in ((files.server_key, server_key), (files.client_key, client_key)):
        path.touch(mode=0o600)
        path.write_bytes(_key_pem(key))
    return files


SPIFFE_ID = "spiffe://example.org/ns/payments/sa/stepup"
CLIENT_DNS = "console.internal.example"
CLIENT_CN = "batch-job"


@dataclass(frozen=True)
class ClientIdentity:
    cert: Path
    key: Path


@dataclass(frozen=True)
class IdentityFiles:
    """A CA and server certificate, and client certificates named each way.

    `uri`: a URI SAN (SPIFFE_ID) beside a DNS SAN and a CN; `dns`: a DNS SAN
    (CLIENT_DNS) and a CN; `cn`: only a subject CN (CLIENT_CN); `expired`: the
    `uri` identity, but expired; `foreign`: the `uri` identity signed by an
    unrelated CA.
    """

    ca: Path
    server_cert: Path
    server_key: Path
    uri: ClientIdentity
    dns: ClientIdentity
    cn: ClientIdentity
    expired: ClientIdentity
    foreign: ClientIdentity


def write_identity_files(directory: Path) -> IdentityFiles:
    """Generate the material of IdentityFiles into `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _Authority("totpd identity test CA")
    other = _Authority("unrelated identity CA")
    server_names = x509.SubjectAlternativeName(
        [x509.DNSName(name) for name in SERVER_NAMES]
        + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
    )
    server_cert, server_key = ca.issue("localhost", ExtendedKeyUsageOID.SERVER_AUTH, server_names)
    spiffe = x509.SubjectAlternativeName(
        [x509.UniformResourceIdentifier(SPIFFE_ID), x509.DNSName("stepup.internal.example")]
    )
    client = ExtendedKeyUsageOID.CLIENT_AUTH
    issued = {
        "uri": ca.issue("stepup", client, spiffe),
        "dns": ca.issue("console", client, x509.SubjectAlternativeName([x509.DNSName(CLIENT_DNS)])),
        "cn": ca.issue(CLIENT_CN, client, None),
        "expired": ca.issue("stepup", client, spiffe, expired=True),
        "foreign": other.issue("stepup", client, spiffe),
    }
    (directory / "ca.pem").write_bytes(_cert_pem(ca.certificate))
    (directory / "server.pem").write_bytes(_cert_pem(server_cert))
    _write_key(directory / "server.key", server_key)
    identities = {}
    for name, (certificate, key) in issued.items():
        identity = ClientIdentity(directory / f"{name}.pem", directory / f"{name}.key")
        identity.cert.write_bytes(_cert_pem(certificate))
        _write_key(identity.key, key)
        identities[name] = identity
    return IdentityFiles(
        directory / "ca.pem", directory / "server.pem", directory / "server.key", **identities
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.touch(mode=0o600)
    path.write_bytes(_key_pem(key))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.tls_certs OUTDIR", file=sys.stderr)
        return 2
    print(write_tls_files(Path(argv[0])).directory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
