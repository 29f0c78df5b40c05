"""The client's TLS and mTLS options against a totpd that requires client certificates."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from totpd_client import ErrorReason, FactorState, TotpdClient, TotpdError


def test_mtls_enroll_and_list(mtls_target: str, tls_dir: Path) -> None:
    account_id = f"py-mtls-{uuid.uuid4()}"
    with TotpdClient(
        mtls_target,
        root_certificates=(tls_dir / "ca.pem").read_bytes(),
        client_certificate=(tls_dir / "client.pem").read_bytes(),
        client_key=(tls_dir / "client.key").read_bytes(),
        timeout=10,
    ) as client:
        enrolled = client.enroll(account_id, "Pixel 8")
        assert enrolled.factor.state is FactorState.PENDING
        listed = client.list_factors(account_id)
        assert [f.factor_id for f in listed] == [enrolled.factor.factor_id]


def test_mtls_without_client_certificate_is_unavailable(mtls_target: str, tls_dir: Path) -> None:
    ca = (tls_dir / "ca.pem").read_bytes()
    with (
        TotpdClient(mtls_target, root_certificates=ca, timeout=5, max_attempts=1) as client,
        pytest.raises(TotpdError) as caught,
    ):
        client.list_factors(f"py-mtls-{uuid.uuid4()}")
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    assert caught.value.reason is ErrorReason.UNSPECIFIED
