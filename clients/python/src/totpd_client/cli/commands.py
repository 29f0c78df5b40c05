"""The `totpctl` subcommands: one call each, printed for people.

Each returns the exit code: 0 success or VALID, 1 a negative verdict. Errors
propagate as :class:`totpd_client.TotpdError` for `totpctl.main` to print.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..client import TotpdClient
from ..types import Algorithm, VerifyOutcome
from . import output

EXIT_OK, EXIT_NEGATIVE, EXIT_ERROR = 0, 1, 2
ALGORITHMS = {"sha1": Algorithm.SHA1, "sha256": Algorithm.SHA256, "sha512": Algorithm.SHA512}

_AGE = re.compile(r"([0-9]+)([smhd])")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

# Authenticator apps show a code in two groups ("123 456"); people type it that way.
_GROUPED_CODE = re.compile(r"[0-9]+ [0-9]+")


class MissingExtraError(Exception):
    """An optional dependency of the CLI is not installed."""


def app_code(words: list[str]) -> str:
    """The code as typed, quoted ("123 456") or not (123 456), without its grouping space.

    Only one space between two runs of ASCII digits is removed; anything else is
    sent as typed, so the server's validation (the API stays strict) explains it.
    """
    typed = " ".join(words)
    return typed.replace(" ", "") if _GROUPED_CODE.fullmatch(typed) else typed


def _verdict(outcome: VerifyOutcome) -> int:
    return EXIT_OK if outcome.valid else EXIT_NEGATIVE


def _print(lines: list[str]) -> None:
    for line in lines:
        print(line)


def _qr_printer() -> Callable[[str], None]:
    """Checked before enrolling: the response is the only copy of the secret."""
    try:
        import segno
    except ImportError as missing:
        raise MissingExtraError(
            "the terminal QR code needs segno: pip install 'totpd-client[cli]', or pass --no-qr"
        ) from missing

    def print_qr(uri: str) -> None:
        segno.make(uri).terminal(out=sys.stdout, compact=True)
        print("Scan the QR code with your authenticator app, or type the secret.\n")

    return print_qr


def enroll(client: TotpdClient, args: argparse.Namespace) -> int:
    print_qr = None if args.no_qr else _qr_printer()
    enrolled = client.enroll(
        args.account,
        args.label,
        issuer=args.issuer or "",
        algorithm=ALGORITHMS.get(args.algorithm or "", Algorithm.UNSPECIFIED),
        digits=args.digits or 0,
        period_seconds=args.period or 0,
    )
    if print_qr is not None:
        print_qr(enrolled.otpauth_uri)
    _print(output.factor_lines(enrolled.factor))
    print(f"secret:      {enrolled.secret_base32}")
    print(f"uri:         {enrolled.otpauth_uri}")
    if args.png:
        Path(args.png).write_bytes(enrolled.qr_png)
        print(f"wrote {args.png}")
    if args.svg:
        Path(args.svg).write_text(enrolled.qr_svg, encoding="utf-8")
        print(f"wrote {args.svg}")
    factor = enrolled.factor
    print(f"\nNext: totpctl confirm {factor.account_id} {factor.factor_id} <CODE FROM THE APP>")
    return EXIT_OK


def confirm(client: TotpdClient, args: argparse.Namespace) -> int:
    confirmation = client.confirm(args.account, args.factor_id, app_code(args.code))
    print(output.outcome_line(confirmation.outcome))
    _print(output.factor_lines(confirmation.factor))
    return _verdict(confirmation.outcome)


def verify(client: TotpdClient, args: argparse.Namespace) -> int:
    outcome = client.verify(args.account, app_code(args.code), args.factor or "")
    print(output.outcome_line(outcome))
    return _verdict(outcome)


def disable(client: TotpdClient, args: argparse.Namespace) -> int:
    code = app_code(args.code) if args.code else ""
    result = client.disable(args.account, args.factor or "", code, force=args.force)
    _print(output.disable_lines(result, forced=args.force))
    return EXIT_OK if args.force else _verdict(result.outcome)


def list_factors(client: TotpdClient, args: argparse.Namespace) -> int:
    mfa = client.mfa_status(args.account, include_inactive=args.all)
    if mfa.factors:
        _print(output.factor_table(mfa.factors))
    else:
        print(f"no factors for {args.account}")
    if mfa.factors or mfa.recovery_codes.issued:
        print(output.recovery_status_line(mfa.recovery_codes))
    return EXIT_OK


def get_factor(client: TotpdClient, args: argparse.Namespace) -> int:
    _print(output.factor_lines(client.get_factor(args.account, args.factor_id)))
    return EXIT_OK


RECOVERY_CODES_WARNING = (
    "totpctl: these recovery codes are shown only this once: store them somewhere safe"
    " (a password manager, or printed); each works once, and any earlier set no longer works"
)


def generate_recovery_codes(client: TotpdClient, args: argparse.Namespace) -> int:
    """The codes on stdout only (one per line, or --json); the warning on stderr."""
    generated = client.generate_recovery_codes(args.account)
    print(RECOVERY_CODES_WARNING, file=sys.stderr)
    if args.json:
        print(output.recovery_codes_json(generated))
    else:
        _print(generated.codes)
    return EXIT_OK


def verify_recovery_code(client: TotpdClient, args: argparse.Namespace) -> int:
    """The words of the code rejoined with spaces: the server accepts them as separators."""
    checked = client.verify_recovery_code(args.account, " ".join(args.code))
    print(output.recovery_verification_line(checked))
    return _verdict(checked.outcome)


def unlock(client: TotpdClient, args: argparse.Namespace) -> int:
    print(output.unlock_line(args.account, client.unlock(args.account, args.factor or "")))
    return EXIT_OK


def resync(client: TotpdClient, args: argparse.Namespace) -> int:
    result = client.resync(
        args.account, args.factor_id, app_code([args.code1]), app_code([args.code2])
    )
    _print(output.resync_lines(result))
    return _verdict(result.outcome)


def moment(text: str) -> datetime:
    """An ISO 8601 time (UTC unless it has an offset) or an age such as 15m, 2h, 7d."""
    if age := _AGE.fullmatch(text.strip()):
        delta = timedelta(**{_AGE_UNITS[age.group(2)]: int(age.group(1))})
        return datetime.now(UTC) - delta
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ISO 8601 such as 2026-12-01T09:30:00Z, or an age: 90s, 15m,"
            " 2h, 7d)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value


def audit(client: TotpdClient, args: argparse.Namespace) -> int:
    """Every matching event (or --limit of them), oldest first, printed as it arrives."""
    events = client.iter_audit_events(
        limit=args.limit,
        tenant=args.audit_tenant or args.tenant or "",
        account_id=args.account or "",
        caller=args.caller or "",
        method=args.method or "",
        since=args.since,
        until=args.until,
    )
    render = output.audit_json if args.json else output.audit_line
    for event in events:
        print(render(event))
    return EXIT_OK
