"""The store's seams for benchmarks, on both databases: statement timing
(`dbapi.timed_statements`) and a round's bulk SQL run raw (`round_sql.bulk_round_sql`)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.enrollments import enroll_active
from totpd.calls import DEFAULT_TENANT
from totpd.domain import FactorState
from totpd.service.mfa import MfaService
from totpd.store import AttemptRequest, CandidateFactor, FactorStore, FactorWrite, dbapi
from totpd.store.round_sql import bulk_round_sql
from totpd.store.round_writes import bulk_read_values, bulk_write_values

NOBODY = [AttemptRequest("nobody", 6, None)]


def test_each_statement_run_inside_a_timed_block_is_reported_and_none_outside(
    engine: Engine,
) -> None:
    attempts = FactorStore(engine).attempts
    reported: list[float] = []
    with dbapi.timed_statements(reported.append):
        assert attempts.read(NOBODY, state=FactorState.ACTIVE, now=0) == []
        assert attempts.read(NOBODY, state=FactorState.PENDING, now=0) == []
    assert len(reported) == 2
    assert all(seconds >= 0.0 for seconds in reported)
    assert attempts.read(NOBODY, state=FactorState.ACTIVE, now=0) == []
    assert len(reported) == 2


def test_a_second_timed_block_at_once_is_refused_and_the_first_keeps_reporting(
    engine: Engine,
) -> None:
    attempts = FactorStore(engine).attempts
    first: list[float] = []
    second: list[float] = []
    with dbapi.timed_statements(first.append):
        with pytest.raises(RuntimeError, match="already being timed"):
            with dbapi.timed_statements(second.append):
                pass
        assert attempts.read(NOBODY, state=FactorState.ACTIVE, now=0) == []
    assert (len(first), second) == (1, [])
    with dbapi.timed_statements(second.append):  # free again once the first block ended
        assert attempts.read(NOBODY, state=FactorState.ACTIVE, now=0) == []
    assert len(second) == 1


def test_the_bulk_round_sql_run_raw_reads_the_factors_and_wins_a_step_once(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    factor_id = enroll_active(service, clock, account_id, "phone").factor.factor_id
    read, write = bulk_round_sql(engine.dialect, FactorState.ACTIVE)
    now = int(clock.now)
    postgres = engine.dialect.name == "postgresql"
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        read_values = bulk_read_values(
            engine.dialect.name,
            (account_id, "nobody"),
            now=now,
            tenant=DEFAULT_TENANT,
            state=FactorState.ACTIVE,
        )
        cursor.execute(read.sql, read.parameters(read_values))
        (factor,) = map(CandidateFactor._make, cursor.fetchall())
        assert (factor.factor_id, factor.account_id) == (factor_id, account_id)
        step = factor.last_used_step + 1
        won = FactorWrite(factor_id, 0, 0, step, 1, 0, 0, factor.last_used_step)
        for written in (1, 0):  # the second write finds the step taken
            values = bulk_write_values(
                engine.dialect.name, [won], now=now, tenant=DEFAULT_TENANT, state=FactorState.ACTIVE
            )
            cursor.execute(write.sql, write.parameters(values))
            returned = [tuple(row) for row in cursor.fetchall()]
            assert cursor.rowcount == written
            # PostgreSQL's write also returns the ids; SQLite's returns none (one driver step).
            assert returned == ([(factor_id,)] * written if postgres else [])
            connection.commit()
        cursor.close()
    finally:
        connection.close()
    requests = [AttemptRequest(account_id, 6, None)]
    (stored,) = FactorStore(engine).attempts.read(requests, state=FactorState.ACTIVE, now=now)
    assert stored.last_used_step == step
