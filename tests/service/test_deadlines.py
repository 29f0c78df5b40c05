"""A call whose deadline passes while the database is hung stores nothing.

On both databases, hung for real (tests/hung_database.py): PostgreSQL stopped
with SIGSTOP, SQLite's write lock or totpd's writer queue held by another
holder. Every call ends by its deadline with DeadlineExceededError, and once
the database is back, nothing of it was stored: its code still verifies, its
failure was not counted, even when its write reached PostgreSQL before the
deadline and ran after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, NamedTuple

import pytest
from sqlalchemy import Engine, create_engine, event

from tests.conftest import Clock
from tests.enrollments import enroll_active_in_time as enrolled
from tests.enrollments import failed_once
from tests.hung_database import (
    HangingDatabase,
    database,
    hang_before_write,
    hung_engine,
    paused_postgres,
)
from tests.service.conftest import results_of
from tests.totp_oracle import code_at, wrong_code
from totpd import deadlines
from totpd.crypto import Keyring
from totpd.service import round_plan
from totpd.service.errors import ErrorReason
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.types import Enrollment, EnrollParams, VerifyItem, VerifyResult
from totpd.store import Attempts, FactorStore, dbapi
from totpd.store.deadline import DeadlineExceededError, DeadlinePool

__all__ = ["database", "hung_engine", "paused_postgres"]  # fixtures

# How long a call may wait here; the database stays hung longer than that.
DEADLINE = 0.5


@pytest.fixture
def service(hung_engine: Engine, keyring: Keyring, policy: Policy, clock: Clock) -> MfaService:
    return MfaService(FactorStore(hung_engine), keyring, policy, clock)


def failures(service: MfaService, factor_id: str) -> int:
    return service.deps.store.get_many([factor_id])[factor_id].failed_attempts


class HungBatch(NamedTuple):
    first: Enrollment
    code: str
    items: list[VerifyItem]
    results: list[Any]


def batch_with_its_second_round_hung(
    database: HangingDatabase,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
    *extra: VerifyItem,
) -> HungBatch:
    """A batch of a wrong and then the right code of `account_id` (two rounds), with
    the right code of an account beside it in the first round, and `extra` items;
    the second round's write hangs past the deadline.

    The second round's success resets the account's failure: on PostgreSQL one
    statement (the account's row, the factor's and the event, store/unary_sql.py)
    that ran late, its deadline passed; the database is settled once it has run.
    """
    first = enrolled(service, clock, account_id)
    other = enrolled(service, clock, account_id + "-b")
    code, other_code = code_at(first, clock.now), code_at(other, clock.now)
    items = [
        VerifyItem(account_id, wrong_code(code)),
        VerifyItem(account_id + "-b", other_code),
        VerifyItem(account_id, code),
        *extra,
    ]
    with ExitStack() as stack:
        hang_before_write(monkeypatch, database, stack, write=2)
        with deadlines.within(DEADLINE):
            results = service.verify_batch(items)
    monkeypatch.undo()
    database.settle("WITH locked_account AS")
    return HungBatch(first, code, items, results)


def test_a_correct_code_whose_call_outlives_its_deadline_is_not_consumed(
    database: HangingDatabase, service: MfaService, clock: Clock, account_id: str
) -> None:
    enrollment = enrolled(service, clock, account_id)
    code = code_at(enrollment, clock.now)
    with database.hung(), deadlines.within(DEADLINE), pytest.raises(DeadlineExceededError):
        service.verify(VerifyItem(account_id, code))
    assert service.verify(VerifyItem(account_id, code)).result is VerifyResult.VALID


@pytest.mark.parametrize("correct", [True, False], ids=["correct code", "wrong code"])
def test_a_write_that_reaches_the_database_after_the_deadline_changes_nothing(
    database: HangingDatabase,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
    correct: bool,
) -> None:
    """The round's read was answered; its write was sent to a database that had
    just stopped, and ran when it resumed, after the deadline."""
    enrollment = enrolled(service, clock, account_id)
    right = code_at(enrollment, clock.now)
    with ExitStack() as stack:
        hang_before_write(monkeypatch, database, stack)
        with deadlines.within(DEADLINE), pytest.raises(DeadlineExceededError):
            service.verify(VerifyItem(account_id, right if correct else wrong_code(right)))
    monkeypatch.undo()
    # A won step on an account with no failures is one autocommit statement
    # (the UPDATE and, on PostgreSQL, its audit event's INSERT after it), whose
    # condition carries the deadline; a failure also writes the account's row,
    # in a transaction whose BEGIN ran late and which is never committed.
    database.settle("WITH locked_factor AS" if correct else "BEGIN")
    assert failures(service, enrollment.factor.factor_id) == 0
    assert service.verify(VerifyItem(account_id, right)).result is VerifyResult.VALID


def test_a_batch_keeps_the_verdicts_of_rounds_committed_before_its_deadline(
    database: HangingDatabase,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, _, items, results = batch_with_its_second_round_hung(
        database,
        service,
        clock,
        account_id,
        monkeypatch,
        VerifyItem(account_id, "12 456"),  # malformed: its own error, as always
    )

    assert results_of(results) == [
        VerifyResult.INVALID,
        VerifyResult.VALID,
        ErrorReason.DEADLINE_EXCEEDED,
        ErrorReason.MALFORMED_CODE,
    ]
    # The first round was stored once; the third item's code is still unused.
    assert failures(service, first.factor.factor_id) == 1
    assert results_of(service.verify_batch(items[1:3])) == [
        VerifyResult.REPLAYED,
        VerifyResult.VALID,
    ]


def test_a_batch_whose_deadline_passes_before_any_verdict_fails_whole(
    database: HangingDatabase,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One round of two accounts: its write is one transaction, begun but never committed."""
    first = enrolled(service, clock, account_id)
    other = enrolled(service, clock, account_id + "-b")
    items = [
        VerifyItem(account_id, code_at(first, clock.now)),
        VerifyItem(account_id + "-b", wrong_code(code_at(other, clock.now))),
    ]
    with ExitStack() as stack:
        hang_before_write(monkeypatch, database, stack)
        with deadlines.within(DEADLINE), pytest.raises(DeadlineExceededError):
            service.verify_batch(items)
    monkeypatch.undo()
    database.settle("BEGIN")
    assert failures(service, other.factor.factor_id) == 0
    assert results_of(service.verify_batch(items[:1])) == [VerifyResult.VALID]


def test_an_enrollment_that_outlives_its_deadline_adds_no_factor(
    database: HangingDatabase, service: MfaService, clock: Clock, account_id: str
) -> None:
    enrolled(service, clock, account_id)
    with database.hung(), deadlines.within(DEADLINE), pytest.raises(DeadlineExceededError):
        service.enroll(EnrollParams(account_id, "laptop"))
    factors = service.list_factors(account_id, include_inactive=True)
    assert [factor.label for factor in factors] == ["phone"]


# SQLite's readers never wait for its writers (WAL): only a stopped server hangs a read.
@pytest.mark.postgres
@pytest.mark.parametrize(
    "database", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
@pytest.mark.parametrize("operation", ["get", "list", "disable"])
def test_reads_and_disable_on_a_stopped_postgresql_end_by_the_deadline(
    database: HangingDatabase,
    service: MfaService,
    clock: Clock,
    account_id: str,
    operation: str,
) -> None:
    factor_id = enrolled(service, clock, account_id).factor.factor_id
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: service.get_factor(account_id, factor_id),
        "list": lambda: service.list_factors(account_id, include_inactive=False),
        "disable": lambda: service.disable(account_id, factor_id, None, True),
    }
    with database.hung(), deadlines.within(DEADLINE), pytest.raises(DeadlineExceededError):
        calls[operation]()
    assert [f.state.value for f in service.list_factors(account_id, False)] == ["active"]


def test_a_call_whose_deadline_already_passed_touches_nothing(
    database: HangingDatabase,
    hung_engine: Engine,
    service: MfaService,
    clock: Clock,
    account_id: str,
) -> None:
    enrollment = enrolled(service, clock, account_id)
    code = code_at(enrollment, clock.now)
    checkouts: list[object] = []
    event.listen(hung_engine, "checkout", lambda *_: checkouts.append(None))
    calls: list[Callable[[], object]] = [
        lambda: service.verify(VerifyItem(account_id, wrong_code(code))),
        lambda: service.verify_batch([VerifyItem(account_id, code)] * 3),
        lambda: service.enroll(EnrollParams(account_id, "laptop")),
        lambda: service.list_factors(account_id, include_inactive=True),
        lambda: service.disable(account_id, None, code, False),
    ]
    for call in calls:
        with deadlines.within(0), pytest.raises(DeadlineExceededError):
            call()
    assert checkouts == []
    assert failures(service, enrollment.factor.factor_id) == 0
    assert service.verify(VerifyItem(account_id, code)).result is VerifyResult.VALID


def test_many_calls_hung_at_once_all_end_and_the_store_recovers(
    database: HangingDatabase, service: MfaService, clock: Clock, account_id: str
) -> None:
    accounts = [f"{account_id}-{number}" for number in range(6)]
    enrollments = [enrolled(service, clock, account) for account in accounts]
    codes = [code_at(enrollment, clock.now) for enrollment in enrollments]
    ended: list[BaseException | None] = [None] * len(accounts)

    def verify(index: int) -> None:
        with deadlines.within(DEADLINE):
            try:
                service.verify(VerifyItem(accounts[index], codes[index]))
            except BaseException as error:
                ended[index] = error

    with database.hung():
        threads = [threading.Thread(target=verify, args=(i,)) for i in range(len(accounts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
    assert all(isinstance(error, DeadlineExceededError) for error in ended), ended
    for account, code in zip(accounts, codes, strict=True):
        assert service.verify(VerifyItem(account, code)).result is VerifyResult.VALID


def test_a_pool_checkout_waits_only_until_the_deadline(tmp_path: Any) -> None:
    engine = create_engine(
        f"sqlite:///{tmp_path / 'pool.sqlite3'}",
        poolclass=DeadlinePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=60,
    )
    try:
        held = engine.raw_connection()
        with deadlines.within(0.2), pytest.raises(DeadlineExceededError):
            engine.raw_connection()
        held.close()
        engine.raw_connection().close()  # the pool itself is unharmed
    finally:
        engine.dispose()


def test_a_batch_split_into_parts_on_a_hung_database_ends_by_its_deadline(
    database: HangingDatabase,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every lane waits on the database (service/lanes.py); all end by the deadline,
    and nothing is stored."""
    monkeypatch.setattr(round_plan, "PART_CHECKS", 2)
    monkeypatch.setattr(Attempts, "parallel_rounds", True)  # SQLite's too
    enrollments = [enrolled(service, clock, f"{account_id}-{number}") for number in range(6)]
    items = [VerifyItem(e.factor.account_id, code_at(e, clock.now)) for e in enrollments]
    with database.hung(), deadlines.within(DEADLINE), pytest.raises(DeadlineExceededError):
        service.verify_batch(items)
    monkeypatch.undo()
    assert results_of(service.verify_batch(items)) == [VerifyResult.VALID] * len(items)


@pytest.mark.parametrize(
    "database", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_account_rows_pipelined_to_a_stopped_postgresql_end_by_the_deadline(
    database: HangingDatabase,
    service: MfaService,
    clock: Clock,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A round's few account rows are updated one key at a time, and the round's
    write is sent whole before any answer is read (round_writes.EachRow in
    psycopg's pipeline, rounds._run_pipelined). Sent to a server that had just
    stopped, the call ends by its deadline, and nothing of the round is stored:
    no failure counted on an account, none twice later."""
    ids, items = failed_once(service, clock, account_id, 3, enroll=enrolled)
    real_pipeline, real_send_each = dbapi.RawConnection.pipeline, dbapi.Pipeline.send_each
    pipelined: list[int] = []

    @contextmanager
    def pipeline_while_hung(connection: dbapi.RawConnection) -> Iterator[dbapi.Pipeline]:
        with database.hung(), real_pipeline(connection) as pipeline:
            yield pipeline

    def send_each(pipeline: dbapi.Pipeline, statement: Any, rows: Any) -> Any:
        pipelined.append(len(rows))
        return real_send_each(pipeline, statement, rows)

    monkeypatch.setattr(dbapi.RawConnection, "pipeline", pipeline_while_hung)
    monkeypatch.setattr(dbapi.Pipeline, "send_each", send_each)
    with deadlines.within(DEADLINE), pytest.raises(DeadlineExceededError):
        service.verify_batch(items)
    monkeypatch.undo()
    assert pipelined == [len(ids)]
    # The server, resumed, ran what it had received and found the connection cut.
    database.settle("BEGIN")
    assert consecutive_failures(service, ids) == [1] * len(ids)
    assert results_of(service.verify_batch(items)) == [VerifyResult.INVALID] * len(ids)
    assert consecutive_failures(service, ids) == [2] * len(ids)


def consecutive_failures(service: MfaService, accounts: list[str]) -> list[int | None]:
    states = [service.deps.store.account_state(account) for account in accounts]
    return [state.consecutive_failures if state else None for state in states]
