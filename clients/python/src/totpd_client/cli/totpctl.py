"""`totpctl`: the command-line client for people, a `TotpdClient` like any other.

Its commands, options and exit codes: clients/python/README.md, "totpctl, the command line".
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..auth import is_loopback
from ..client import TotpdClient
from ..errors import TotpdError
from . import commands, output
from .commands import EXIT_ERROR

DEFAULT_SERVER = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 10.0
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE.value

Command = Callable[[TotpdClient, argparse.Namespace], int]


class UsageError(Exception):
    """Options that cannot work together, or a file that cannot be read."""


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _connection_options(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--server",
        default=env("TOTPCTL_SERVER", DEFAULT_SERVER),
        metavar="HOST:PORT",
        help="HOST:PORT of totpd (env TOTPCTL_SERVER, default %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        metavar="SECONDS",
        default=DEFAULT_TIMEOUT,
        help="seconds per command, retries included (default %(default)s)",
    )
    tls = parser.add_argument_group(
        "TLS", "plaintext (for a server on loopback) unless one of these is given"
    )
    tls.add_argument("--tls", action="store_true", help="TLS, trusting the system's CA roots")
    for flag, variable, what in (
        ("--tls-ca", "TOTPCTL_TLS_CA", "TLS, trusting this CA (PEM file)"),
        ("--tls-cert", "TOTPCTL_TLS_CERT", "mTLS: client certificate (PEM)"),
        ("--tls-key", "TOTPCTL_TLS_KEY", "mTLS: the certificate's key (PEM)"),
    ):
        tls.add_argument(flag, default=env(variable) or None, metavar="FILE", help=what)
    tls.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="name to check the server certificate against (default: HOST)",
    )
    who = parser.add_argument_group(
        "identity", "the caller and tenant of every call (default: none, mTLS, or TOTPCTL_TOKEN)"
    )
    token = who.add_mutually_exclusive_group()
    token.add_argument(
        "--token-file",
        metavar="FILE",
        help="read the bearer token from FILE (keeps it out of shell history and ps)",
    )
    token.add_argument(
        "--token",
        metavar="TOKEN",
        help="bearer token (prefer env TOTPCTL_TOKEN or --token-file: this one shows in ps)",
    )
    who.add_argument(
        "--tenant",
        default=env("TOTPCTL_TENANT") or None,
        help="tenant to act in, for a caller holding several (env TOTPCTL_TENANT)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="totpctl", description="Talk to a totpd server.")
    _connection_options(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enroll", help="enroll a new authenticator app (prints a QR code)")
    p.add_argument("account")
    p.add_argument("--label", default="", help="device name, unique per account")
    p.add_argument("--issuer", help="issuer shown in the app (default: the server's)")
    p.add_argument(
        "--algorithm", type=str.lower, choices=sorted(commands.ALGORITHMS), help="default sha1"
    )
    p.add_argument("--digits", type=int, help="6, 7 or 8 (default 6)")
    p.add_argument("--period", type=int, help="seconds per code, 15-120 (default 30)")
    p.add_argument("--png", help="also write the QR code to this PNG file")
    p.add_argument("--svg", help="also write the QR code to this SVG file")
    p.add_argument("--no-qr", action="store_true", help="do not print the QR code")
    p.set_defaults(run=commands.enroll)

    code_help = 'the code the app shows ("123 456" or 123456)'
    p = sub.add_parser("confirm", help="activate a pending factor with its first code")
    p.add_argument("account")
    p.add_argument("factor_id")
    p.add_argument("code", nargs="+", metavar="CODE", help=code_help)
    p.set_defaults(run=commands.confirm)

    p = sub.add_parser("verify", help="check a sign-in code")
    p.add_argument("account")
    p.add_argument("code", nargs="+", metavar="CODE", help=code_help)
    p.add_argument("--factor", help="only this factor")
    p.set_defaults(run=commands.verify)

    p = sub.add_parser("disable", help="turn MFA off for a factor or the whole account")
    p.add_argument("account")
    p.add_argument("--factor", help="only this factor (default: every factor)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--code", nargs="+", metavar="CODE", help=code_help)
    how.add_argument("--force", action="store_true", help="administrator override, no code")
    p.set_defaults(run=commands.disable)

    p = sub.add_parser("list", help="list an account's factors")
    p.add_argument("account")
    p.add_argument("--all", action="store_true", help="include disabled and expired factors")
    p.set_defaults(run=commands.list_factors)

    p = sub.add_parser("get", help="show one factor")
    p.add_argument("account")
    p.add_argument("factor_id")
    p.set_defaults(run=commands.get_factor)
    _lifecycle_parsers(sub, code_help)
    _audit_parser(sub)
    return parser


def _lifecycle_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], code_help: str
) -> None:
    p = sub.add_parser(
        "recovery-codes",
        help="generate or check an account's single-use recovery codes",
        description="Recovery codes let a user without their authenticator app sign in:"
        " each works once.",
    )
    codes = p.add_subparsers(dest="recovery_command", required=True)
    p = codes.add_parser(
        "generate",
        help="issue a new set, replacing any earlier one (enroll permission)",
        description="Issues a new set of recovery codes for an account with an active factor"
        " and prints them, one per line: this is the only time they are shown (totpd keeps"
        " only a keyed hash of each). Any earlier set of the account stops working.",
    )
    p.add_argument("account")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object: codes, remaining, issued, generated_at",
    )
    p.set_defaults(run=commands.generate_recovery_codes)
    p = codes.add_parser(
        "verify",
        help="use up one recovery code (exit 0 VALID, 1 otherwise)",
        description="Consumes one recovery code: VALID once, REPLAYED afterwards. Wrong codes"
        " count toward the account's attempt limits, like wrong TOTP codes.",
    )
    p.add_argument("account")
    p.add_argument(
        "code",
        nargs="+",
        metavar="CODE",
        help="the code as written down, either case, with or without '-' or spaces",
    )
    p.set_defaults(run=commands.verify_recovery_code)

    p = sub.add_parser(
        "unlock",
        help="clear an account's lock and failures (admin permission)",
        description="Lifts the lock after too many consecutive failures, clears backoff and"
        " refills the failure budget of the account; --factor clears only that factor's"
        " failures (the account-wide lock, failure run and budget are cleared either way).",
    )
    p.add_argument("account")
    p.add_argument("--factor", metavar="ID", help="only this factor's failures and backoff")
    p.set_defaults(run=commands.unlock)

    p = sub.add_parser(
        "resync",
        help="measure a factor's clock drift from two consecutive codes",
        description="For an app whose clock is off: give the code it shows now and the next"
        " one. The server looks for the pair within its search range (default +-10 minutes),"
        " stores the drift and centres later verifications on it. Exit 0 VALID, 1 otherwise.",
    )
    p.add_argument("account")
    p.add_argument("factor_id")
    p.add_argument("code1", metavar="CODE1", help=code_help)
    p.add_argument("code2", metavar="CODE2", help="the next code the app shows")
    p.set_defaults(run=commands.resync)


def _audit_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "audit",
        help="list audit events, oldest first (admin permission)",
        description="Prints the matching audit events, oldest first, one per line, all pages"
        " unless --limit. TIME: ISO 8601 (2026-12-01T09:30:00Z, 2026-12-01; UTC unless an"
        " offset is given) or an age (90s, 15m, 2h, 7d ago).",
    )
    p.add_argument(
        "--tenant",
        dest="audit_tenant",
        help="only this tenant (also sent as the"
        " call's tenant when the global --tenant is not given)",
    )
    p.add_argument("--account", help="only events of this account")
    p.add_argument("--caller", help="only events of this caller")
    p.add_argument("--method", help="only this RPC, e.g. Verify")
    p.add_argument("--since", type=commands.moment, metavar="TIME", help="at or after TIME")
    p.add_argument("--until", type=commands.moment, metavar="TIME", help="before TIME")
    p.add_argument("--limit", type=commands.positive_int, help="at most this many events")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=commands.audit)


def uses_tls(args: argparse.Namespace) -> bool:
    return bool(args.tls or args.tls_ca or args.tls_cert or args.tls_key)


def _read(path: str | None, option: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {option} {path}: {error.strerror or error}") from None


def token_of(args: argparse.Namespace) -> str | None:
    """--token-file, else --token, else TOTPCTL_TOKEN; None for no token."""
    if args.token_file is not None:
        text = _read(args.token_file, "--token-file") or b""
        try:
            token = text.decode("ascii").strip()
        except UnicodeDecodeError:
            raise UsageError(f"--token-file {args.token_file} is not an ASCII token") from None
        if not token:
            raise UsageError(f"--token-file {args.token_file} is empty")
        return token
    return args.token or os.environ.get("TOTPCTL_TOKEN") or None


def tenant_of(args: argparse.Namespace) -> str | None:
    """The call's tenant: the global --tenant, else `audit --tenant`."""
    tenant: str | None = args.tenant or getattr(args, "audit_tenant", None)
    return tenant


def connect(args: argparse.Namespace) -> TotpdClient:
    """A client for `args.server`: plaintext, TLS or mTLS as the options say."""
    token, tenant = token_of(args), tenant_of(args)
    if not uses_tls(args):
        if args.tls_server_name:
            raise UsageError("--tls-server-name needs TLS (--tls or --tls-ca)")
        if not is_loopback(args.server):
            if token is not None:
                raise UsageError(
                    f"refusing to send the token in plaintext to {args.server}:"
                    " use --tls or --tls-ca"
                )
            print(
                f"totpctl: warning: plaintext to {args.server}: codes and secrets cross the"
                " network unencrypted; use --tls or --tls-ca",
                file=sys.stderr,
            )
        return TotpdClient(
            args.server, timeout=args.timeout, insecure=True, token=token, tenant=tenant
        )
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("mTLS needs both --tls-cert and --tls-key")
    return TotpdClient(
        args.server,
        timeout=args.timeout,
        root_certificates=_read(args.tls_ca, "--tls-ca"),
        client_certificate=_read(args.tls_cert, "--tls-cert"),
        client_key=_read(args.tls_key, "--tls-key"),
        server_name=args.tls_server_name,
        token=token,
        tenant=tenant,
    )


def _quiet_broken_pipe() -> int:
    """The reader left (`| head -1`): stop quietly, as a tool killed by SIGPIPE would.

    Python ignores SIGPIPE, so the write raised instead; stdout is pointed at
    /dev/null so the flush at exit does not raise (and print) a second time.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _error(message: str) -> int:
    print(f"totpctl: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, while it can still be handled
    except BrokenPipeError:
        return _quiet_broken_pipe()


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        with connect(args) as client:
            return run(client, args)
    except TotpdError as error:
        return _error(output.error_line(error, server=args.server, tls=uses_tls(args)))
    except BrokenPipeError:
        raise  # not an error to report: see main
    except (OSError, ValueError, UsageError, commands.MissingExtraError) as error:
        return _error(str(error))


if __name__ == "__main__":
    sys.exit(main())
