"""The `totpd` command: serve, keygen, migrate.

Design notes: ARCHITECTURE.md, "Module notes", cli/serve.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from totpd import __version__, crypto
from totpd.calls import DEFAULT_TENANT
from totpd.cli import audit as audit_cli
from totpd.cli import keys as keys_cli
from totpd.cli import tokens
from totpd.cli.workers import PortReservationError, join_supervisor, parse_processes
from totpd.config import KEYS, ConfigError, Settings, env_name, load_settings
from totpd.logs import configure_logging, flush_logs
from totpd.rpc.callers import load_access
from totpd.rpc.tls import load_tls
from totpd.service.policy import Policy
from totpd.thread_names import name_os_threads

if TYPE_CHECKING:
    from totpd.store import AccountUnlock

_log = logging.getLogger("totpd")

# Setting keys with a short flag name; every other key is --<key-with-dashes>.
_FLAG_NAMES = {"listen_address": "--listen", "create_dev_key": "--dev"}
_METAVARS = {
    "listen_address": "HOST:PORT",
    "callers_file": "TOML",
    "client_identity": "uri,dns,cn",
    "database_url": "URL",
    "data_dir": "DIR",
    "key_file": "PATH",
    "log_level": "LEVEL",
    "log_format": "json|text",
    "default_issuer": "NAME",
    "tls_cert_file": "PEM",
    "tls_key_file": "PEM",
    "tls_client_ca_file": "PEM",
    "cpu_path": "NAME",
    "pin_interpreter": "true|false",
    "metrics_address": "HOST:PORT",
    "otlp_endpoint": "URL",
}
# Boolean settings that are switches on the command line.
_SWITCHES = {
    "create_dev_key": "development mode: create a key file on first start if it is missing",
    "allow_anonymous": "serve beyond loopback with no callers file: every caller is 'local',"
    " with every permission (logged as a warning on every start)",
}
_DATABASE_KEYS = ("database_url", "data_dir", "key_file", "log_level", "log_format")


class StartupError(Exception):
    """A problem the operator must fix before totpd can start."""


def _add_setting_flags(parser: argparse.ArgumentParser, keys: Sequence[str]) -> None:
    parser.add_argument(
        "--config", type=Path, help="TOML configuration file (default: $TOTPD_CONFIG)"
    )
    group = parser.add_argument_group("settings (override the file and TOTPD_* variables)")
    for key in keys:
        if key in _SWITCHES:
            group.add_argument(
                _FLAG_NAMES.get(key, "--" + key.replace("_", "-")),
                dest=key,
                action="store_true",
                default=None,
                help=_SWITCHES[key],
            )
            continue
        flag = _FLAG_NAMES.get(key, "--" + key.replace("_", "-"))
        metavar = _METAVARS.get(key, "N")
        group.add_argument(flag, dest=key, metavar=metavar, help=f"env {env_name(key)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="totpd", description="TOTP verification service")
    parser.add_argument("--version", action="version", version=f"totpd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC server")
    _add_setting_flags(serve, KEYS)
    serve.add_argument(
        "--ready-file",
        type=Path,
        help="once serving, write the bound HOST:PORT to this file (atomically)",
    )
    serve.add_argument(
        "--processes",
        type=parse_processes,
        default=1,
        metavar="N|auto",
        help="serve from N worker processes on one port under a supervisor that restarts"
        " them (auto: one per core; default 1: a single process, no supervisor)",
    )
    # A worker of `--processes N`: set by the supervisor only.
    serve.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)

    keygen = commands.add_parser("keygen", help="write a new keyring file")
    keygen.add_argument("--out", type=Path, required=True, help="where to write (never overwrites)")

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    _add_setting_flags(migrate, _DATABASE_KEYS)

    unlock = commands.add_parser(
        "unlock",
        help="unlock an account: lift its lock after too many consecutive failures, "
        "refill its failure budget, clear its factors' failures",
    )
    unlock.add_argument("--account", required=True, metavar="ID", help="the account id")
    unlock.add_argument(
        "--tenant", default=DEFAULT_TENANT, metavar="NAME", help="the account's tenant"
    )
    unlock.add_argument(
        "--factor",
        metavar="ID",
        help="clear only this factor's failures and backoff (the account's lock, run of "
        "failures and budget are cleared either way)",
    )
    _add_setting_flags(unlock, _DATABASE_KEYS)
    _add_setting_flags(audit_cli.add_parser(commands), _DATABASE_KEYS)
    keys_cli.add_parsers(commands, _add_setting_flags)
    tokens.add_parser(commands)
    return parser


def _settings(args: argparse.Namespace, keys: Sequence[str]) -> Settings:
    overrides = {key: getattr(args, key) for key in keys}
    return load_settings(args.config, overrides)


def ensure_key_file(settings: Settings) -> None:
    """Create a development keyring when asked to; otherwise insist the file exists."""
    if settings.key_file.exists():
        return
    if not settings.create_dev_key:
        raise StartupError(
            f"no key file at {settings.key_file}: create one with "
            f"`totpd keygen --out {settings.key_file}` (or start with --dev for development)"
        )
    crypto.write_new_keyring(settings.key_file)
    _log.warning(
        "created a DEVELOPMENT key file; secrets are only as safe as this file, "
        "do not use it in production",
        extra={"key_file": str(settings.key_file)},
    )


@contextmanager
def _database_errors() -> Iterator[None]:
    """An unreachable database is an operator problem: one line, no traceback."""
    from totpd.store.faults import database_failure

    try:
        yield
    except Exception as error:
        cause = database_failure(error)
        if cause is None:
            raise
        raise StartupError(f"cannot open the database: {cause}") from None


def _serve(args: argparse.Namespace) -> int:
    name_os_threads()  # before the first thread: the log writer's
    settings = _settings(args, KEYS)
    configure_logging(settings.log_level, settings.log_format)
    worker = args.worker_of is not None
    if worker:
        join_supervisor(args.worker_of, args.worker_index)
    tls = load_tls(settings)  # bad TLS files stop the start before anything is created
    access = load_access(settings)  # so does a bad callers file, or anonymous beyond loopback
    if not worker:
        ensure_key_file(settings)
    # Imported late so `totpd keygen` and `--help` work without the native core.
    from totpd.app import build_service, denial_recorder, observed, prepare_database
    from totpd.cli.supervisor import Supervisor, SupervisorError
    from totpd.otp import CpuPathError
    from totpd.rpc.server import ServerError, interpreter_cpu, serve

    try:
        if args.processes > 1:
            with _database_errors():
                prepare_database(settings)  # once, before any worker starts
            return Supervisor(args.argv, args.processes, settings, args.ready_file).run()
        with _database_errors():
            service = build_service(settings, prepared=worker)
        with observed(settings):
            return serve(
                settings,
                service,
                ready_file=args.ready_file,
                tls=tls,
                share_port=worker,
                access=access,
                on_denied=denial_recorder(service),
                interpreter_cpu=interpreter_cpu(settings, args.worker_index),
            )
    except (
        crypto.KeyringError,
        CpuPathError,
        ServerError,
        SupervisorError,
        PortReservationError,
    ) as error:
        raise StartupError(str(error)) from None


def _keygen(args: argparse.Namespace) -> int:
    out: Path = args.out
    try:
        key_id = crypto.write_new_keyring(out)
    except FileExistsError:
        raise StartupError(f"{out} already exists; refusing to overwrite a keyring") from None
    print(f"wrote keyring {out} (key id {key_id}, mode 0600)")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings(args, _DATABASE_KEYS)
    configure_logging(settings.log_level, settings.log_format)
    from totpd.service.resealing import reseal_legacy_secrets
    from totpd.store import FactorStore, migrate, open_engine

    # The keyring step needs the key file; without it only the schema moves,
    # and `totpd serve` re-seals at its start.
    try:
        keyring = crypto.Keyring.load(settings.key_file) if settings.key_file.exists() else None
    except crypto.KeyringError as error:
        raise StartupError(str(error)) from None
    with _database_errors():
        engine = open_engine(settings.prepared_database_url())
        try:
            migrate(engine)
            if keyring is not None:
                reseal_legacy_secrets(FactorStore(engine).sealed_secrets, keyring)
        finally:
            engine.dispose()
    _log.info("database schema is up to date")
    return 0


def _unlock(args: argparse.Namespace) -> int:
    settings = _settings(args, _DATABASE_KEYS)
    configure_logging(settings.log_level, settings.log_format)
    from totpd.cli.operator import operator_audit
    from totpd.service import validation
    from totpd.service.errors import ErrorReason, TotpdError
    from totpd.service.mfa.unlocking import unlock_account
    from totpd.store import FactorStore, open_engine

    try:
        account_id = validation.account_id(args.account)
        tenant = validation.tenant(args.tenant, "--tenant")
        factor_id = validation.optional_factor_id(args.factor, "--factor")
    except TotpdError as error:
        flag = error.field if error.field in ("--tenant", "--factor") else "--account"
        raise StartupError(f"{flag}: {error.message}") from None
    audit = operator_audit("Unlock", tenant) if settings.policy.audit_enabled else None
    with _database_errors():
        engine = open_engine(settings.prepared_database_url())
        try:
            store = FactorStore(engine)
            found = unlock_account(store, time.time, tenant, account_id, factor_id, audit)
        except TotpdError as error:
            if error.reason is ErrorReason.FACTOR_NOT_FOUND:
                raise StartupError(
                    f"--factor: account {account_id!r} (tenant {tenant!r}) has no factor "
                    f"{factor_id!r}"
                ) from None
            raise StartupError(
                f"account {account_id!r} (tenant {tenant!r}) has no factors and no attempt "
                "state: nothing to unlock (check the account id)"
            ) from None
        finally:
            engine.dispose()
    done = _unlock_report(found, settings.policy)
    if not done:
        print(f"account {account_id}: nothing to unlock (not locked, no failures counted)")
        return 0
    _log.info("account unlocked by an operator", extra={"account_id": account_id, "tenant": tenant})
    print(f"account {account_id} unlocked: " + "; ".join(done))
    return 0


def _unlock_report(found: AccountUnlock, policy: Policy) -> list[str]:
    """What the unlock cleared, one phrase per item."""
    from totpd.service import failure_budget

    done: list[str] = []
    if found.locked_at is not None:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(found.locked_at))
        done.append(f"lock after too many consecutive failures lifted (locked since {since})")
    if found.consecutive_failures:
        done.append(f"{found.consecutive_failures} consecutive failures cleared")
    now = int(time.time())
    if found.budget_tat > now:
        left = failure_budget.pairs_left(policy, found.budget_tat, now)
        done.append(f"failure budget refilled ({left} of {policy.failure_budget} were left)")
    if found.factors_unblocked:
        done.append(f"failures and timed locks of {found.factors_unblocked} factor(s) cleared")
    return done


def _audit(args: argparse.Namespace) -> int:
    settings = _settings(args, _DATABASE_KEYS)
    configure_logging(settings.log_level, settings.log_format)
    try:
        with _database_errors():
            return audit_cli.export(args, settings)
    except audit_cli.ExportUsageError as error:
        raise StartupError(str(error)) from None


_COMMANDS = {
    "serve": _serve,
    "keygen": _keygen,
    "migrate": _migrate,
    "unlock": _unlock,
    "audit": _audit,
    "rekey": keys_cli.rekey,
    "keys": keys_cli.keys,
    "token": tokens.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # a supervisor starts its workers with the same command line
    try:
        return _COMMANDS[args.command](args)
    except (ConfigError, StartupError, OSError) as error:
        flush_logs()  # the lines that led here come before the error
        print(f"totpd: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
