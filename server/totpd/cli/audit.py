"""`totpd audit export`: the audit trail as JSON lines for a SIEM, read from the database
directly (like `totpd unlock`), so it works while the server is down too."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from totpd.config import Settings
    from totpd.store.audit import AuditRecord

_PAGE = 1000
_DURATION = re.compile(r"^([0-9]{1,9})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# The keys of every line, in this order: a SIEM's parser may rely on them.
EXPORT_KEYS = (
    "event_id",
    "time",
    "time_unix_micros",
    "caller",
    "tenant",
    "method",
    "account_id",
    "factor_id",
    "verify_result",
    "error_reason",
    "status_code",
    "step_offset",
    "request_id",
    "peer",
)


class ExportUsageError(ValueError):
    """A bad --since/--until or --out: the operator's to fix."""


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """`totpd audit export ...`; the caller adds the database setting flags."""
    audit = commands.add_parser("audit", help="read the audit trail")
    actions = audit.add_subparsers(dest="audit_command", required=True)
    export = actions.add_parser(
        "export", help="write audit events as JSON lines (one event per line), oldest first"
    )
    export.add_argument(
        "--since",
        required=True,
        metavar="TIME",
        help="events at or after TIME: ISO 8601 (2026-01-31T12:00:00Z) or an age (24h, 7d)",
    )
    export.add_argument("--until", metavar="TIME", help="events before TIME (same forms)")
    export.add_argument("--tenant", help="only this tenant's events")
    export.add_argument(
        "--out", type=Path, help="write to this new file (never overwrites); default stdout"
    )
    return export


def parse_time(text: str, now: float) -> int:
    """Unix microseconds from ISO 8601 (UTC unless it says otherwise) or an age before `now`."""
    duration = _DURATION.match(text)
    if duration:
        seconds = int(duration.group(1)) * _UNIT_SECONDS[duration.group(2)]
        return int((now - seconds) * 1_000_000)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ExportUsageError(
            f"{text!r} is neither an ISO 8601 time (2026-01-31T12:00:00Z) nor an age "
            "(a number and s, m, h or d, e.g. 24h)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1_000_000)


def event_line(record: AuditRecord) -> str:
    """One event as a JSON object with `EXPORT_KEYS`, absent values as null."""
    row = record.row
    moment = datetime.fromtimestamp(row.time_us / 1_000_000, UTC)
    values = {
        "event_id": record.event_id,
        "time": moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "time_unix_micros": row.time_us,
        "caller": row.caller,
        "tenant": row.tenant,
        "method": row.method,
        "account_id": row.account_id,
        "factor_id": row.factor_id,
        "verify_result": row.verify_result,
        "error_reason": row.error_reason,
        "status_code": row.status_code,
        "step_offset": row.step_offset,
        "request_id": row.request_id,
        "peer": row.peer,
    }
    return json.dumps({key: values[key] for key in EXPORT_KEYS}, separators=(",", ":"))


def export(args: argparse.Namespace, settings: Settings) -> int:
    """Write the events the flags select; returns the exit status."""
    from totpd.store import FactorStore, open_engine
    from totpd.store.audit import AuditFilter

    now = time.time()
    since = parse_time(args.since, now)
    until = parse_time(args.until, now) if args.until else None
    if until is not None and until <= since:
        raise ExportUsageError("--until must be later than --since")
    where = AuditFilter(tenant=args.tenant or None, start_us=since, end_us=until)
    engine = open_engine(settings.prepared_database_url())
    count = 0
    try:
        store = FactorStore(engine).audit
        with _output(args.out) as out:
            after = 0
            while True:
                records = store.page(where, after_id=after, limit=_PAGE)
                for record in records:
                    out.write(event_line(record) + "\n")
                count += len(records)
                if len(records) < _PAGE:
                    break
                after = records[-1].event_id
    finally:
        engine.dispose()
    print(f"totpd: exported {count} audit event(s)", file=sys.stderr)
    return 0


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    try:
        handle = path.open("x", encoding="utf-8")
    except FileExistsError:
        raise ExportUsageError(f"--out {path}: the file exists (it is never overwritten)") from None
    with handle:
        yield handle
