"""Against a real totpd with a callers file: an allowed call, and denied ones as typed errors."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import running_totpd

from totpd_client import (
    ErrorReason,
    PermissionDeniedError,
    TenantRequiredError,
    TotpdClient,
    UnauthenticatedError,
)

WRITER = "totpd_live-writer-0123456789abcdef"
READER = "totpd_live-reader-0123456789abcdef"
TWO_TENANTS = "totpd_live-two-tenants-0123456789"


def entry(name: str, token: str, tenants: list[str], permissions: list[str]) -> str:
    digest = hashlib.sha256(token.encode()).hexdigest()
    return (
        f'[[callers]]\nname = "{name}"\ntoken_sha256 = "{digest}"\n'
        f"tenants = {tenants!r}\npermissions = {permissions!r}\n".replace("'", '"')
    )


@pytest.fixture(scope="module")
def callers_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path: Path = tmp_path_factory.mktemp("callers") / "callers.toml"
    path.write_text(
        entry("writer", WRITER, ["default"], ["enroll", "verify", "read"])
        + entry("reader", READER, ["default"], ["read"])
        + entry("two-tenants", TWO_TENANTS, ["default", "other"], ["read"])
    )
    with running_totpd("--callers-file", str(path)) as target:
        yield target


def test_an_allowed_caller_enrolls_and_reads(callers_target: str) -> None:
    with TotpdClient(callers_target, insecure=True, token=WRITER) as c:
        enrolled = c.enroll("py-live-callers", "phone")
        assert c.get_factor("py-live-callers", enrolled.factor.factor_id).label == "phone"
    with TotpdClient(callers_target, insecure=True, token=TWO_TENANTS, tenant="default") as c:
        assert [f.label for f in c.list_factors("py-live-callers", include_inactive=True)] == [
            "phone"
        ]


def test_a_read_only_caller_may_not_enroll(callers_target: str) -> None:
    with (
        TotpdClient(callers_target, insecure=True, token=READER, max_attempts=3) as c,
        pytest.raises(PermissionDeniedError) as caught,
    ):
        c.enroll("py-live-callers-2", "phone")
    assert caught.value.reason is ErrorReason.PERMISSION_DENIED
    assert READER not in str(caught.value)


def test_an_unknown_token_and_no_token_are_unauthenticated(callers_target: str) -> None:
    for token in ("totpd_not-a-known-token-0000000000", None):
        with (
            TotpdClient(callers_target, insecure=True, token=token) as c,
            pytest.raises(UnauthenticatedError) as caught,
        ):
            c.list_factors("py-live-callers")
        assert caught.value.reason is ErrorReason.UNAUTHENTICATED


def test_a_caller_of_several_tenants_must_name_one(callers_target: str) -> None:
    with (
        TotpdClient(callers_target, insecure=True, token=TWO_TENANTS) as c,
        pytest.raises(TenantRequiredError) as caught,
    ):
        c.list_factors("py-live-callers")
    assert caught.value.reason is ErrorReason.TENANT_REQUIRED
    with (
        TotpdClient(callers_target, insecure=True, token=READER, tenant="other") as c,
        pytest.raises(PermissionDeniedError),
    ):
        c.list_factors("py-live-callers")  # a tenant it does not hold


def test_totpctl_with_a_token_allowed_and_denied(
    callers_target: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from totpd_client.cli.totpctl import main

    monkeypatch.setenv("TOTPCTL_TOKEN", WRITER)
    assert main(["--server", callers_target, "enroll", "py-live-ctl", "--no-qr"]) == 0
    monkeypatch.setenv("TOTPCTL_TOKEN", READER)
    assert main(["--server", callers_target, "list", "py-live-ctl"]) == 0
    capsys.readouterr()
    assert main(["--server", callers_target, "enroll", "py-live-ctl-2", "--no-qr"]) == 2
    out, err = capsys.readouterr()
    assert "PERMISSION_DENIED ERROR_REASON_PERMISSION_DENIED" in err
    assert READER not in out + err


def test_a_client_certificate_is_a_caller_too(
    tls_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """mTLS: the certificate's DNS SAN ("totpd-test-client") names a read-only caller."""
    path = tmp_path_factory.mktemp("callers-mtls") / "callers.toml"
    path.write_text(
        '[[callers]]\nname = "totpd-test-client"\ntenants = ["default"]\npermissions = ["read"]\n'
    )
    with running_totpd(
        "--tls-cert-file",
        str(tls_dir / "server.pem"),
        "--tls-key-file",
        str(tls_dir / "server.key"),
        "--tls-client-ca-file",
        str(tls_dir / "ca.pem"),
        "--callers-file",
        str(path),
    ) as target:
        with TotpdClient(
            target,
            root_certificates=(tls_dir / "ca.pem").read_bytes(),
            client_certificate=(tls_dir / "client.pem").read_bytes(),
            client_key=(tls_dir / "client.key").read_bytes(),
            server_name="localhost",
        ) as c:
            assert c.list_factors("py-live-mtls") == []
            with pytest.raises(PermissionDeniedError):
                c.enroll("py-live-mtls", "phone")


def test_audit_events_need_the_admin_permission(
    callers_target: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from totpd_client.cli.totpctl import main

    with (
        TotpdClient(callers_target, insecure=True, token=WRITER) as c,
        pytest.raises(PermissionDeniedError),
    ):
        c.list_audit_events()
    monkeypatch.setenv("TOTPCTL_TOKEN", READER)
    capsys.readouterr()
    assert main(["--server", callers_target, "audit", "--account", "py-live-callers"]) == 2
    out, err = capsys.readouterr()
    assert "PERMISSION_DENIED ERROR_REASON_PERMISSION_DENIED" in err
    assert READER not in out + err


def test_unlock_needs_admin_and_recovery_codes_need_enroll(callers_target: str) -> None:
    with (
        TotpdClient(callers_target, insecure=True, token=WRITER) as c,
        pytest.raises(PermissionDeniedError) as caught,
    ):
        c.unlock("py-live-callers")
    assert caught.value.reason is ErrorReason.PERMISSION_DENIED
    for call in (
        lambda c: c.generate_recovery_codes("py-live-callers"),
        lambda c: c.resync("py-live-callers", "0f8fad5b-d9cb-469f-a165-70867728950e", "1", "2"),
    ):
        with (
            TotpdClient(callers_target, insecure=True, token=READER) as c,
            pytest.raises(PermissionDeniedError),
        ):
            call(c)
