from __future__ import annotations

import base64
import threading
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.conftest import Clock
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.types import Algorithm, EnrollParams, FactorState

pytestmark = pytest.mark.filterwarnings("error")


def test_enroll_returns_pending_factor_and_secret_material(
    service: MfaService, account_id: str
) -> None:
    enrollment = service.enroll(EnrollParams(account_id, "Pixel 8", issuer="Example Corp"))

    factor = enrollment.factor
    assert factor.state is FactorState.PENDING
    assert (factor.algorithm, factor.digits, factor.period_seconds) == (Algorithm.SHA1, 6, 30)
    assert factor.expires_at == factor.created_at + service.policy.enrollment_ttl_seconds
    secret = base64.b32decode(enrollment.secret_base32 + "=" * (-len(enrollment.secret_base32) % 8))
    assert len(secret) == 20
    assert "=" not in enrollment.secret_base32

    uri = urlsplit(enrollment.otpauth_uri)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == f"/Example Corp:{account_id}"
    assert "%20" in uri.path  # spaces as %20, which every app decodes
    query = {key: values[0] for key, values in parse_qs(uri.query).items()}
    assert query == {
        "secret": enrollment.secret_base32,
        "issuer": "Example Corp",
        "algorithm": "SHA1",
        "digits": "6",
        "period": "30",
    }
    assert enrollment.qr_png.startswith(b"\x89PNG\r\n\x1a\n")
    assert enrollment.qr_svg.lstrip().startswith("<svg")


@pytest.mark.parametrize(
    ("algorithm", "size"), [(Algorithm.SHA1, 20), (Algorithm.SHA256, 32), (Algorithm.SHA512, 64)]
)
def test_secret_is_sized_to_the_digest(
    service: MfaService, account_id: str, algorithm: Algorithm, size: int
) -> None:
    enrollment = service.enroll(
        EnrollParams(account_id, "phone", algorithm=algorithm, digits=8, period_seconds=60)
    )
    b32 = enrollment.secret_base32
    assert len(base64.b32decode(b32 + "=" * (-len(b32) % 8))) == size
    assert f"algorithm={algorithm.value}" in enrollment.otpauth_uri
    assert "digits=8" in enrollment.otpauth_uri and "period=60" in enrollment.otpauth_uri


def test_secrets_are_unique(service: MfaService, account_id: str) -> None:
    secrets = {service.enroll(EnrollParams(account_id, f"d{i}")).secret_base32 for i in range(5)}
    assert len(secrets) == 5


def test_default_issuer_and_label(service: MfaService, account_id: str) -> None:
    first = service.enroll(EnrollParams(account_id, ""))
    second = service.enroll(EnrollParams(account_id, ""))
    assert first.factor.issuer == service.policy.default_issuer
    assert (first.factor.label, second.factor.label) == ("Authenticator", "Authenticator 2")


def test_label_unique_within_account_only(service: MfaService, account_id: str) -> None:
    service.enroll(EnrollParams(account_id, "Pixel 8"))
    with pytest.raises(TotpdError) as caught:
        service.enroll(EnrollParams(account_id, "Pixel 8"))
    assert caught.value.reason is ErrorReason.LABEL_TAKEN
    service.enroll(EnrollParams(account_id + "-other", "Pixel 8"))


def test_factor_limit(service: MfaService, account_id: str) -> None:
    for index in range(service.policy.max_factors_per_account):
        service.enroll(EnrollParams(account_id, f"device {index}"))
    with pytest.raises(TotpdError) as caught:
        service.enroll(EnrollParams(account_id, "one too many"))
    assert caught.value.reason is ErrorReason.FACTOR_LIMIT_REACHED
    assert len(service.list_factors(account_id, include_inactive=True)) == 5


def test_pending_factor_expires_and_frees_its_label(
    service: MfaService, account_id: str, clock: Clock
) -> None:
    first = service.enroll(EnrollParams(account_id, "Pixel 8"))
    clock.advance(service.policy.enrollment_ttl_seconds)
    second = service.enroll(EnrollParams(account_id, "Pixel 8"))
    assert second.factor.factor_id != first.factor.factor_id
    expired = service.get_factor(account_id, first.factor.factor_id)
    assert expired.state is FactorState.EXPIRED
    assert service.list_factors(account_id, include_inactive=False) == [second.factor]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (dict(issuer="Evil:Corp"), "issuer"),
        (dict(label="a:b"), "label"),
        (dict(label=" padded"), "label"),
        (dict(label="x" * 65), "label"),
        (dict(label="bad\x00nul"), "label"),
        (dict(label="rtl\u202eoverride"), "label"),
        (dict(issuer="i" * 65), "issuer"),
        (dict(digits=5), "digits"),
        (dict(digits=9), "digits"),
        (dict(period_seconds=0), "period_seconds"),
        (dict(period_seconds=-30), "period_seconds"),
        (dict(period_seconds=121), "period_seconds"),
        (dict(account_id=""), "account_id"),
        (dict(account_id="has space"), "account_id"),
        (dict(account_id="ü"), "account_id"),
        (dict(account_id="a" * 129), "account_id"),
    ],
)
def test_bad_enroll_input_writes_nothing(
    service: MfaService, account_id: str, params: dict[str, object], field: str
) -> None:
    arguments: dict[str, object] = {"account_id": account_id, "label": "phone", **params}
    with pytest.raises(TotpdError) as caught:
        service.enroll(EnrollParams(**arguments))  # type: ignore[arg-type]
    assert caught.value.reason is ErrorReason.INVALID_ARGUMENT
    assert caught.value.field == field
    assert service.list_factors(account_id, include_inactive=True) == []


def test_racing_enrollments_never_pass_the_factor_limit(
    service: MfaService, account_id: str
) -> None:
    """Enrollments of one account are serialised in the store (an advisory lock on
    PostgreSQL, the write lock on SQLite): the limit holds under concurrency."""
    limit = service.policy.max_factors_per_account
    racers = 2 * limit
    start = threading.Barrier(racers)
    outcomes: list[str] = []

    def enroll(number: int) -> None:
        start.wait(timeout=10)
        try:
            service.enroll(EnrollParams(account_id, f"device {number}"))
            outcomes.append("enrolled")
        except TotpdError as error:
            outcomes.append(error.reason.name)

    threads = [threading.Thread(target=enroll, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["FACTOR_LIMIT_REACHED"] * limit + ["enrolled"] * limit
    assert len(service.list_factors(account_id, True)) == limit
