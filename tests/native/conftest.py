"""Shared fixtures of the native-core tests: RFC seeds and the CPU paths to run."""

from __future__ import annotations

import pytest

from totpd import otp
from totpd.service.types import Algorithm

# RFC 6238 appendix B: "1234567890" repeated to the digest size.
SEEDS = {
    Algorithm.SHA1: b"12345678901234567890",
    Algorithm.SHA256: b"12345678901234567890123456789012",
    Algorithm.SHA512: b"1234567890" * 6 + b"1234",
}

PATHS = otp.cpu_paths()


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    """Every CPU path this machine supports (portable always)."""
    value: str = request.param
    return value
