"""Tenants end to end over a real server on both databases: the rpc layer's tenant
(the caller's one tenant, or `x-totpd-tenant`) reaches the store; the same account id
in two tenants is two accounts; each tenant's own policy applies."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from sqlalchemy import Engine, text

from tests.rpc.callers_files import TestCaller, write_callers
from tests.rpc.conftest import Secrets, make_settings, mfa_service
from tests.rpc.harness import LiveServer, call_fails, running_server
from tests.totp_oracle import wire_code_at, wrong_code
from totpd.config import Settings
from totpd.service.policy import Policy, tenant_policy
from totpd.store import FactorStore
from totpd.v1 import factor_pb2
from totpd.v1 import totp_service_pb2 as pb

SHOPPER = TestCaller("shopper", tenants=("shop",))
BANKER = TestCaller("banker", tenants=("bank",))
BOTH = TestCaller("both", tenants=("shop", "bank"))


@pytest.fixture
def served(engine: Engine, tmp_path: Path) -> Iterator[LiveServer]:
    settings: Settings = make_settings(tmp_path, Policy(backoff_base_seconds=0))
    settings = replace(
        settings,
        callers_file=write_callers(tmp_path / "callers.toml", [SHOPPER, BANKER, BOTH]),
        tenant_policies={"shop": tenant_policy(settings.policy, {"max_batch_items": 2})},
    )
    with running_server(settings, mfa_service(engine, settings, time.time)) as live:
        yield live


def enroll(live: LiveServer, secrets: Secrets, meta: list[tuple[str, str]]) -> str:
    enrolled = live.stub.Enroll(pb.EnrollRequest(account_id="alice"), metadata=meta, timeout=10)
    secrets.add(enrolled.secret_base32, enrolled.otpauth_uri)
    f = enrolled.factor
    code = wire_code_at(
        enrolled.secret_base32, f.algorithm, f.digits, f.period_seconds, time.time()
    )
    request = pb.ConfirmEnrollmentRequest(account_id="alice", factor_id=f.factor_id, code=code)
    confirmed = live.stub.ConfirmEnrollment(request, metadata=meta, timeout=10)
    assert confirmed.outcome.result == factor_pb2.VERIFY_RESULT_VALID
    return str(f.factor_id)


def test_each_caller_acts_in_its_tenant_and_never_sees_the_other(
    served: LiveServer, engine: Engine, secrets_seen: Secrets
) -> None:
    live = served
    shop = enroll(live, secrets_seen, SHOPPER.metadata())
    bank = enroll(live, secrets_seen, BANKER.metadata())
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, tenant, account_id FROM factors")).all()
    assert sorted(map(tuple, rows)) == sorted([(shop, "shop", "alice"), (bank, "bank", "alice")])

    listed = live.stub.ListFactors(
        pb.ListFactorsRequest(account_id="alice"), metadata=BOTH.metadata("bank"), timeout=10
    )
    assert [f.factor_id for f in listed.factors] == [bank]
    missing = call_fails(
        live.stub.GetFactor,
        pb.GetFactorRequest(account_id="alice", factor_id=shop),
        metadata=BANKER.metadata(),
    )
    assert (missing.code, missing.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "ERROR_REASON_FACTOR_NOT_FOUND",
    )

    # A failure in shop counts in shop only.
    outcome = live.stub.Verify(
        pb.VerifyRequest(account_id="alice", code=wrong_code("123456")),
        metadata=SHOPPER.metadata(),
        timeout=10,
    ).outcome
    assert outcome.result == factor_pb2.VERIFY_RESULT_INVALID
    store = FactorStore(engine)
    shop_state = store.account_state("alice", tenant="shop")
    assert shop_state is not None and shop_state.consecutive_failures == 1
    assert store.account_state("alice", tenant="bank") is None


def test_each_tenant_has_its_own_batch_limit(served: LiveServer, secrets_seen: Secrets) -> None:
    live = served
    items = [pb.BatchVerifyItem(account_id="alice", code="123456")] * 3
    too_large = call_fails(
        live.stub.BatchVerify, pb.BatchVerifyRequest(items=items), metadata=BOTH.metadata("shop")
    )
    assert (too_large.code, too_large.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_BATCH_TOO_LARGE",
    )
    answered = live.stub.BatchVerify(
        pb.BatchVerifyRequest(items=items), metadata=BOTH.metadata("bank"), timeout=10
    )
    assert len(answered.results) == 3
