"""Coalesced unary Verify (coalesce_verify on) through a real gRPC server: racing
calls for the same codes give one VALID per code, and every call its own event."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.rpc.conftest import Secrets
from tests.rpc.harness import LiveServer, activate, running_server
from tests.rpc.test_audit_events import list_all
from totpd.config import Settings
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb

ACCOUNTS = 6
CALLS_PER_CODE = 3


@pytest.fixture
def coalescing(rpc_settings: Settings) -> Iterator[LiveServer]:
    from totpd.app import build_service

    settings = dataclasses.replace(rpc_settings, coalesce_verify=True, max_workers=8)
    service = build_service(settings)
    assert service.coalescer is not None
    with running_server(settings, service) as server:
        yield server


def test_racing_calls_one_valid_per_code_one_event_per_call(
    coalescing: LiveServer, secrets_seen: Secrets
) -> None:
    live = coalescing
    accounts = [f"racer-{n}" for n in range(ACCOUNTS)]
    # The next step: activating used the current one.
    codes = {account: activate(live, secrets_seen, account).code(1) for account in accounts}
    secrets_seen.add(*codes.values())  # and none reaches a log line
    barrier = threading.Barrier(ACCOUNTS * CALLS_PER_CODE)
    answers: list[tuple[str, int]] = []
    lock = threading.Lock()

    def call(account: str) -> None:
        barrier.wait(timeout=30)
        request = pb.VerifyRequest(account_id=account, code=codes[account])
        response = live.stub.Verify(request, timeout=20)
        with lock:
            answers.append((account, response.outcome.result))

    threads = [
        threading.Thread(target=call, args=(account,))
        for account in accounts
        for _ in range(CALLS_PER_CODE)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == ACCOUNTS * CALLS_PER_CODE
    for account in accounts:
        mine = Counter(result for who, result in answers if who == account)
        assert mine[factor_pb2.VERIFY_RESULT_VALID] == 1
        assert sum(mine.values()) == CALLS_PER_CODE
    events = [e for e in list_all(live, method="Verify") if e.account_id.startswith("racer-")]
    assert len(events) == ACCOUNTS * CALLS_PER_CODE
    assert all(e.caller and e.peer for e in events)


@pytest.mark.parametrize(("setting", "coalesces"), [(None, True), (False, False)])
def test_the_service_coalesces_by_default(
    rpc_settings: Settings, setting: bool | None, coalesces: bool
) -> None:
    """ "auto" (the default) turns coalescing on; `coalesce_verify = false` keeps
    one round per call."""
    from totpd.app import build_service

    settings = dataclasses.replace(rpc_settings, coalesce_verify=setting)
    assert settings.resolved_database_url().startswith("sqlite")
    assert (build_service(settings).coalescer is not None) is coalesces
