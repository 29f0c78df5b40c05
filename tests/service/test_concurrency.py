"""The same valid code submitted at once by many threads and processes: one VALID."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_active
from tests.totp_oracle import code_at
from totpd.crypto import Keyring
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import VerifyItem, VerifyResult
from totpd.store import FactorStore, open_engine

THREADS = 50


def test_fifty_threads_one_valid(service: MfaService, clock: Clock, account_id: str) -> None:
    enrollment = enroll_active(service, clock, account_id)
    code = code_at(enrollment, clock.now)
    barrier = threading.Barrier(THREADS)
    results: list[VerifyResult] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait(timeout=30)
        outcome = service.verify(VerifyItem(account_id, code))
        with lock:
            results.append(outcome.result)

    threads = [threading.Thread(target=attempt) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    counts = Counter(results)
    assert len(results) == THREADS
    assert counts[VerifyResult.VALID] == 1
    # The losers saw the step taken, or were held back by the backoff the
    # simultaneous attempts triggered; none was judged INVALID.
    assert set(counts) <= {VerifyResult.VALID, VerifyResult.REPLAYED, VerifyResult.LOCKED}


def _process_worker(
    url: str, keyring_path: str, now: float, account_id: str, code: str, start: object, out: object
) -> None:
    service = MfaService(
        FactorStore(open_engine(url)), Keyring.load(Path(keyring_path)), Policy(), lambda: now
    )
    start.wait(timeout=60)  # type: ignore[attr-defined]
    results = []
    threads = []

    def attempt() -> None:
        results.append(service.verify(VerifyItem(account_id, code)).result.value)

    for _ in range(10):
        threads.append(threading.Thread(target=attempt))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    out.put(results)  # type: ignore[attr-defined]


@pytest.mark.slow  # worker processes
def test_processes_share_the_database_one_valid(
    engine: Engine, keyring: Keyring, clock: Clock, account_id: str, tmp_path: Path
) -> None:
    service = MfaService(FactorStore(engine), keyring, Policy(), clock)
    enrollment = enroll_active(service, clock, account_id)
    code = code_at(enrollment, clock.now)
    keyring_path = tmp_path / "keyring.json"
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    out = context.Queue()
    url = engine.url.render_as_string(hide_password=False)
    workers = [
        context.Process(
            target=_process_worker,
            args=(url, str(keyring_path), clock.now, account_id, code, start, out),
        )
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    start.set()
    results = [result for _ in workers for result in out.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    counts = Counter(results)
    assert len(results) == 40
    assert counts["valid"] == 1
    assert set(counts) <= {"valid", "replayed", "locked"}
