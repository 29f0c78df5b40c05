"""What one large BatchVerify call would save without each piece of its work:
``python -m benchmarks.service.critical_path [--db postgresql] [--items 10000] [--calls 10]``.

On PostgreSQL a large round runs as parts on three lanes (server/totpd/service/
lanes.py), so a stage's time on one lane (breakdown.py's table) is not what the
call would save without it: one lane's read may run while another's UPDATE does.
Here each piece is taken out of a server in this process (the store patched,
`Removal`), and calls without it alternate with calls as served, each of
`--items` fresh valid codes. A saving is an upper bound of what making
that piece free would give, not a design: without its events a call stores no
audit trail. The bulk UPDATE of the same number of rows (batch.py, its fastest
form) runs after the calls, for each variant's ratio against it (issue 16's
target, >= 70%, is on the call as served). benchmarks/README.md, "What a large
call would save without each piece".
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.service import batch, breakdown
from benchmarks.service.fixtures import Database, FactorPool
from totpd.rpc.server import tune_garbage_collector
from totpd.service.verification import CodeChecker
from totpd.store import CandidateFactor, FactorWrite, dbapi
from totpd.store.rounds import Attempts
from totpd.v1 import totp_service_pb2 as pb

AS_SERVED = "as served"
NO_READ = "without the read"
NO_EVENTS = "without the events"
NO_COPY = "without the events' COPY"
# What each variant takes out (a PostgreSQL round COPYs its events; SQLite's
# round inserts them in its write's statements, so NO_COPY is PostgreSQL's only).
VARIANTS = {
    AS_SERVED: "the server as it runs",
    NO_READ: "each round's read answered from this process's memory of the factors"
    " (as last read or written; the write stays conditional)",
    NO_EVENTS: "no audit events in the rounds' writes",
    NO_COPY: "the events built but not sent (PostgreSQL's COPY)",
}


def variants_for(database: str) -> list[str]:
    return [name for name in VARIANTS if name != NO_COPY or database == "postgresql"]


# --- the calls, and the baseline ------------------------------------------------


def measure(
    database: Database, data_dir: Path, pool: FactorPool, args: argparse.Namespace
) -> dict[str, Any]:
    """The calls, each variant in turn, then the bulk UPDATE's forms.

    In this process, each request built just before its call (its codes must
    be within the window when it runs).
    """
    n, names = args.items, variants_for(database.name)
    removal = Removal()
    server = breakdown.InProcessServer(database.url, data_dir)
    tune_garbage_collector()  # as `totpd serve` does
    times: dict[str, list[float]] = {name: [] for name in names}
    valid = dict.fromkeys(names, 0)
    # As served: the serial ends, before the call's first round (or part) starts
    # and after its last one ends.
    before: list[float] = []
    after: list[float] = []

    def request() -> bytes:
        return batch.batch_request(pool, pool.take(n)).SerializeToString()

    try:
        with removal.installed():
            # Every factor read once: the read's variant then finds all in memory.
            for _ in range(math.ceil(len(pool) / n) + 1):
                server.call(request())
            removal.relocked.clear()
            removal.reads_skipped = 0
            for turn in range(args.calls):
                for name in names if turn % 2 == 0 else names[::-1]:
                    data = request()
                    removal.variant = name
                    removal.rounds.clear()
                    started = time.perf_counter()
                    response = server.call(data)
                    ended = time.perf_counter()
                    times[name].append(ended - started)
                    removal.variant = AS_SERVED
                    if name == AS_SERVED:
                        before.append(min(start for start, _ in removal.rounds) - started)
                        after.append(ended - max(end for _, end in removal.rounds))
                    answer = pb.BatchVerifyResponse.FromString(response)
                    valid[name] += batch.count_valid(answer, {})
    finally:
        server.close()
    baselines = [
        batch.run_database(database, pool, n, args.calls, form=form)
        for form in batch.forms(database)
    ]
    return {
        "items": n,
        "calls": args.calls,
        "variants": {
            name: {
                "median_s": statistics.median(times[name]),
                "times_s": times[name],
                "valid_fraction": valid[name] / (n * args.calls),
                "relocked_rounds": removal.relocked.get(name, 0),
            }
            for name in names
        },
        "reads_skipped": removal.reads_skipped,
        "before_rounds_median_s": statistics.median(before),
        "after_rounds_median_s": statistics.median(after),
        "db_consume": max(baselines, key=lambda figure: figure["rate"]),
    }


def savings(medians: dict[str, float], consume_s: float) -> list[tuple[str, float, float, float]]:
    """Each variant's (name, median s, share of the call as served it saves, ratio
    against the bulk UPDATE's median `consume_s`), in `medians`' order."""
    served = medians[AS_SERVED]
    return [
        (name, median, (served - median) / served, consume_s / median)
        for name, median in medians.items()
    ]


def table(name: str, figures: dict[str, Any]) -> list[str]:
    consume = figures["db_consume"]
    medians = {variant: figure["median_s"] for variant, figure in figures["variants"].items()}
    lines = [
        f"\n== {name}: BatchVerify x{figures['items']:,} in process, one piece taken out at a"
        f" time ({figures['calls']} calls each, alternating; medians) ==",
        f"   {'variant':<26} {'call ms':>9} {'saved':>7} {'vs bulk UPDATE':>15}"
        f" {'valid':>6} {'relocked':>9}",
    ]
    for variant, median, saved, ratio in savings(medians, consume["median_s"]):
        figure = figures["variants"][variant]
        lines.append(
            f"   {variant:<26} {1000 * median:>9.1f} {saved:>7.0%} {ratio:>15.0%}"
            f" {figure['valid_fraction']:>6.0%} {figure['relocked_rounds']:>9}"
        )
    before, after = figures["before_rounds_median_s"], figures["after_rounds_median_s"]
    lines.append(
        f"   as served, before the first round starts {1000 * before:.1f} ms and after the"
        f" last ends {1000 * after:.1f} ms (one thread's Python)"
    )
    lines.append(f"   bulk UPDATE ({consume.get('form')}): {1000 * consume['median_s']:.1f} ms")
    lines += [f"   {variant}: {VARIANTS[variant]}" for variant in figures["variants"]]
    lines.append("   A saving is an upper bound: the piece made free, nothing else changed.")
    return lines


# --- a piece taken out ------------------------------------------------------------


class Removal:
    """Patches the store so that the variant in `variant` takes its piece out
    (AS_SERVED: none), and times the engine's rounds (`rounds`).

    The memory standing in for the read holds one factor per account, as the
    benchmark seeds them."""

    def __init__(self) -> None:
        self.variant = AS_SERVED
        self.relocked: dict[str, int] = {}
        self.reads_skipped = 0
        self.rounds: list[tuple[float, float]] = []  # each round's (or part's) start and end
        self._factors: dict[str, CandidateFactor] = {}  # by account
        self._accounts: dict[str, str] = {}  # factor id -> account

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """The store patched for the block."""
        with (
            mock.patch.object(Attempts, "read", self._reading(Attempts.read)),
            mock.patch.object(
                Attempts, "write_if_unchanged", self._writing(Attempts.write_if_unchanged)
            ),
            mock.patch.object(dbapi.RawConnection, "copy", self._copying(dbapi.RawConnection.copy)),
            mock.patch.object(
                CodeChecker, "_settled_part", self._timing(CodeChecker._settled_part)
            ),
        ):
            yield

    def _reading(self, read: Callable[..., list[CandidateFactor]]) -> Callable[..., Any]:
        def remembered(attempts: Attempts, requests: Sequence[Any], **kwargs: Any) -> Any:
            known = self._factors
            if self.variant == NO_READ and all(r.account_id in known for r in requests):
                self.reads_skipped += 1
                return [
                    known[r.account_id]
                    for r in requests
                    if known[r.account_id].digits == r.digits
                    and r.factor_id in (None, known[r.account_id].factor_id)
                ]
            found = read(attempts, requests, **kwargs)
            for factor in found:
                known[factor.account_id] = factor
                self._accounts[factor.factor_id] = factor.account_id
            return found

        return remembered

    def _writing(self, write: Callable[..., bool]) -> Callable[..., bool]:
        def remembering(attempts: Attempts, writes: Sequence[FactorWrite], **kwargs: Any) -> bool:
            if self.variant == NO_EVENTS:
                kwargs["events"] = ()
            written = write(attempts, writes, **kwargs)
            if not written:
                self.relocked[self.variant] = self.relocked.get(self.variant, 0) + 1
                return written
            for account in kwargs.get("accounts", ()):  # its row changed: read it again
                self._factors.pop(account.account_id, None)
            for new in writes:
                account_id = self._accounts.get(new.factor_id)
                if account_id in self._factors:
                    self._factors[account_id] = self._factors[account_id]._replace(
                        last_used_step=new.last_used_step,
                        failed_attempts=new.failed_attempts,
                        blocked_until=new.blocked_until,
                    )
            return written

        return remembering

    def _timing(self, settled: Callable[..., Any]) -> Callable[..., Any]:
        def timed(checker: CodeChecker, round_: Any) -> Any:
            started = time.perf_counter()
            try:
                return settled(checker, round_)
            finally:
                self.rounds.append((started, time.perf_counter()))

        return timed

    def _copying(self, copy: Callable[..., int]) -> Callable[..., int]:
        def maybe_sent(connection: Any, into: Any, rows: Sequence[Any]) -> int:
            return len(rows) if self.variant == NO_COPY else copy(connection, into, rows)

        return maybe_sent


def _parser() -> argparse.ArgumentParser:
    parser = batch.tool_parser("benchmarks.service.critical_path", __doc__)
    parser.add_argument("--calls", type=int, default=10, help="calls per variant")
    return parser


def main(argv: list[str] | None = None) -> int:
    return batch.run_tool(_parser().parse_args(argv), measure, table, ["postgresql"])


if __name__ == "__main__":
    sys.exit(main())
