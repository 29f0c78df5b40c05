"""Tenants through the service: two tenants with the same account ids and the same
secrets are different accounts; under racing calls no verdict, failure count, lock,
used step or request id crosses; each tenant's own policy applies."""

from __future__ import annotations

import base64
import threading
import uuid
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from tests.conftest import Clock
from tests.totp_oracle import totp, wrong_code
from totpd import calls
from totpd.calls import DEFAULT_TENANT, CallScope
from totpd.crypto import Keyring, tenant_slot
from totpd.domain import Algorithm
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy, tenant_policy
from totpd.service.types import EnrollParams, VerifyItem, VerifyOutcome, VerifyResult
from totpd.store import FactorStore, NewFactor

SECRET = b"\x5a" * 20
SHOP, BANK = "shop", "bank"
ACCOUNTS = ("alice", "bob")
# Room for every failure the race counts: no backoff, timed lock or spent budget
# turns a counted failure into an uncounted LOCKED verdict.
ROOMY = Policy(lock_after_failures=1000, backoff_after_failures=1000, failure_budget=1000)
THREADS_PER_TENANT = {SHOP: 4, BANK: 2}
WRONG_PER_THREAD = 3


def scope(tenant: str) -> CallScope:
    return CallScope(caller="t", tenant=tenant)


def code(clock: Clock, offset: int = 0) -> str:
    return totp(base64.b32encode(SECRET).decode(), clock.now + offset)


def enroll_with_secret(
    service: MfaService, clock: Clock, tenant: str, account_id: str, label: str = "phone"
) -> str:
    """An active factor holding SECRET in `tenant`: stored pending through the store
    (the one seam: the service draws its own secrets), confirmed through the service."""
    factor_id = str(uuid.uuid4())
    keyring: Keyring = service.deps.keyring
    sealed = keyring.seal(factor_id, account_id, SECRET, tenant_id=tenant_slot(tenant))
    now = int(clock.now)
    new = NewFactor(
        factor_id=factor_id,
        account_id=account_id,
        label=label,
        issuer="totpd",
        algorithm=Algorithm.SHA1,
        digits=6,
        period_seconds=30,
        secret_key_id=sealed.key_id,
        secret_nonce=sealed.nonce,
        secret_ciphertext=sealed.ciphertext,
        created_at=now,
        expires_at=now + 600,
    )
    service.deps.store.add_to_account(account_id, now=now, make_factor=lambda _: new, tenant=tenant)
    with calls.scoped(scope(tenant)):
        outcome, _ = service.confirm(account_id, factor_id, code(clock))
    assert outcome.result is VerifyResult.VALID
    return factor_id


def both_tenants(service: MfaService, clock: Clock) -> dict[tuple[str, str], str]:
    """alice and bob in shop and bank, all four with SECRET; the confirmations'
    step is then behind the clock."""
    ids = {
        (tenant, account): enroll_with_secret(service, clock, tenant, account)
        for tenant in (SHOP, BANK)
        for account in ACCOUNTS
    }
    clock.advance(30)
    return ids


def verify_in(service: MfaService, tenant: str, account_id: str, the_code: str) -> VerifyOutcome:
    with calls.scoped(scope(tenant)):
        return service.verify(VerifyItem(account_id, the_code))


def test_same_ids_and_secrets_in_two_tenants_are_different_accounts(
    service: MfaService, clock: Clock
) -> None:
    ids = both_tenants(service, clock)
    store: FactorStore = service.deps.store
    # A used step stays in its tenant: bank's alice wins the step shop's alice used.
    now_code = code(clock)
    first = verify_in(service, SHOP, "alice", now_code)
    assert (first.result, first.factor_id) == (VerifyResult.VALID, ids[(SHOP, "alice")])
    second = verify_in(service, BANK, "alice", now_code)
    assert (second.result, second.factor_id) == (VerifyResult.VALID, ids[(BANK, "alice")])
    assert verify_in(service, SHOP, "alice", now_code).result is VerifyResult.REPLAYED
    # Failures are counted on the tenant's account only.
    assert verify_in(service, SHOP, "bob", wrong_code(now_code)).result is VerifyResult.INVALID
    shop_bob = store.account_state("bob", tenant=SHOP)
    assert shop_bob is not None and shop_bob.consecutive_failures == 1
    assert store.account_state("bob", tenant=BANK) is None
    # Nothing of another tenant can be read, named or disabled.
    with calls.scoped(scope(BANK)):
        assert [f.factor_id for f in service.list_factors("alice", True)] == [ids[(BANK, "alice")]]
        with pytest.raises(TotpdError) as missing:
            service.get_factor("alice", ids[(SHOP, "alice")])
        assert missing.value.reason is ErrorReason.FACTOR_NOT_FOUND
        with pytest.raises(TotpdError) as not_yours:
            service.verify(VerifyItem("alice", now_code, ids[(SHOP, "alice")]))
        assert not_yours.value.reason is ErrorReason.FACTOR_NOT_FOUND
        with pytest.raises(TotpdError) as not_disabled:
            service.disable("alice", ids[(SHOP, "alice")], None, force=True)
        assert not_disabled.value.reason is ErrorReason.FACTOR_NOT_FOUND
        _, disabled = service.disable("bob", None, None, force=True)
    assert [f.factor_id for f in disabled] == [ids[(BANK, "bob")]]
    with calls.scoped(scope(SHOP)):
        assert [f.state.value for f in service.list_factors("bob", False)] == ["active"]
    # Outside a call the service acts in the default tenant, which holds nothing here.
    assert service.list_factors("alice", True) == []


def test_a_locked_account_stays_locked_in_its_tenant_only(
    engine: Engine, keyring: Keyring, clock: Clock
) -> None:
    shop_policy = tenant_policy(Policy(), {"max_consecutive_failures": 2})
    service = MfaService(FactorStore(engine), keyring, Policy(), clock, {SHOP: shop_policy})
    both_tenants(service, clock)
    wrong = wrong_code(code(clock))
    verify_in(service, SHOP, "alice", wrong)
    assert verify_in(service, SHOP, "alice", wrong).unlock_required
    clock.advance(30)
    locked = verify_in(service, SHOP, "alice", code(clock))
    assert (locked.result, locked.unlock_required) == (VerifyResult.LOCKED, True)
    assert verify_in(service, BANK, "alice", code(clock)).result is VerifyResult.VALID
    # The operator's unlock is per tenant too.
    service.deps.store.unlock_account("alice", tenant=BANK)
    assert verify_in(service, SHOP, "alice", code(clock)).result is VerifyResult.LOCKED
    service.deps.store.unlock_account("alice", tenant=SHOP)
    assert verify_in(service, SHOP, "alice", code(clock)).result is VerifyResult.VALID


def test_a_request_id_belongs_to_its_tenant(service: MfaService) -> None:
    request_id = f"req-{uuid.uuid4().hex}"
    params = EnrollParams("carol", "phone")
    enrolled = {}
    for tenant in (SHOP, BANK, SHOP):
        with calls.scoped(scope(tenant)):
            enrolled.setdefault(tenant, []).append(service.enroll(params, request_id))
    shop_first, shop_retry = enrolled[SHOP]
    (bank,) = enrolled[BANK]
    assert shop_retry.factor.factor_id == shop_first.factor.factor_id  # the tenant's replay
    assert bank.factor.factor_id != shop_first.factor.factor_id  # not shop's result
    assert bank.secret_base32 != shop_first.secret_base32
    # The same id for another request is a reuse in its own tenant only.
    with calls.scoped(scope(BANK)), pytest.raises(TotpdError) as reused:
        service.enroll(EnrollParams("carol", "tablet"), request_id)
    assert reused.value.reason is ErrorReason.REQUEST_ID_REUSED
    with calls.scoped(scope("other")):
        assert service.enroll(EnrollParams("carol", "tablet"), request_id).factor.label == "tablet"


def _race(work: dict[str, Callable[[], list[VerifyResult]]]) -> dict[str, Counter[VerifyResult]]:
    """Run each tenant's work on its threads at once; the verdicts per tenant."""
    tenants = [t for t, threads in THREADS_PER_TENANT.items() for _ in range(threads)]
    barrier = threading.Barrier(len(tenants))
    results: dict[str, Counter[VerifyResult]] = {tenant: Counter() for tenant in work}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(tenant: str) -> None:
        try:
            barrier.wait(timeout=30)
            with calls.scoped(scope(tenant)):
                verdicts = work[tenant]()
            with lock:
                results[tenant].update(verdicts)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(tenant,)) for tenant in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    return results


@pytest.mark.parametrize("policy", [ROOMY])
def test_racing_calls_of_two_tenants_never_cross(service: MfaService, clock: Clock) -> None:
    ids = both_tenants(service, clock)
    store: FactorStore = service.deps.store
    now_code = code(clock)
    wrong = wrong_code(now_code)

    def failures() -> list[VerifyResult]:
        verdicts = [service.verify(VerifyItem("alice", wrong)).result for _ in range(2)]
        batch = service.verify_batch([VerifyItem("alice", wrong), VerifyItem("bob", wrong)])
        return verdicts + [v.result for v in batch if isinstance(v, VerifyOutcome)]

    counted = _race({SHOP: failures, BANK: failures})
    for tenant, threads in THREADS_PER_TENANT.items():
        assert counted[tenant] == Counter(
            {VerifyResult.INVALID: threads * WRONG_PER_THREAD + threads}
        )
        alice = store.account_state("alice", tenant=tenant)
        bob = store.account_state("bob", tenant=tenant)
        assert alice is not None and alice.consecutive_failures == threads * WRONG_PER_THREAD
        assert bob is not None and bob.consecutive_failures == threads
        (factor,) = store.list_for_accounts(["alice"], "active", tenant=tenant)  # type: ignore[arg-type]
        assert factor.factor_id == ids[(tenant, "alice")]
        assert factor.failed_attempts == threads * WRONG_PER_THREAD

    def the_code() -> list[VerifyResult]:
        return [service.verify(VerifyItem("alice", now_code)).result]

    won = _race({SHOP: the_code, BANK: the_code})
    for tenant, threads in THREADS_PER_TENANT.items():
        # One win per tenant: a step used in one tenant is still free in the other.
        assert won[tenant][VerifyResult.VALID] == 1
        assert won[tenant][VerifyResult.REPLAYED] == threads - 1
        alice = store.account_state("alice", tenant=tenant)
        assert alice is not None and alice.consecutive_failures == threads - 1


def test_each_tenant_gets_its_own_policy(engine: Engine, keyring: Keyring, clock: Clock) -> None:
    shop_policy = tenant_policy(
        Policy(),
        {"window": 0, "lock_after_failures": 5, "max_factors_per_account": 1, "max_batch_items": 2},
    )
    service = MfaService(FactorStore(engine), keyring, Policy(), clock, {SHOP: shop_policy})
    assert service.policies.for_tenant(SHOP) is shop_policy
    assert service.policies.for_tenant(BANK) is service.policy
    enroll_with_secret(service, clock, SHOP, "alice")
    enroll_with_secret(service, clock, DEFAULT_TENANT, "alice")
    clock.advance(60)
    # window: the previous step's code is accepted by the global window 1 only.
    previous = code(clock, -30)
    assert verify_in(service, SHOP, "alice", previous).result is VerifyResult.INVALID
    assert verify_in(service, DEFAULT_TENANT, "alice", previous).result is VerifyResult.VALID
    # lock_after_failures: what is left after one more failure.
    wrong = wrong_code(code(clock))
    assert verify_in(service, SHOP, "alice", wrong).attempts_left == 5 - 2
    assert verify_in(service, DEFAULT_TENANT, "alice", wrong).attempts_left == 10 - 1
    # max_factors_per_account.
    with calls.scoped(scope(SHOP)), pytest.raises(TotpdError) as full:
        service.enroll(EnrollParams("alice", "tablet"))
    assert full.value.reason is ErrorReason.FACTOR_LIMIT_REACHED
    assert service.enroll(EnrollParams("alice", "tablet")).factor.label == "tablet"
    # max_batch_items.
    items = [VerifyItem("alice", wrong)] * 3
    with calls.scoped(scope(SHOP)):
        with pytest.raises(TotpdError) as too_large:
            service.verify_batch(items)
        assert too_large.value.reason is ErrorReason.BATCH_TOO_LARGE
        with pytest.raises(TotpdError):
            service.check_batch_size(3)
    service.check_batch_size(3)
    assert len(service.verify_batch(items)) == 3


def test_a_malformed_tenant_is_refused_before_anything_is_read(service: MfaService) -> None:
    with calls.scoped(scope("a b")), pytest.raises(TotpdError) as bad:
        service.list_factors("alice", True)
    assert (bad.value.reason, bad.value.field) == (ErrorReason.INVALID_ARGUMENT, "x-totpd-tenant")
