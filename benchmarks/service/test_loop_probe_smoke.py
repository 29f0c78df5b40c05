"""Smoke test: the event-loop probe runs at tiny sizes; its rounds answer every wrong
code as INVALID and every valid one as VALID, each counted and recorded as totpd's
own calls are, and the table names every server (run with `pytest benchmarks/service`)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from benchmarks.service import loop_probe
from benchmarks.service.fixtures import (
    Database,
    FactorPool,
    postgres_database,
    seed_database,
    sqlite_database,
)
from totpd.service.checks import Check
from totpd.service.types import VerifyItem
from totpd.store import open_engine

CONFIG = {
    "seconds": 0.5,
    "open_seconds": 0.5,
    "rate": 200.0,
    "max_outstanding": 100,
    "concurrency": 4,
    "turns": 1,
    "window": loop_probe.WINDOW_S,
    "only": None,
}


@contextlib.contextmanager
def _database(kind: str, directory: Path) -> Iterator[Database]:
    with sqlite_database(directory) if kind == "sqlite" else postgres_database() as database:
        yield database


def _audited_verifies(url: str) -> int:
    engine = open_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM audit_calls WHERE method = 'Verify'")
                ).scalar_one()
            )
    finally:
        engine.dispose()


# PostgreSQL (slower to start) runs one probe of each kind of round.
ON_POSTGRES = ("aio rounds", "aio rounds on loop")


@pytest.mark.parametrize(("kind", "only"), [("sqlite", None), ("postgresql", ON_POSTGRES)])
def test_the_probe_serves_verify_in_shared_rounds(
    kind: str, only: tuple[str, ...] | None, tmp_path: Path
) -> None:
    with _database(kind, tmp_path) as database:
        pool = FactorPool(seed_database(database, tmp_path, 2_000))
        figures = loop_probe.measure(database, tmp_path, pool, {**CONFIG, "only": only})
        audited = _audited_verifies(database.url)
    closed, opened = figures["closed"], figures["open"]
    probes = set(only or loop_probe.PROBES)
    expected = {*loop_probe.BASELINES, *probes}
    assert set(closed["medians"]) == expected & set(loop_probe.CLOSED)
    assert set(opened["medians"]) == expected & set(loop_probe.OPEN)
    for run, verdict in ((closed, "VERIFY_RESULT_INVALID"), (opened, "VERIFY_RESULT_VALID")):
        for name in run["medians"]:
            if name in loop_probe.ROUND_PROBES:
                assert set(run["medians"][name]["verdicts"]) == {verdict}
                rounds = run["rounds"][name]
                assert 0 < rounds["rounds"] <= rounds["calls"]
    assert set(opened["medians"]["totpd"]["verdicts"]) == {"VERIFY_RESULT_VALID"}
    # The probes' calls left their audit events as totpd's do (one call row per round
    # at least), so the probe pays what `totpd serve` pays for the trail.
    probe_rounds = sum(
        counts["rounds"] for run in (closed, opened) for counts in run["rounds"].values()
    )
    assert set(closed["rounds"]) | set(opened["rounds"]) == probes & set(loop_probe.ROUND_PROBES)
    assert audited >= probe_rounds
    lines = "\n".join(loop_probe.table(kind, figures))
    for name in expected:
        assert name in lines
    assert "open loop at 200 req/s" in lines


def test_a_round_takes_one_call_per_account() -> None:
    # Only the account ids matter here: no audit context and no future are needed.
    calls = [
        loop_probe._Waiting(VerifyItem(account, "123456"), 6, None, None)  # type: ignore[arg-type]
        for account in ("a", "b", "a", "c", "b")
    ]
    members, later = loop_probe._one_per_account(calls)
    assert [c.item.account_id for c in members] == ["a", "b", "c"]
    assert [c.item.account_id for c in later] == ["a", "b"]


class _BlockingChecker:
    """Answers each check with its account id; the first round waits for `release`."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.rounds: list[list[str]] = []

    def check_round(self, checks: list[Check], audits: object, *, tenant: str) -> list[str]:
        self.rounds.append([check.item.account_id for check in checks])
        if len(self.rounds) == 1:
            self.release.wait(10)
        return [check.item.account_id for check in checks]


async def _second_round_while_first_blocks(stall: float | None) -> tuple[int, list[str]]:
    """How many rounds had started 0.2 s after a second call came in behind a blocked
    first round, and every call's answer once it was released."""
    checker = _BlockingChecker()
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(2) as executor:
        gatherer = loop_probe.Gatherer(checker, loop, executor, 0.001, stall)  # type: ignore[arg-type]
        first = asyncio.ensure_future(gatherer.verify(VerifyItem("a", "123456")))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(gatherer.verify(VerifyItem("b", "123456")))
        await asyncio.sleep(0.2)
        started = len(checker.rounds)
        checker.release.set()
        answers = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert gatherer.rounds == 2 and gatherer.calls == 2
    return started, [str(answer) for answer in answers]


def test_one_round_at_a_time_unless_the_running_one_stalls() -> None:
    # Without a stall limit the second call waits for the first round to end.
    started, answers = asyncio.run(_second_round_while_first_blocks(None))
    assert started == 1
    assert answers == ["a", "b"]
    # With one, it gets a round of its own while the first still waits.
    started, answers = asyncio.run(_second_round_while_first_blocks(0.02))
    assert started == 2
    assert answers == ["a", "b"]
