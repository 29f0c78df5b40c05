"""Driver errors on the store's hot statements reach callers as the store's own errors.

The verification statements run on the DB-API cursor (`run_compiled`), so the
status mapping (UNAVAILABLE for a database that is down) depends on this wrapping.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, Integer, func, literal, select, text
from sqlalchemy.exc import SQLAlchemyError

from tests.store.conftest import invalidations
from totpd.store import AttemptRequest, FactorStore, open_engine
from totpd.store.dbapi import CompiledStatement, RawConnection, run_compiled
from totpd.store.errors import RoundAbortedError, StoreError, StoreUnavailableError


def _statement(engine: Engine, sql: str, names: tuple[str, ...]) -> CompiledStatement:
    positional = engine.dialect.paramstyle == "qmark"
    return CompiledStatement(sql, {"p_default": 7}, names if positional else None)


def test_parameters_are_bound_by_name_or_position(engine: Engine) -> None:
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%(p_value)s"
    other = "?" if engine.dialect.paramstyle == "qmark" else "%(p_default)s"
    statement = _statement(engine, f"SELECT {mark}, {other}", ("p_value", "p_default"))
    connection = engine.raw_connection()
    try:
        assert list(run_compiled(engine.dialect, connection, statement, {"p_value": 5})) == [(5, 7)]
    finally:
        connection.close()


def test_a_driver_error_becomes_a_store_error_without_parameters(engine: Engine) -> None:
    statement = _statement(engine, "SELECT * FROM no_such_table", ())
    connection = engine.raw_connection()
    try:
        with pytest.raises(StoreError) as caught:
            run_compiled(engine.dialect, connection, statement, {"p_secret_looking": "123456"})
        assert connection.is_valid  # not invalidated: the connection itself is fine
    finally:
        connection.close()
    assert isinstance(caught.value.__cause__, engine.dialect.loaded_dbapi.Error)
    assert not isinstance(caught.value, SQLAlchemyError)
    assert "123456" not in str(caught.value) and "123456" not in caught.value.cause
    assert "no_such_table" not in str(caught.value)


@pytest.mark.postgres
def test_a_dropped_postgres_connection_fails_once_then_is_replaced(
    postgres_url: str, _postgres_engine: Engine
) -> None:
    """No pre-ping: a connection the server killed fails its next statement as a
    store outage (UNAVAILABLE to callers), leaves the pool, and the next try works."""
    engine = open_engine(f"{postgres_url}?application_name=totpd-dropped-connection-test")
    attempts = FactorStore(engine).attempts
    nobody = [AttemptRequest("nobody", 6, None)]
    try:
        assert attempts.read(nobody, state="active", now=0) == []
        with _postgres_engine.begin() as admin:
            killed = admin.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'totpd-dropped-connection-test'"
                )
            ).scalar_one()
        assert killed == 1
        with invalidations(engine) as invalidated, pytest.raises(StoreUnavailableError):
            attempts.read(nobody, state="active", now=0)
        assert len(invalidated) == 1
        assert attempts.read(nobody, state="active", now=0) == []
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_deadlock_is_a_round_aborted(_postgres_engine: Engine) -> None:
    """PostgreSQL breaks a deadlock by aborting one transaction: the store says
    RoundAbortedError (a store-unavailable error: UNAVAILABLE if nobody retries),
    and the connection stays usable."""
    engine = _postgres_engine
    statement = CompiledStatement(
        "DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$", {}, None
    )
    connection = engine.raw_connection()
    try:
        with pytest.raises(RoundAbortedError) as caught:
            run_compiled(engine.dialect, connection, statement, {})
        assert connection.is_valid  # not invalidated: the connection itself is fine
    finally:
        connection.close()
    assert isinstance(caught.value, StoreUnavailableError)
    assert not isinstance(caught.value, SQLAlchemyError)


# Statements are compiled once and cached by identity (dbapi.compiled): they
# live as long as the module, as the store's own do.
_ONE = select(literal(1, Integer))
_FIVE = select(literal(5, Integer))
_DEADLOCK = select(func.totpd_test_deadlock())


@pytest.mark.postgres
def test_a_deadlock_in_a_pipeline_is_a_round_aborted(_postgres_engine: Engine) -> None:
    """A round's write is one pipeline on PostgreSQL: the deadlock a statement
    meets is raised as the block ends, as the store's RoundAbortedError, and the
    connection serves the next statement once the round is rolled back."""
    engine = _postgres_engine
    with engine.begin() as admin:
        admin.execute(
            text(
                "CREATE OR REPLACE FUNCTION totpd_test_deadlock() RETURNS int LANGUAGE plpgsql"
                " AS $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$"
            )
        )
    try:
        with RawConnection(engine, autocommit=False) as connection:
            connection.begin()
            with pytest.raises(RoundAbortedError) as caught, connection.pipeline() as pipeline:
                pipeline.send(_ONE, {})
                pipeline.send(_DEADLOCK, {})
            connection.rollback()
            assert list(connection.run(_FIVE, {})) == [(5,)]
    finally:
        with engine.begin() as admin:
            admin.execute(text("DROP FUNCTION totpd_test_deadlock()"))
    assert isinstance(caught.value, StoreUnavailableError)
    assert not isinstance(caught.value, SQLAlchemyError)
