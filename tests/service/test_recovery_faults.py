"""Recovery codes under concurrency and faults: the same code from 4 processes x 50
threads wins once on both databases; a call whose deadline passes (database hung
for real, tests/hung_database.py) consumes nothing, counts nothing and replaces
nothing."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.hung_database import HangingDatabase, database, paused_postgres
from tests.service.test_deadlines import DEADLINE, enrolled, hung_engine, service
from totpd import deadlines
from totpd.crypto import Keyring
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import VerifyResult
from totpd.store import FactorStore, open_engine
from totpd.store.deadline import DeadlineExceededError

__all__ = ["database", "hung_engine", "paused_postgres", "service"]  # fixtures

PROCESSES = 4
THREADS = 50
# Room for every failure the race can count (max_consecutive_failures is at
# most 100): no lock hides a second VALID behind a LOCKED.
ROOMY = {"failure_budget": 100_000, "max_consecutive_failures": 100}


def _race_worker(
    url: str,
    keyring_path: str,
    policy: dict[str, int],
    now: float,
    account_id: str,
    code: str,
    start: Any,
    out: Any,
) -> None:
    service = MfaService(
        FactorStore(open_engine(url)),
        Keyring.load(Path(keyring_path)),
        Policy(**policy),
        lambda: now,
    )
    ready = threading.Barrier(THREADS + 1)
    results: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        ready.wait(timeout=60)
        verdict = service.verify_recovery_code(account_id, code)
        with lock:
            results.append(verdict.outcome.result.value)

    threads = [threading.Thread(target=attempt) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    start.wait(timeout=120)
    ready.wait(timeout=60)
    for thread in threads:
        thread.join(timeout=180)
    out.put(results)


@pytest.mark.slow  # worker processes
@pytest.mark.parametrize("limits", ["roomy", "default"])
def test_one_code_from_four_processes_of_fifty_threads_wins_once(
    engine: Engine, keyring: Keyring, clock: Clock, account_id: str, tmp_path: Path, limits: str
) -> None:
    policy = ROOMY if limits == "roomy" else {}
    service = MfaService(FactorStore(engine), keyring, Policy(**policy), clock)
    enroll_active(service, clock, account_id)
    code = service.generate_recovery_codes(account_id).codes[0]
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    url = engine.url.render_as_string(hide_password=False)
    args = (url, str(tmp_path / "keyring.json"), policy, clock.now, account_id, code, start, out)
    workers = [context.Process(target=_race_worker, args=args) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    start.set()
    results = [result for _ in workers for result in out.get(timeout=300)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    counts = Counter(results)
    assert len(results) == PROCESSES * THREADS
    assert counts["valid"] == 1
    assert set(counts) <= {"valid", "replayed", "locked"}
    if limits == "roomy":
        # Every loser was compared and counted until the lock: no lost update.
        assert counts["replayed"] == 100
    else:
        assert counts["replayed"] <= Policy().failure_budget
    assert service.recovery_codes_status(account_id).remaining == 9


def test_a_code_whose_call_outlives_its_deadline_is_not_consumed(
    database: HangingDatabase, service: MfaService, clock: Clock, account_id: str
) -> None:
    enrolled(service, clock, account_id)
    with deadlines.within(30):
        codes = service.generate_recovery_codes(account_id).codes
    calls: list[Callable[[], object]] = [
        lambda: service.verify_recovery_code(account_id, codes[0]),
        lambda: service.verify_recovery_code(account_id, "zzzz-zzzz-zzzz"),
        lambda: service.generate_recovery_codes(account_id),
    ]
    # One hang for all three: a backend cut at its deadline exits when the
    # server resumes, and must not be among the processes the next hang stops.
    with database.hung():
        for call in calls:
            with deadlines.within(DEADLINE), pytest.raises(DeadlineExceededError):
                call()
    state = service.deps.store.account_state(account_id)
    assert state is None or state.consecutive_failures == 0
    assert service.verify_recovery_code(account_id, codes[0]).outcome.result is VerifyResult.VALID
    assert service.recovery_codes_status(account_id).remaining == 9


def test_a_call_whose_deadline_already_passed_touches_nothing(
    hung_engine: Engine, service: MfaService, clock: Clock, account_id: str
) -> None:
    enrolled(service, clock, account_id)
    codes = service.generate_recovery_codes(account_id).codes
    checkouts: list[object] = []
    event.listen(hung_engine, "checkout", lambda *_: checkouts.append(None))
    calls: list[Callable[[], object]] = [
        lambda: service.verify_recovery_code(account_id, codes[0]),
        lambda: service.generate_recovery_codes(account_id),
        lambda: service.recovery_codes_status(account_id),
    ]
    for call in calls:
        with deadlines.within(0), pytest.raises(DeadlineExceededError):
            call()
    assert checkouts == []
    assert service.verify_recovery_code(account_id, codes[0]).outcome.result is VerifyResult.VALID
