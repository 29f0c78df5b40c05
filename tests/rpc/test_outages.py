"""Outages look like outages: every RPC answers UNAVAILABLE/STORE_UNAVAILABLE while
the database is down, never INTERNAL and never a verdict, and works again once it
is back. Real gRPC server, real PostgreSQL (stopped and restarted) and real SQLite.

Each test runs every RPC while the database is unusable and compares the whole
matrix at once, so a failure shows every RPC's answer. The paths covered include
connection acquisition: with the pool disposed, each call must open a new
connection (the verification rounds take theirs from `Engine.raw_connection`,
where the driver's own errors surface).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine, event

from tests.conftest import Clock
from tests.pg_faults import FaultyPostgres, faulty_postgres
from tests.rpc.conftest import Secrets, make_settings, mfa_service, sqlite_file_gone
from tests.rpc.harness import LiveServer, LogCapture, failure, running_server
from tests.totp_oracle import wire_code_at
from totpd.config import Settings
from totpd.service import faults
from totpd.service.policy import Policy
from totpd.store import migrate, open_engine
from totpd.v1 import factor_pb2, lifecycle_pb2
from totpd.v1 import totp_service_pb2 as pb

UNAVAILABLE = "UNAVAILABLE/ERROR_REASON_STORE_UNAVAILABLE"
RPCS = (
    "Enroll",
    "ConfirmEnrollment",
    "Verify",
    "BatchVerify",
    "GenerateRecoveryCodes",
    "VerifyRecoveryCode",
    "Unlock",
    "Resync",
    "Disable",
    "GetFactor",
    "ListFactors",
)


@pytest.fixture(scope="module")
def pg() -> Iterator[FaultyPostgres]:
    with faulty_postgres() as server:
        yield server


@dataclass
class Account:
    """An account with one active factor and one pending enrollment."""

    account_id: str
    active_id: str
    active_secret: str
    pending_id: str
    pending_secret: str


class Matrix:
    """Calls every RPC on a live server and names each answer ("OK" or CODE/REASON)."""

    def __init__(self, live: LiveServer, clock: Clock, secrets: Secrets) -> None:
        self.live = live
        self.clock = clock
        self.secrets = secrets

    def code(self, secret: str) -> str:
        code = wire_code_at(secret, factor_pb2.ALGORITHM_SHA1, 6, 30, self.clock.now)
        self.secrets.add(code)
        return code

    def enroll(self, account_id: str) -> pb.EnrollResponse:
        response = self.live.stub.Enroll(pb.EnrollRequest(account_id=account_id), timeout=10)
        self.secrets.add(response.secret_base32, response.otpauth_uri)
        return response

    def new_account(self) -> Account:
        account_id = f"outage-{uuid.uuid4().hex[:12]}"
        active = self.enroll(account_id)
        confirmed = self.live.stub.ConfirmEnrollment(
            pb.ConfirmEnrollmentRequest(
                account_id=account_id,
                factor_id=active.factor.factor_id,
                code=self.code(active.secret_base32),
            ),
            timeout=10,
        )
        assert confirmed.outcome.result == factor_pb2.VERIFY_RESULT_VALID
        pending = self.enroll(account_id)
        return Account(
            account_id,
            active.factor.factor_id,
            active.secret_base32,
            pending.factor.factor_id,
            pending.secret_base32,
        )

    def calls(self, account: Account) -> dict[str, Callable[[], Any]]:
        stub, a = self.live.stub, account
        code = self.code(a.active_secret)
        earlier = wire_code_at(
            a.active_secret, factor_pb2.ALGORITHM_SHA1, 6, 30, self.clock.now - 30
        )
        self.secrets.add(earlier)
        return {
            "Enroll": lambda: stub.Enroll(
                pb.EnrollRequest(account_id=a.account_id + "-new"), timeout=10
            ),
            "ConfirmEnrollment": lambda: stub.ConfirmEnrollment(
                pb.ConfirmEnrollmentRequest(
                    account_id=a.account_id,
                    factor_id=a.pending_id,
                    code=self.code(a.pending_secret),
                ),
                timeout=10,
            ),
            "Verify": lambda: stub.Verify(
                pb.VerifyRequest(account_id=a.account_id, code=code), timeout=10
            ),
            "BatchVerify": lambda: stub.BatchVerify(
                pb.BatchVerifyRequest(
                    items=[pb.BatchVerifyItem(account_id=a.account_id, code=code)]
                ),
                timeout=10,
            ),
            # Before Disable, which ends the active factor these need.
            "GenerateRecoveryCodes": lambda: self.recovery_codes(a),
            "VerifyRecoveryCode": lambda: stub.VerifyRecoveryCode(
                lifecycle_pb2.VerifyRecoveryCodeRequest(
                    account_id=a.account_id, code="zzzz-zzzz-zzzz"
                ),
                timeout=10,
            ),
            "Unlock": lambda: stub.Unlock(
                lifecycle_pb2.UnlockRequest(account_id=a.account_id), timeout=10
            ),
            "Resync": lambda: stub.Resync(
                lifecycle_pb2.ResyncRequest(
                    account_id=a.account_id, factor_id=a.active_id, code1=earlier, code2=code
                ),
                timeout=10,
            ),
            "Disable": lambda: stub.Disable(
                pb.DisableRequest(account_id=a.account_id, factor_id=a.active_id, code=code),
                timeout=10,
            ),
            "GetFactor": lambda: stub.GetFactor(
                pb.GetFactorRequest(account_id=a.account_id, factor_id=a.active_id), timeout=10
            ),
            "ListFactors": lambda: stub.ListFactors(
                pb.ListFactorsRequest(account_id=a.account_id), timeout=10
            ),
        }

    def recovery_codes(self, account: Account) -> lifecycle_pb2.GenerateRecoveryCodesResponse:
        request = lifecycle_pb2.GenerateRecoveryCodesRequest(account_id=account.account_id)
        response = self.live.stub.GenerateRecoveryCodes(request, timeout=10)
        self.secrets.add(*response.codes)
        return response

    def answers(self, account: Account, *, times: int = 1) -> dict[str, str]:
        """Each RPC's answer; with `times` > 1 every call must answer alike."""
        found: dict[str, str] = {}
        for _ in range(times):
            for name, call in self.calls(account).items():
                answer = _answer(call)
                found[name] = answer if found.get(name, answer) == answer else "DIFFERENT ANSWERS"
        return found

    def works(self, account: Account) -> dict[str, str]:
        """Every RPC on a healthy store; the verdicts prove the calls were decided."""
        self.clock.advance(30)  # a step no call used yet
        answers = self.answers(account)
        confirmed = self.live.stub.GetFactor(
            pb.GetFactorRequest(account_id=account.account_id, factor_id=account.pending_id),
            timeout=10,
        )
        # ConfirmEnrollment was decided and stored: the enrollment is active.
        assert confirmed.factor.state == factor_pb2.FACTOR_STATE_ACTIVE
        return answers


def _answer(call: Callable[[], Any]) -> str:
    try:
        call()
    except grpc.RpcError as error:
        failed = failure(error)
        return f"{failed.code.name}/{failed.reason}"
    return "OK"


def assert_outage_logged_briefly(capture: LogCapture, failed_calls: int) -> None:
    """No stack trace, no unhandled error; fewer fault lines than failed calls."""
    records = [json.loads(line) for line in capture.lines]
    assert not [r for r in records if "exc" in r or "stack" in r]
    assert not [r for r in records if r["msg"] == "unhandled error"]
    faults = [r for r in records if r["msg"] == "store unavailable"]
    assert faults, "an outage is logged"
    assert all(r["level"] == "WARNING" for r in faults)
    # Rate-limited per (reason, cause): a test runs well within one interval.
    causes = [r["cause"] for r in faults]
    assert len(causes) == len(set(causes)) < failed_calls


ALL_UNAVAILABLE = dict.fromkeys(RPCS, UNAVAILABLE)
ALL_OK = dict.fromkeys(RPCS, "OK")


@pytest.fixture(autouse=True)
def one_line_per_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault lines rate-limited for the whole test, however slow the machine."""
    monkeypatch.setattr(faults, "FAULT_LOG", faults.LogLimiter(interval=3600))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, Policy(backoff_base_seconds=0))


@contextmanager
def serving(engine: Engine, settings: Settings, clock: Clock, secrets: Secrets) -> Iterator[Matrix]:
    """A real server on `engine`, and the matrix that calls every RPC on it."""
    with running_server(settings, mfa_service(engine, settings, clock)) as live:
        yield Matrix(live, clock, secrets)


Serve = Callable[[Engine], AbstractContextManager[Matrix]]


@pytest.fixture
def serve(settings: Settings, clock: Clock, secrets_seen: Secrets) -> Serve:
    """`serving` with this test's settings, clock and secrets."""
    return lambda engine: serving(engine, settings, clock, secrets_seen)


def down_then_back(
    matrix: Matrix, account: Account, outage: AbstractContextManager[object], times: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Every RPC `times` over during the outage, then once after it ended."""
    with outage:
        down = matrix.answers(account, times=times)
    return down, matrix.works(account)


def assert_down_then_back(
    down: dict[str, str], back: dict[str, str], capture: LogCapture, failed_calls: int
) -> None:
    assert down == ALL_UNAVAILABLE
    assert back == ALL_OK
    assert_outage_logged_briefly(capture, failed_calls=failed_calls)


@contextmanager
def halted(
    pg: FaultyPostgres, stop: str = "fast", then: Callable[[], object] = lambda: None
) -> Iterator[None]:
    """PostgreSQL stopped (`then` runs once it is), restarted whatever happens."""
    pg.halt(stop)
    try:
        then()
        yield
    finally:
        pg.restart()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("pool", "stop"),
    [
        ("dropped connections", "fast"),
        ("dropped connections", "immediate"),
        ("disposed pool", "fast"),
    ],
)
def test_every_rpc_is_unavailable_while_postgresql_is_stopped_and_works_after_restart(
    pg: FaultyPostgres,
    serve: Serve,
    no_secrets_in_logs: LogCapture,
    pool: str,
    stop: str,
) -> None:
    engine = open_engine(pg.url)
    migrate(engine)
    # A disposed pool: every call must open a new connection.
    then = engine.dispose if pool == "disposed pool" else lambda: None
    try:
        with serve(engine) as matrix:
            account = matrix.new_account()
            matrix.answers(matrix.new_account())  # every RPC once: connections in the pool
            down, back = down_then_back(matrix, account, halted(pg, stop, then), times=3)
    finally:
        engine.dispose()

    assert_down_then_back(down, back, no_secrets_in_logs, failed_calls=3 * len(RPCS))


@pytest.mark.postgres
def test_a_fresh_engine_on_a_stopped_postgresql_answers_unavailable(
    pg: FaultyPostgres,
    serve: Serve,
    no_secrets_in_logs: LogCapture,
) -> None:
    """A server (re)started during the outage has no connection at all yet."""
    engine = open_engine(pg.url)
    migrate(engine)
    with serve(engine) as matrix:
        account = matrix.new_account()
    engine.dispose()

    fresh = open_engine(pg.url)
    try:
        with serve(fresh) as matrix:
            down, back = down_then_back(matrix, account, halted(pg), times=2)
    finally:
        fresh.dispose()

    assert_down_then_back(down, back, no_secrets_in_logs, failed_calls=2 * len(RPCS))


def test_every_rpc_is_unavailable_while_the_sqlite_file_cannot_be_opened(
    tmp_path: Path,
    serve: Serve,
    no_secrets_in_logs: LogCapture,
) -> None:
    """The database file replaced by a directory: SQLite cannot open it (as root
    too), as when the volume is gone. The pool is disposed, so every call opens
    a new connection; the file is put back and everything works again."""
    database = tmp_path / "outage.sqlite3"
    engine = open_engine(f"sqlite:///{database}")
    migrate(engine)
    try:
        with serve(engine) as matrix:
            account = matrix.new_account()
            engine.dispose()
            down, back = down_then_back(matrix, account, sqlite_file_gone(database), times=2)
    finally:
        engine.dispose()

    assert_down_then_back(down, back, no_secrets_in_logs, failed_calls=2 * len(RPCS))


def _read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def test_sqlite_on_a_read_only_filesystem_refuses_every_write_as_unavailable(
    tmp_path: Path,
    serve: Serve,
    no_secrets_in_logs: LogCapture,
) -> None:
    """A server started on a read-only filesystem. Tests may run as root, where
    file modes stop nothing, so two stand-ins that hold as root: the writers'
    lock file cannot be opened (a directory is in its place; a read-only
    filesystem refuses to create it, the OSError the issue reported), and SQLite
    refuses every write (query_only answers SQLITE_READONLY, as a read-only
    file does). Reads still work, as they do on a read-only filesystem."""
    database = tmp_path / "readonly.sqlite3"
    engine = open_engine(f"sqlite:///{database}")
    migrate(engine)
    with serve(engine) as matrix:
        account = matrix.new_account()
    engine.dispose()
    writers = database.with_name(database.name + ".writers")
    writers.unlink()
    writers.mkdir()

    restarted = open_engine(f"sqlite:///{database}")
    event.listen(restarted, "connect", _read_only)
    try:
        with serve(restarted) as matrix:
            down = matrix.answers(account, times=2)
    finally:
        restarted.dispose()

    assert down == {**ALL_UNAVAILABLE, "GetFactor": "OK"}
    records = [json.loads(line) for line in no_secrets_in_logs.lines]
    causes = {r["cause"] for r in records if r["msg"] == "store unavailable"}
    assert any(cause.startswith("IsADirectoryError") for cause in causes)
    assert any("readonly database" in cause for cause in causes)
    assert_outage_logged_briefly(no_secrets_in_logs, failed_calls=2 * (len(RPCS) - 1))
