"""What an authenticator app needs: the secret, the otpauth URI and its QR code."""

from __future__ import annotations

import base64
import io
import secrets
from urllib.parse import quote, urlencode

import segno

from totpd.domain import Algorithm


def new_secret(algorithm: Algorithm) -> bytes:
    """A secret as long as the digest (RFC 4226 section 4, RFC 6238 section 5.1)."""
    return secrets.token_bytes(algorithm.secret_size)


def base32_secret(secret: bytes) -> str:
    """Base32 without padding, as the Key URI Format and the apps expect."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def otpauth_uri(
    *, secret: bytes, issuer: str, account_name: str, algorithm: Algorithm, digits: int, period: int
) -> str:
    """The Key URI Format: issuer both as label prefix and as parameter."""
    label = f"{quote(issuer, safe='')}:{quote(account_name, safe='')}"
    query = urlencode(
        {
            "secret": base32_secret(secret),
            "issuer": issuer,
            "algorithm": algorithm.value,
            "digits": digits,
            "period": period,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def qr_codes(uri: str) -> tuple[bytes, str]:
    """The URI as a QR code, PNG bytes and SVG text."""
    qr = segno.make(uri, error="m", micro=False)
    png = io.BytesIO()
    qr.save(png, kind="png", scale=6, border=4)
    svg = io.BytesIO()
    qr.save(svg, kind="svg", scale=6, border=4, xmldecl=False)
    return png.getvalue(), svg.getvalue().decode("utf-8")
