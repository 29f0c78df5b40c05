"""`totpd rekey`: every live secret not sealed with the primary key (or still in the legacy
format) is opened and sealed again under the primary, online, a batch per transaction.

Design notes: ARCHITECTURE.md, "Module notes", service/rekeying.py.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from totpd import deadlines
from totpd.crypto import Keyring
from totpd.service.resealing import reseal_all
from totpd.store.deadline import DeadlineExceededError
from totpd.store.errors import StoreFaultError
from totpd.store.sealed_secrets import SealedSecrets, Selection

_log = logging.getLogger("totpd.rekey")
_T = TypeVar("_T")
# The longest one read or one batch's transaction may wait for the database: a hung
# database ends the attempt (and, after the retries, the run) instead of the wait.
STEP_SECONDS = 60.0
# The pause before retry n (1, 2, ...) after a database fault: doubling from this.
FIRST_RETRY_PAUSE = 0.5


class RekeyPlan(NamedTuple):
    primary: str
    by_key: dict[str, int]  # secrets to re-seal, by the key id that seals them now
    missing: list[str]  # those key ids the keyring lacks (nothing can be done for them)

    @property
    def total(self) -> int:
        return sum(self.by_key.values())


@dataclass
class RekeyReport:
    """What a run did so far; handed to the progress callback after every batch."""

    primary: str
    total: int  # selected when the run started
    moved: Counter[str] = field(default_factory=Counter)  # re-sealed, by former key id
    changed: int = 0  # changed under the run (disabled, expired, re-sealed elsewhere): left alone
    unavailable: list[tuple[str, str]] = field(default_factory=list)  # (factor id, key id)
    batches: int = 0
    retries: int = 0

    @property
    def done(self) -> int:
        return sum(self.moved.values()) + self.changed + len(self.unavailable)


@dataclass(frozen=True)
class RekeyOptions:
    batch: int = 500
    retries: int = 4  # attempts of one step after its first, on a database fault
    # Seconds each batch after the first waits inside its transaction before the
    # commit: lets a test kill the run with a batch in flight.
    hold_seconds: float = 0.0
    sleep: Callable[[float], None] = time.sleep


def plan(secrets: SealedSecrets, keyring: Keyring, options: RekeyOptions) -> RekeyPlan:
    """What a run would re-seal now, and which of the keys it needs the keyring lacks."""
    selected = secrets.selecting(Selection(keyring.primary_key_id))
    by_key = _retrying(options, None, selected.count_by_key)
    missing = sorted(set(by_key) - keyring.key_ids)
    return RekeyPlan(keyring.primary_key_id, by_key, missing)


def rekey(
    secrets: SealedSecrets,
    keyring: Keyring,
    options: RekeyOptions,
    *,
    total: int,
    on_batch: Callable[[RekeyReport], None] = lambda _: None,
) -> RekeyReport:
    """Re-seal every selected secret under the primary key, a batch per transaction.

    Safe beside serving processes and other runs: each row is replaced only if it still
    holds the secret that was read (store/sealed_secrets.py). Resumable: a run killed
    half-way has committed whole batches, which a new run no longer selects.
    Raises the store's fault once a step failed `options.retries` more times.
    """
    selected = secrets.selecting(Selection(keyring.primary_key_id))
    report = RekeyReport(keyring.primary_key_id, total)
    after = ""
    while True:
        last = _retrying(
            options,
            report,
            functools.partial(_one_batch, selected, keyring, options, report, after),
        )
        if last is None:
            break
        after = last
        report.batches += 1
        on_batch(report)
    return report


def _one_batch(
    selected: SealedSecrets,
    keyring: Keyring,
    options: RekeyOptions,
    report: RekeyReport,
    after: str,
) -> str | None:
    """Read, re-seal and store one batch; the last factor id it covered (None: no more).

    The report changes only after the commit, so a retried batch is counted once.
    """
    rows = selected.after(after, limit=options.batch)
    if not rows:
        return None
    replacements, failed = reseal_all(keyring, rows)
    hold = options.hold_seconds if report.batches > 0 else 0.0
    written = selected.replace(
        replacements, before_commit=(lambda: options.sleep(hold)) if hold > 0 else None
    )
    report.moved.update(item.old.key_id for item in written)
    report.changed += len(replacements) - len(written)
    report.unavailable.extend((row.factor_id, row.key_id) for row in failed)
    return rows[-1].factor_id


def _retrying(options: RekeyOptions, report: RekeyReport | None, step: Callable[[], _T]) -> _T:
    """`step` under a deadline of STEP_SECONDS, tried again after a database fault."""
    attempt = 0
    while True:
        try:
            with deadlines.within(STEP_SECONDS):
                return step()
        except (StoreFaultError, DeadlineExceededError) as error:
            if attempt >= options.retries:
                raise
            attempt += 1
            if report is not None:
                report.retries += 1
            cause = getattr(error, "cause", type(error).__name__)
            _log.warning(
                "database fault during rekey; trying again",
                extra={"attempt": attempt, "of": options.retries, "cause": cause},
            )
            options.sleep(FIRST_RETRY_PAUSE * 2 ** (attempt - 1))
