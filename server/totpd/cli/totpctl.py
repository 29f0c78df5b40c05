"""`totpctl`: the command-line client for people.

    totpctl [--server HOST:PORT] enroll ACCOUNT [--label L] [--issuer I]
            [--algorithm sha1|sha256|sha512] [--digits N] [--period S]
            [--png FILE] [--svg FILE] [--no-qr]
    totpctl confirm ACCOUNT FACTOR_ID CODE
    totpctl verify ACCOUNT CODE [--factor ID]
    totpctl disable ACCOUNT [--factor ID] (--code CODE | --force)
    totpctl list ACCOUNT [--all]
    totpctl get ACCOUNT FACTOR_ID

The server defaults to $TOTPCTL_SERVER, else 127.0.0.1:50051.
Exit codes: 0 success or VALID, 1 a negative verdict, 2 an error (reason printed).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import grpc
import segno

from totpd.cli import output
from totpd.v1 import factor_pb2, totp_service_pb2, totp_service_pb2_grpc

DEFAULT_SERVER = "127.0.0.1:50051"
EXIT_OK, EXIT_NEGATIVE, EXIT_ERROR = 0, 1, 2
_ALGORITHMS = {
    "sha1": factor_pb2.ALGORITHM_SHA1,
    "sha256": factor_pb2.ALGORITHM_SHA256,
    "sha512": factor_pb2.ALGORITHM_SHA512,
}

Stub = Any  # the generated stub is untyped
Command = Callable[[Stub, argparse.Namespace], int]


def _verdict(outcome: factor_pb2.VerifyOutcome) -> int:
    valid = outcome.result == factor_pb2.VERIFY_RESULT_VALID
    return EXIT_OK if valid else EXIT_NEGATIVE


def enroll(stub: Stub, args: argparse.Namespace) -> int:
    response = stub.Enroll(
        totp_service_pb2.EnrollRequest(
            account_id=args.account,
            label=args.label,
            issuer=args.issuer or "",
            algorithm=_ALGORITHMS.get(args.algorithm or "", factor_pb2.ALGORITHM_UNSPECIFIED),
            digits=args.digits or 0,
            period_seconds=args.period or 0,
        ),
        timeout=args.timeout,
    )
    if not args.no_qr:
        segno.make(response.otpauth_uri).terminal(out=sys.stdout, compact=True)
        print("Scan the QR code with your authenticator app, or type the secret.\n")
    for line in output.factor_lines(response.factor):
        print(line)
    print(f"secret:      {response.secret_base32}")
    print(f"uri:         {response.otpauth_uri}")
    if args.png:
        Path(args.png).write_bytes(response.qr_png)
        print(f"wrote {args.png}")
    if args.svg:
        Path(args.svg).write_text(response.qr_svg, encoding="utf-8")
        print(f"wrote {args.svg}")
    factor = response.factor
    print(f"\nNext: totpctl confirm {factor.account_id} {factor.factor_id} <CODE FROM THE APP>")
    return EXIT_OK


def confirm(stub: Stub, args: argparse.Namespace) -> int:
    response = stub.ConfirmEnrollment(
        totp_service_pb2.ConfirmEnrollmentRequest(
            account_id=args.account, factor_id=args.factor_id, code=args.code
        ),
        timeout=args.timeout,
    )
    print(output.outcome_line(response.outcome))
    for line in output.factor_lines(response.factor):
        print(line)
    return _verdict(response.outcome)


def verify(stub: Stub, args: argparse.Namespace) -> int:
    response = stub.Verify(
        totp_service_pb2.VerifyRequest(
            account_id=args.account, code=args.code, factor_id=args.factor or ""
        ),
        timeout=args.timeout,
    )
    print(output.outcome_line(response.outcome))
    return _verdict(response.outcome)


def disable(stub: Stub, args: argparse.Namespace) -> int:
    response = stub.Disable(
        totp_service_pb2.DisableRequest(
            account_id=args.account,
            factor_id=args.factor or "",
            code=args.code or "",
            force=args.force,
        ),
        timeout=args.timeout,
    )
    print(output.outcome_line(response.outcome))
    for factor in response.factors:
        print(f"disabled {factor.factor_id} ({factor.label})")
    return _verdict(response.outcome)


def list_factors(stub: Stub, args: argparse.Namespace) -> int:
    response = stub.ListFactors(
        totp_service_pb2.ListFactorsRequest(account_id=args.account, include_inactive=args.all),
        timeout=args.timeout,
    )
    if not response.factors:
        print(f"no factors for {args.account}")
        return EXIT_OK
    for line in output.factor_table(list(response.factors)):
        print(line)
    return EXIT_OK


def get_factor(stub: Stub, args: argparse.Namespace) -> int:
    response = stub.GetFactor(
        totp_service_pb2.GetFactorRequest(account_id=args.account, factor_id=args.factor_id),
        timeout=args.timeout,
    )
    for line in output.factor_lines(response.factor):
        print(line)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="totpctl", description="Talk to a totpd server.")
    parser.add_argument(
        "--server",
        default=os.environ.get("TOTPCTL_SERVER", DEFAULT_SERVER),
        help="HOST:PORT of totpd (env TOTPCTL_SERVER, default %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("enroll", help="enroll a new authenticator app (prints a QR code)")
    p.add_argument("account")
    p.add_argument("--label", default="", help="device name, unique per account")
    p.add_argument("--issuer", help="issuer shown in the app (default: the server's)")
    p.add_argument("--algorithm", choices=sorted(_ALGORITHMS), help="default sha1")
    p.add_argument("--digits", type=int, help="6, 7 or 8 (default 6)")
    p.add_argument("--period", type=int, help="seconds per code, 15-120 (default 30)")
    p.add_argument("--png", help="also write the QR code to this PNG file")
    p.add_argument("--svg", help="also write the QR code to this SVG file")
    p.add_argument("--no-qr", action="store_true", help="do not print the QR code")
    p.set_defaults(run=enroll)

    p = commands.add_parser("confirm", help="activate a pending factor with its first code")
    p.add_argument("account")
    p.add_argument("factor_id")
    p.add_argument("code")
    p.set_defaults(run=confirm)

    p = commands.add_parser("verify", help="check a sign-in code")
    p.add_argument("account")
    p.add_argument("code")
    p.add_argument("--factor", help="only this factor")
    p.set_defaults(run=verify)

    p = commands.add_parser("disable", help="turn MFA off for a factor or the whole account")
    p.add_argument("account")
    p.add_argument("--factor", help="only this factor (default: every factor)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--code", help="a current code from the app")
    how.add_argument("--force", action="store_true", help="administrator override, no code")
    p.set_defaults(run=disable)

    p = commands.add_parser("list", help="list an account's factors")
    p.add_argument("account")
    p.add_argument("--all", action="store_true", help="include disabled and expired factors")
    p.set_defaults(run=list_factors)

    p = commands.add_parser("get", help="show one factor")
    p.add_argument("account")
    p.add_argument("factor_id")
    p.set_defaults(run=get_factor)
    return parser


# No server answered (not a status from totpd itself, which carries a reason).
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    with grpc.insecure_channel(args.server) as channel:
        stub = totp_service_pb2_grpc.TotpServiceStub(channel)
        try:
            return run(stub, args)
        except grpc.RpcError as error:
            line = output.error_line(error)
            if "ERROR_REASON_" not in line and cast(grpc.Call, error).code() in _UNREACHABLE:
                line += f" (is totpd running at {args.server}? see --server or TOTPCTL_SERVER)"
            print(f"totpctl: error: {line}", file=sys.stderr)
            return EXIT_ERROR
        except OSError as error:
            print(f"totpctl: error: {error}", file=sys.stderr)
            return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
