"""`totpd rekey` and `totpd keys status`: finish a key rotation and see when an old key may
go. Both read the database directly (like `totpd unlock`), beside running servers.

Exit codes: 0 done; 1 a database fault (after the retries) or a secret that cannot be
opened; 2 a usage or configuration error (bad flags, keyring, a key the database needs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from totpd.cli.key_status import KeyStatus, key_statuses, status_lines
from totpd.config import ConfigError, Settings, load_settings
from totpd.crypto import Keyring, KeyringError
from totpd.logs import configure_logging, flush_logs

if TYPE_CHECKING:
    from totpd.service.rekeying import RekeyPlan, RekeyReport
    from totpd.store import FactorStore

SETTING_KEYS = ("database_url", "data_dir", "key_file", "log_level", "log_format")
# The audit event of a run (README, "Rotating the encryption key"): one per run with work.
AUDIT_METHOD = "Rekey"
AUDIT_ALL = "*"  # its tenant and account: the run spans every tenant
_PLAIN_PROGRESS_SECONDS = 5.0

AddSettingFlags = Callable[[argparse.ArgumentParser, Sequence[str]], None]


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], add_settings: AddSettingFlags
) -> None:
    """`totpd rekey ...` and `totpd keys status ...`, with the database setting flags."""
    rekey = commands.add_parser(
        "rekey",
        help="re-seal every secret not under the keyring's primary key with it (online, "
        "in batches, resumable); then `totpd keys status` says which keys may go",
    )
    rekey.add_argument(
        "--batch-size",
        type=_bounded_int(1, 10_000),
        default=500,
        metavar="N",
        help="secrets per transaction (default 500)",
    )
    rekey.add_argument(
        "--retries",
        type=_bounded_int(0, 100),
        default=4,
        metavar="N",
        help="tries of a batch after a database fault before giving up (default 4)",
    )
    rekey.add_argument(
        "--dry-run", action="store_true", help="say what would be re-sealed; write nothing"
    )
    # Tests: each batch after the first waits this long inside its transaction.
    rekey.add_argument("--hold-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    add_settings(rekey, SETTING_KEYS)
    keys = commands.add_parser("keys", help="the keyring's keys and what the database uses")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    status = actions.add_parser(
        "status",
        help="per key id: live secrets it seals, recovery codes hashed with it, "
        "whether it is the primary, and whether it may be removed",
    )
    status.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    add_settings(status, SETTING_KEYS)


def _settings_and_keyring(args: argparse.Namespace) -> tuple[Settings, Keyring]:
    settings = load_settings(args.config, {key: getattr(args, key) for key in SETTING_KEYS})
    configure_logging(settings.log_level, settings.log_format)
    try:
        return settings, Keyring.load(settings.key_file)
    except KeyringError as error:
        raise ConfigError(str(error)) from None


@contextmanager
def _store(settings: Settings) -> Iterator[FactorStore]:
    from totpd.store import FactorStore, open_engine

    engine = open_engine(settings.prepared_database_url())
    try:
        yield FactorStore(engine)
    finally:
        engine.dispose()


@contextmanager
def _database_faults() -> Iterator[None]:
    """A database that fails (after the retries) is exit code 1, in one line."""
    from totpd.store.deadline import DeadlineExceededError
    from totpd.store.errors import StoreError, StoreInternalError

    try:
        yield
    except StoreInternalError as error:
        raise _DatabaseFaultError(
            f"the database refused a statement (is its schema current? `totpd migrate`): "
            f"{error.cause}"
        ) from None
    except (StoreError, DeadlineExceededError) as error:
        cause = getattr(error, "cause", str(error))
        raise _DatabaseFaultError(f"the database failed: {cause}") from None


class _DatabaseFaultError(Exception):
    """Ends the command with exit code 1."""


def rekey(args: argparse.Namespace) -> int:
    settings, keyring = _settings_and_keyring(args)
    try:
        with _database_faults(), _store(settings) as store:
            return _rekey(args, settings, keyring, store)
    except _DatabaseFaultError as error:
        flush_logs()
        print(
            f"totpd: error: {error}; the batches committed so far stay: run `totpd rekey` "
            "again to carry on",
            file=sys.stderr,
        )
        return 1


def _rekey(
    args: argparse.Namespace, settings: Settings, keyring: Keyring, store: FactorStore
) -> int:
    from totpd.service.rekeying import RekeyOptions, plan
    from totpd.service.rekeying import rekey as run

    options = RekeyOptions(
        batch=args.batch_size, retries=args.retries, hold_seconds=args.hold_seconds
    )
    work = plan(store.sealed_secrets, keyring, options)
    if work.missing:
        raise ConfigError(
            f"the keyring at {settings.key_file} lacks key id(s) {', '.join(work.missing)}, "
            f"which {sum(work.by_key[key] for key in work.missing)} stored secret(s) are "
            "sealed with: rekey cannot open them. Put those keys back in the keyring "
            "(from the previous keyring file or its backup) and run again"
        )
    print(_plan_line(work, args.batch_size, dry_run=args.dry_run))
    if args.dry_run or not work.total:
        return 0
    with _Progress(work.total) as progress:
        report = run(store.sealed_secrets, keyring, options, total=work.total, on_batch=progress)
    _record_run(store, settings, failed=bool(report.unavailable))
    print(*_report_lines(report), sep="\n")
    now = store.sealed_secrets.key_usage(now=int(time.time()))
    secrets = {key: use.secrets for key, use in now.items()}
    print(_after_line(keyring.primary_key_id, secrets, len(report.unavailable)))
    return 1 if report.unavailable else 0


def _plan_line(work: RekeyPlan, batch: int, *, dry_run: bool) -> str:
    head = f"primary key {work.primary}: "
    if not work.total:
        return head + "every live secret is already sealed with it; nothing to re-seal"
    parts = ", ".join(f"{n} under {key}" for key, n in sorted(work.by_key.items()))
    verb = "would re-seal" if dry_run else "re-sealing"
    tail = " (dry run: nothing written)" if dry_run else ""
    batches = -(-work.total // batch)
    return f"{head}{verb} {work.total} secret(s) ({parts}) in {batches} batch(es) of {batch}{tail}"


def _report_lines(report: RekeyReport) -> list[str]:
    moved = sum(report.moved.values())
    lines = [f"re-sealed {moved} secret(s) under {report.primary} in {report.batches} batch(es)"]
    lines += [f"  from {key}: {n}" for key, n in sorted(report.moved.items())]
    if report.changed:
        lines.append(
            f"{report.changed} secret(s) changed while being re-sealed (disabled, expired or "
            "re-sealed by another run): left as they are"
        )
    if report.retries:
        lines.append(f"{report.retries} database fault(s) overcome by trying again")
    for factor_id, key_id in report.unavailable:
        lines.append(
            f"factor {factor_id}: its secret under {key_id} failed authentication; it cannot "
            "be re-sealed and its factor answers SECRET_UNAVAILABLE (enroll it again)"
        )
    return lines


def _after_line(primary: str, secrets: dict[str, int], failed: int) -> str:
    """The live secrets per key after the run, and what to do about any not under the primary."""
    others = {key: n for key, n in sorted(secrets.items()) if key != primary and n}
    line = f"now: {primary} seals {secrets.get(primary, 0)} live secret(s)"
    if not others:
        return line + "; no live secret is sealed with another key"
    left = ", ".join(f"{n} under {key}" for key, n in others.items())
    if sum(others.values()) == failed:
        return f"{line}; still {left}: the secret(s) that failed authentication (above)"
    return (
        f"{line}; still {left}: a server still seals with another primary key? restart every "
        "server with this keyring, then run `totpd rekey` again"
    )


def _record_run(store: FactorStore, settings: Settings, *, failed: bool) -> None:
    """The run's audit event (unless the audit trail is off), as `totpd unlock` writes
    its own: caller "cli:<OS user>", no peer; tenant and account "*" (every tenant's).
    OK, or INTERNAL with SECRET_UNAVAILABLE when a secret could not be opened."""
    if not settings.policy.audit_enabled:
        return
    from totpd.cli.operator import operator_audit

    event = operator_audit(AUDIT_METHOD, AUDIT_ALL).row(
        int(time.time() * 1_000_000), AUDIT_ALL, None
    )
    if failed:
        event = event._replace(error_reason="SECRET_UNAVAILABLE", status_code="INTERNAL")
    store.audit.append([event])


def _terminal() -> bool:
    """Whether stderr is a terminal with room for a bar (a pty of width 0 has none)."""
    try:
        return sys.stderr.isatty() and os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except (OSError, ValueError):
        return False


class _Progress:
    """A bar on a terminal, otherwise a line at most every few seconds (stderr)."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self._total = total
        self._bar = tqdm(total=total, unit="secret", desc="rekey") if _terminal() else None
        self._shown = 0
        self._last_line = -_PLAIN_PROGRESS_SECONDS

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def __call__(self, report: RekeyReport) -> None:
        done = report.done
        if self._bar is not None:
            self._bar.update(done - self._shown)
            self._shown = done
            return
        now = time.monotonic()
        if now - self._last_line >= _PLAIN_PROGRESS_SECONDS or done >= self._total:
            self._last_line = now
            percent = 100 * done // max(1, self._total)
            flush_logs()
            print(
                f"totpd rekey: {done}/{self._total} secret(s) done ({percent}%)",
                file=sys.stderr,
                flush=True,
            )


# `totpd keys status` when the database uses a key the keyring lacks (its report still printed).
KEY_MISSING_EXIT = 3


def keys(args: argparse.Namespace) -> int:
    settings, keyring = _settings_and_keyring(args)
    try:
        with _database_faults(), _store(settings) as store:
            usage = store.sealed_secrets.key_usage(now=int(time.time()))
    except _DatabaseFaultError as error:
        flush_logs()
        print(f"totpd: error: {error}", file=sys.stderr)
        return 1
    statuses = key_statuses(keyring, usage)
    if args.json:
        print(json.dumps(_document(settings, keyring, statuses), indent=2))
    else:
        print(*status_lines(statuses), sep="\n")
    # A key the database needs is gone: a script (or a monitor) must not read success.
    return KEY_MISSING_EXIT if any(status.state == "missing" for status in statuses) else 0


def _document(settings: Settings, keyring: Keyring, statuses: list[KeyStatus]) -> dict[str, object]:
    return {
        "keyring": str(settings.key_file),
        "primary": keyring.primary_key_id,
        "keys": [status.as_json() for status in statuses],
    }
