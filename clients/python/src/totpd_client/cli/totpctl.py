"""`totpctl`: the command-line client for people, a `TotpdClient` like any other.

Its commands, options and exit codes: clients/python/README.md, "totpctl, the command line".
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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
    return parser


def uses_tls(args: argparse.Namespace) -> bool:
    return bool(args.tls or args.tls_ca or args.tls_cert or args.tls_key)


def is_loopback(server: str) -> bool:
    """Whether HOST:PORT (or [V6]:PORT, or a unix: socket) names this machine."""
    if server.startswith(("unix:", "unix-abstract:")):
        return True
    server = server.removeprefix("dns:///")
    host = server.rsplit(":", 1)[0] if server.count(":") == 1 else server
    host = host.removeprefix("[").split("]", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(path: str | None, option: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {option} {path}: {error.strerror or error}") from None


def connect(args: argparse.Namespace) -> TotpdClient:
    """A client for `args.server`: plaintext, TLS or mTLS as the options say."""
    if not uses_tls(args):
        if args.tls_server_name:
            raise UsageError("--tls-server-name needs TLS (--tls or --tls-ca)")
        if not is_loopback(args.server):
            print(
                f"totpctl: warning: plaintext to {args.server}: codes and secrets cross the"
                " network unencrypted; use --tls or --tls-ca",
                file=sys.stderr,
            )
        return TotpdClient(args.server, timeout=args.timeout, insecure=True)
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("mTLS needs both --tls-cert and --tls-key")
    return TotpdClient(
        args.server,
        timeout=args.timeout,
        root_certificates=_read(args.tls_ca, "--tls-ca"),
        client_certificate=_read(args.tls_cert, "--tls-cert"),
        client_key=_read(args.tls_key, "--tls-key"),
        server_name=args.tls_server_name,
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
    except (OSError, UsageError, commands.MissingExtraError) as error:
        return _error(str(error))


if __name__ == "__main__":
    sys.exit(main())
