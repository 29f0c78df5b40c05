"""The recovery-code store on both databases: no account keeps codes without an
ACTIVE factor, whatever the order of concurrent disables and generates."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial

import pytest
from sqlalchemy import Engine, text

from tests.conftest import Clock
from tests.enrollments import enroll_many
from totpd.service.errors import TotpdError
from totpd.service.mfa import MfaService

ROUNDS = 8


def orphaned_codes(engine: Engine) -> int:
    """Recovery codes of accounts with no ACTIVE factor."""
    query = text(
        "SELECT count(*) FROM recovery_codes r WHERE NOT EXISTS (SELECT 1 FROM factors f"
        " WHERE f.tenant = r.tenant AND f.account_id = r.account_id AND f.state = 'active')"
    )
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def at_once(*calls: Callable[[], object]) -> list[BaseException]:
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        barrier.wait(timeout=30)
        try:
            call()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.slow
def test_disabling_the_last_two_active_factors_at_once_drops_the_codes(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    for round_ in range(ROUNDS):
        account = f"{account_id}-{round_}"
        first, second = enroll_many(service, clock, account, 2)
        service.generate_recovery_codes(account)
        errors = at_once(
            partial(service.disable, account, first.factor.factor_id, None, True),
            partial(service.disable, account, second.factor.factor_id, None, True),
        )
        assert errors == []
        assert service.recovery_codes_status(account).issued == 0
    assert orphaned_codes(engine) == 0


@pytest.mark.slow
def test_a_generate_racing_the_disable_of_the_last_factor_leaves_no_codes_behind(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    for round_ in range(ROUNDS):
        account = f"{account_id}-{round_}"
        (only,) = enroll_many(service, clock, account, 1)
        errors = at_once(
            partial(service.generate_recovery_codes, account),
            partial(service.disable, account, only.factor.factor_id, None, True),
        )
        # Either order is fine: the generate came first (and its set was dropped),
        # or it found no active factor.
        assert all(isinstance(error, TotpdError) for error in errors), errors
        assert service.recovery_codes_status(account).issued == 0
    assert orphaned_codes(engine) == 0
