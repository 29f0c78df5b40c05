"""Chaos on the local cluster (deploy/local-cluster): three replicas on one
PostgreSQL under steady load from the Python client (round_robin over every
replica, the client's UNAVAILABLE retries). Mid-run one replica is killed with
SIGKILL and restarted on its port, then PostgreSQL is stopped and started on
the same data directory.

Afterwards every verdict the client received must be one the database state
allows, and the database must hold exactly what the verdicts imply: each
account's used step (no VALID lost, no code accepted twice) and its failure
counters (every failure counted once). The only slack is for attempts that
failed with UNAVAILABLE and were retried: such an attempt may have been stored
before its answer was lost (a retried win comes back REPLAYED, a retried failure
may count twice, and an account whose failures may have reached the backoff
threshold may then be answered LOCKED); the test counts them and prints the totals.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, text

from tests.cluster.local_cluster import load
from tests.totp_oracle import totp, wrong_code
from totpd.service.policy import Policy

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

PERIOD = 30
WORKERS = 4
# A retried failure may count twice: an account that reaches this many failures
# in a row may be answered LOCKED (backoff) until its next attempt is compared.
BACKOFF_AFTER = Policy().backoff_after_failures
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    # Retries are the client's own (TotpdClient), so that each one is seen and counted here.
}


@pytest.fixture
def cluster() -> Iterator[Any]:
    local_cluster = load()
    settings = {"TOTPD_LOG_LEVEL": "WARNING", "TOTPD_DRAIN_SECONDS": "0"}
    # Not tmp_path: its parents are private to root, and PostgreSQL runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="totpd-chaos-"))
    try:
        running = local_cluster.Cluster(base, replicas=3, settings=settings)
    except local_cluster.ClusterError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the cluster test needs PostgreSQL: {error}")
        pytest.skip(f"no PostgreSQL: {error}")
    try:
        running.start()
        yield running
    finally:
        running.stop()
        shutil.rmtree(base, ignore_errors=True)


# -- counting attempts ----------------------------------------------------------

_current = threading.local()


class AttemptCounter(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Records every attempt's UNAVAILABLE against the logical call in progress."""

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        outcome = continuation(details, request)
        if outcome.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            _current.call.overloaded += 1
        if outcome.code() == grpc.StatusCode.UNAVAILABLE:
            told = any(
                key == "grpc-status-details-bin" and b"STORE_UNAVAILABLE" in value
                for key, value in outcome.trailing_metadata() or ()
            )
            _current.call.unavailable.append("server" if told else "transport")
        return outcome


@dataclass
class Call:
    unavailable: list[str] = field(default_factory=list)
    overloaded: int = 0  # refused before any work: never stored


# -- the model of one account -----------------------------------------------------


def step_now() -> int:
    return int(time.time()) // PERIOD


@dataclass
class Account:
    """What the verdicts so far say the database holds for one account."""

    account_id: str
    secret: str = ""
    factor_id: str = ""
    last_used: int = -1
    failures: tuple[int, int] = (0, 0)  # the least and most the database may count
    retried_calls: int = 0
    # False when the confirmation's code had expired by the time a retried
    # ConfirmEnrollment was decided (INVALID): the factor stays pending.
    confirmed: bool = True

    def possible(self, code_step: int | None, steps: range, unavailable: int) -> set[str]:
        """Verdicts the server may give for a code of `code_step` (None: a wrong code)."""
        verdicts = set()
        for current in steps:
            if code_step is None or abs(code_step - current) > 1:
                verdicts.add("INVALID")
            elif code_step > self.last_used:
                verdicts.add("VALID")
            else:
                verdicts.add("REPLAYED")
        if unavailable and "VALID" in verdicts:
            verdicts.add("REPLAYED")  # the lost attempt won the step
        if self.failures[1] + unavailable >= BACKOFF_AFTER:
            verdicts.add("LOCKED")
        return verdicts

    def record(
        self, code_step: int | None, verdict: str, possible: set[str], unavailable: int
    ) -> None:
        low, high = self.failures
        if verdict == "LOCKED":  # backoff: this attempt compared and counted nothing
            self.failures = (max(low, BACKOFF_AFTER), high + unavailable)
        elif verdict == "VALID":
            assert code_step is not None and code_step > self.last_used
            self.last_used, self.failures = code_step, (0, 0)
        elif verdict == "REPLAYED" and "VALID" in possible:
            assert code_step is not None
            self.last_used, self.failures = code_step, (1, 1)  # won unseen, then one failure
        else:
            self.failures = (low + 1, high + 1 + unavailable)
        self.retried_calls += bool(unavailable)


@dataclass
class Totals:
    verdicts: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    unavailable: Counter[str] = field(default_factory=Counter)
    overloaded: int = 0
    errors: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Worker:
    """One thread's accounts, each driven through the same sequence of calls."""

    def __init__(self, client: Any, name: str, totals: Totals) -> None:
        self.client, self.name, self.totals = client, name, totals
        self.accounts: list[Account] = []

    def call(self, function: Callable[[], Any]) -> tuple[Any, Call, range]:
        _current.call = call = Call()
        return self.counted(function, call)

    def counted(self, function: Callable[[], Any], call: Call) -> tuple[Any, Call, range]:
        before = step_now()
        try:
            return function(), call, range(before, step_now() + 1)
        finally:
            with self.totals.lock:
                self.totals.calls += 1
                self.totals.unavailable.update(call.unavailable)
                self.totals.overloaded += call.overloaded

    def verify(self, account: Account, code_step: int | None) -> None:
        right = totp(account.secret, (code_step or step_now()) * PERIOD)
        code = right if code_step is not None else wrong_code(right)
        outcome, call, steps = self.call(lambda: self.client.verify(account.account_id, code))
        self.judge(account, code_step, outcome.result.name, call, steps)

    def judge(
        self, account: Account, code_step: int | None, verdict: str, call: Call, steps: range
    ) -> None:
        unavailable = len(call.unavailable)
        possible = account.possible(code_step, steps, unavailable)
        with self.totals.lock:
            self.totals.verdicts[verdict] += 1
            if verdict not in possible:
                self.totals.wrong.append(
                    f"{account.account_id}: {verdict} not in {sorted(possible)}"
                )
        account.record(code_step, verdict, possible, unavailable)

    def confirm(self, account: Account, step: int, code: str) -> None:
        # A confirmation's request record is completed in its verdict's transaction:
        # a retry after any fault gets the first verdict, never FACTOR_NOT_ACTIVE.
        _current.call = call = Call()
        confirmed, call, steps = self.counted(
            lambda: self.client.confirm(account.account_id, account.factor_id, code), call
        )
        self.judge(account, step, confirmed.outcome.result.name, call, steps)
        account.confirmed = account.last_used >= 0

    def one_account(self, index: int) -> None:
        account = Account(f"chaos-{self.name}-{index}")
        self.accounts.append(account)
        enrollment, _, _ = self.call(lambda: self.client.enroll(account.account_id, "chaos"))
        account.secret, account.factor_id = enrollment.secret_base32, enrollment.factor.factor_id
        first = step_now()
        code = totp(account.secret, first * PERIOD)
        self.confirm(account, first, code)
        if not account.confirmed:
            return  # retried past its code's window: a correct INVALID, nothing to verify
        self.verify(account, first)  # reused: REPLAYED
        self.verify(account, None)  # wrong: INVALID
        following = max(step_now(), first) + 1
        self.verify(account, following)  # the next step: VALID
        self.verify(account, following)  # reused: REPLAYED
        self.verify(account, None)  # wrong: INVALID

    def run(self, stop: threading.Event) -> None:
        index = 0
        while not stop.is_set():
            try:
                self.one_account(index)
            except Exception as error:  # every failure is reported
                with self.totals.lock:
                    self.totals.errors.append(
                        f"{self.name}-{index}: {type(error).__name__}: {error}"
                    )
            index += 1


def client_for(target: str) -> Any:
    from totpd_client import TotpdClient

    options = [("grpc.service_config", json.dumps(SERVICE_CONFIG))]
    channel = grpc.intercept_channel(
        grpc.insecure_channel(target, options=options), AttemptCounter()
    )
    # A deadline past the request-id claim lease (60 s): a mutation whose first
    # attempt met the database restart keeps its claim until then, and its
    # retries are refused OVERLOADED until it lapses (service/idempotency.py).
    return TotpdClient(target, channel=channel, timeout=90, max_attempts=1000, max_backoff=1.0)


def database_rows(url: str) -> dict[str, tuple[str, int, int, str, int]]:
    """Every chaos factor by id: account, used step, failures, state, the account's failures."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT f.id, f.account_id, f.last_used_step, f.failed_attempts, f.state,"
                    " a.consecutive_failures FROM factors f"
                    " LEFT JOIN accounts a ON a.account_id = f.account_id"
                    " WHERE f.account_id LIKE 'chaos-%'"
                )
            ).all()
    finally:
        engine.dispose()
    return {row[0]: (row[1], row[2], row[3], row[4], row[5] or 0) for row in rows}


def test_verdicts_match_the_database_through_a_replica_kill_and_a_database_restart(
    cluster: Any,
) -> None:
    totals = Totals()
    client = client_for(cluster.target)
    workers = [Worker(client, f"w{i}", totals) for i in range(WORKERS)]
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    timeline = []
    started = time.monotonic()

    def at(seconds: float, what: str, action: Callable[[], None]) -> None:
        time.sleep(max(0.0, started + seconds - time.monotonic()))
        action()
        timeline.append(
            f"{time.monotonic() - started:5.1f} s  {what} (calls so far {totals.calls})"
        )

    victim = cluster.replicas[1]
    at(5, f"kill -9 replica {victim.index}", victim.kill)
    at(9, f"restart replica {victim.index}", victim.start)
    at(15, "stop PostgreSQL (fast)", cluster.postgres.stop)
    at(16, "start PostgreSQL", cluster.postgres.start)
    at(26, "stop the load", stop.set)
    for thread in threads:
        thread.join(timeout=120)
    client.close()

    rows = database_rows(cluster.postgres.url)
    mismatches = []
    accounts = [a for w in workers for a in w.accounts if a.factor_id]
    unconfirmed = [a for a in accounts if not a.confirmed]
    for account in unconfirmed:
        _, last_used, _, state, _ = rows[account.factor_id]
        if (last_used, state) != (-1, "pending"):
            mismatches.append(f"{account.account_id}: {state} at step {last_used}, unconfirmed")
    for account in (a for a in accounts if a.confirmed):
        _, last_used, failed, state, consecutive = rows[account.factor_id]
        low, high = account.failures
        if last_used != account.last_used or state != "active":
            mismatches.append(
                f"{account.account_id}: used step {last_used} ({state}),"
                f" client saw {account.last_used}"
            )
        for name, stored in (("factor", failed), ("account", consecutive)):
            if not low <= stored <= high:
                mismatches.append(
                    f"{account.account_id}: {name} failures {stored} not in [{low}, {high}]"
                )
    owners = Counter(account_id for account_id, *_ in rows.values())
    extra_enrollments = sum(count - 1 for count in owners.values())
    retried = sum(a.retried_calls for a in accounts)
    print("\nchaos timeline:\n  " + "\n  ".join(timeline))
    verdicts = totals.verdicts
    print(
        f"chaos counts: calls {totals.calls}, accounts {len(accounts)},"
        f" VALID {verdicts['VALID']}, INVALID {verdicts['INVALID']},"
        f" REPLAYED {verdicts['REPLAYED']}, LOCKED {verdicts['LOCKED']};"
        f" UNAVAILABLE attempts retried {sum(totals.unavailable.values())}"
        f" (server said STORE_UNAVAILABLE {totals.unavailable['server']},"
        f" transport {totals.unavailable['transport']}),"
        f" OVERLOADED attempts retried {totals.overloaded},"
        f" verify/confirm calls retried {retried},"
        f" confirmations decided after their code's window {len(unconfirmed)},"
        f" second enrollments from a retried Enroll {extra_enrollments};"
        f" errors {len(totals.errors)},"
        f" wrong verdicts {len(totals.wrong)}, database mismatches {len(mismatches)}"
    )
    print("errors:", totals.errors[:5], "mismatches:", mismatches[:5])
    assert not totals.errors, totals.errors[:5]
    assert not totals.wrong, totals.wrong[:5]
    assert not mismatches, mismatches[:5]
    assert totals.verdicts["VALID"] >= 2 * len(accounts) - retried
    assert sum(totals.unavailable.values()) > 0, "the faults were not felt: nothing was tested"
    assert set(owners) == {a.account_id for w in workers for a in w.accounts}
    assert extra_enrollments <= retried
