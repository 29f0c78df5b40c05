"""`totpd token new NAME`: a new bearer token, printed once, and its callers-file lines.

The token goes to the calling service (as `authorization: Bearer <token>`); the
callers file gets only its SHA-256, so the file can be read, versioned and
reviewed without handing out a credential.
"""

from __future__ import annotations

import argparse
import json

from totpd.service.access import (
    PERMISSIONS,
    CallersFileError,
    new_token,
    parse_callers,
    token_sha256,
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser("token", help="bearer tokens for the callers file")
    actions = token.add_subparsers(dest="token_command", required=True)
    new = actions.add_parser(
        "new",
        help="print a new token once, and the [[callers]] lines to add for it",
        description="The first line printed is the token: hand it to the service and"
        " keep it as a secret; it is not stored anywhere. The lines after it are the"
        " callers-file entry, which holds only the token's SHA-256.",
    )
    new.add_argument("name", help="the caller's name, e.g. the calling service")
    new.add_argument(
        "--tenant",
        action="append",
        metavar="TENANT",
        help="a tenant the caller acts in (repeat for several; default: default)",
    )
    new.add_argument(
        "--permission",
        action="append",
        choices=PERMISSIONS,
        help="a permission to grant (repeat for several; default: verify)",
    )


def new_caller(name: str, tenants: list[str], permissions: list[str]) -> tuple[str, str]:
    """A fresh token and the [[callers]] entry (TOML) that lets it in, checked like the server
    checks the file."""
    token = new_token()
    entry = "\n".join(
        [
            "[[callers]]",
            f"name = {json.dumps(name)}",
            f'token_sha256 = "{token_sha256(token)}"',
            f"tenants = {json.dumps(tenants)}",
            f"permissions = {json.dumps(permissions)}",
        ]
    )
    parse_callers(entry, "the new entry")  # a bad name or tenant fails here, not at reload
    return token, entry


def run(args: argparse.Namespace) -> int:
    from totpd.cli.serve import StartupError

    try:
        token, entry = new_caller(
            args.name, args.tenant or ["default"], args.permission or ["verify"]
        )
    except CallersFileError as error:
        raise StartupError(str(error)) from None
    print(token)
    print("# Add to the callers file (it holds only the token's SHA-256; the token above")
    print("# is shown once: give it to the caller as 'authorization: Bearer <token>'):")
    print(entry)
    return 0
