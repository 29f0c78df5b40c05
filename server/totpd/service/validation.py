"""Input rules for every request field, applied before anything is read or written.

Each function returns the normalised value or raises `TotpdError` with reason
INVALID_ARGUMENT (or MALFORMED_CODE) naming the field. Messages describe the rule,
never the rejected value: a rejected value may be a secret or a code.
"""

from __future__ import annotations

import re
import unicodedata

from totpd.domain import (
    ACCOUNT_ID_MAX,
    DEFAULT_ALGORITHM,
    DEFAULT_DIGITS,
    DEFAULT_PERIOD_SECONDS,
    DIGITS_RANGE,
    PERIOD_RANGE,
    TENANT_MAX,
    Algorithm,
)
from totpd.service.access import valid_tenant
from totpd.service.errors import ErrorReason, TotpdError

# The canonical lowercase UUID form that totpd hands out.
_FACTOR_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def account_id(value: str, field: str = "account_id") -> str:
    if not _is_account_id(value):
        raise _invalid(
            field,
            f"{field} must be 1 to {ACCOUNT_ID_MAX} printable ASCII characters without spaces",
        )
    return value


def _is_account_id(value: str) -> bool:
    # Printable ASCII without spaces (0x21-0x7e), by str methods rather than a
    # pattern: cheaper, and it runs per item of the largest batches.
    return (
        0 < len(value) <= ACCOUNT_ID_MAX
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def tenant(value: str, field: str = "x-totpd-tenant") -> str:
    """The rule of the callers file (service/access.py) for every tenant name."""
    if not valid_tenant(value):
        raise _invalid(
            field,
            f"a tenant is named by 1 to {TENANT_MAX} letters, digits, '.', '_' or '-',"
            " starting with a letter or digit",
        )
    return value


def factor_id(value: str, field: str = "factor_id") -> str:
    if not _FACTOR_ID.fullmatch(value):
        raise _invalid(
            field, f"{field} must be a factor id as returned by Enroll (a lowercase UUID)"
        )
    return value


def optional_factor_id(value: str | None, field: str = "factor_id") -> str | None:
    return None if not value else factor_id(value, field)


def code_digits(value: str, field: str = "code") -> int:
    """Shape check only: 6 to 8 ASCII digits, nothing else. Returns the length."""
    # Only 0-9 are digits in ASCII; `str.isdigit` alone, `int()` and `\d`
    # accept other scripts' digits.
    if not (len(value) in DIGITS_RANGE and value.isascii() and value.isdigit()):
        raise TotpdError(
            ErrorReason.MALFORMED_CODE,
            f"{field} must be 6 to 8 ASCII digits (0-9) with no spaces or other characters",
            field=field,
        )
    return len(value)


def display_name(value: str, field: str, maximum: int) -> str:
    """A label or issuer: shown in authenticator apps, so strict about what can hide."""
    if not 1 <= len(value) <= maximum:
        raise _invalid(field, f"{field} must be 1 to {maximum} characters")
    if value != value.strip():
        raise _invalid(field, f"{field} must not start or end with white space")
    if ":" in value:
        raise _invalid(
            field, f"{field} must not contain ':' (it separates issuer and account in otpauth URIs)"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in value):
        raise _invalid(field, f"{field} must not contain control, format or unassigned characters")
    return value


def digits(value: int | None) -> int:
    if value is None:
        return DEFAULT_DIGITS
    if value not in DIGITS_RANGE:
        raise _invalid("digits", "digits must be 6, 7 or 8")
    return value


def period(value: int | None) -> int:
    if value is None:
        return DEFAULT_PERIOD_SECONDS
    if value not in PERIOD_RANGE:
        raise _invalid("period_seconds", "period_seconds must be between 15 and 120")
    return value


def algorithm(value: Algorithm | None) -> Algorithm:
    return DEFAULT_ALGORITHM if value is None else value


def _invalid(field: str, message: str) -> TotpdError:
    return TotpdError(ErrorReason.INVALID_ARGUMENT, message, field=field)
