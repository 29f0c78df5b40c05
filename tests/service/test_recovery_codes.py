"""Recovery codes through the service, on both databases: a set's format and storage
(only keyed hashes), replacement, single use, hand-typed forms, malformed input
(nothing written or counted), the account's attempt limits and lock, tenants, the
status, disable and key rotation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, text

from tests.conftest import Clock
from tests.enrollments import enroll_active, enroll_many, store_of, wrong_for_all
from tests.totp_oracle import code_at
from totpd import calls
from totpd.calls import CallScope
from totpd.crypto import Keyring, SecretUnavailableError
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.mfa import MfaService
from totpd.service.policy import Policy
from totpd.service.recovery_codes import RecoveryStatus
from totpd.service.types import EnrollParams, VerifyItem, VerifyResult
from totpd.store import FactorStore

GROUPED = re.compile(r"[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}")
TABLES = ("accounts", "recovery_codes", "audit_calls", "audit_events", "factors")
# Failures lock nothing but the account limits under test.
ROOMY = {"failure_budget": 1000, "lock_after_failures": 1000, "backoff_base_seconds": 0}


def rows(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return sorted(tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}")))


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    return {table: rows(engine, table) for table in TABLES}


def result(service: MfaService, account_id: str, code: str) -> VerifyResult:
    return service.verify_recovery_code(account_id, code).outcome.result


@pytest.fixture
def codes(service: MfaService, clock: Clock, account_id: str) -> list[str]:
    enroll_active(service, clock, account_id)
    return service.generate_recovery_codes(account_id).codes


def test_a_set_is_ten_distinct_grouped_codes_stored_only_as_keyed_hashes(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    enroll_active(service, clock, account_id)
    generated = service.generate_recovery_codes(account_id)

    assert len(generated.codes) == 10 == len(set(generated.codes))
    assert all(GROUPED.fullmatch(code) for code in generated.codes)
    assert generated.status == RecoveryStatus(10, 10, int(clock.now))
    stored = rows(engine, "recovery_codes")
    assert len(stored) == 10
    # The whole table, every column, as text and bytes: no code in any form.
    dumped = repr(stored)
    for code in generated.codes:
        plain = code.replace("-", "")
        for form in (code, plain, plain.upper()):
            assert form not in dumped
            assert all(
                form.encode() not in value
                for row in stored
                for value in row
                if isinstance(value, bytes)
            )
    assert {len(bytes(row[2])) for row in stored} == {32}  # HMAC-SHA256
    assert {row[3] for row in stored} == {service.deps.keyring.primary_key_id}
    assert {row[5] for row in stored} == {None}


def test_a_new_set_replaces_the_old_one(
    service: MfaService, engine: Engine, clock: Clock, account_id: str, codes: list[str]
) -> None:
    clock.advance(60)
    newer = service.generate_recovery_codes(account_id).codes
    assert not set(newer) & set(codes)
    assert len(rows(engine, "recovery_codes")) == 10
    assert result(service, account_id, codes[0]) is VerifyResult.INVALID
    assert result(service, account_id, newer[0]) is VerifyResult.VALID
    assert service.recovery_codes_status(account_id) == RecoveryStatus(9, 10, int(clock.now))


@pytest.mark.parametrize("policy", [Policy(recovery_codes_count=3)])
def test_the_policy_sets_the_count(service: MfaService, codes: list[str]) -> None:
    assert len(codes) == 3


def test_no_active_factor_no_codes(
    service: MfaService, engine: Engine, clock: Clock, account_id: str
) -> None:
    service.enroll(EnrollParams(account_id, "pending"))
    disabled = enroll_active(service, clock, account_id + "-b")
    service.disable(account_id + "-b", disabled.factor.factor_id, None, True)
    before = snapshot(engine)
    for account in (account_id, account_id + "-b", account_id + "-never"):
        with pytest.raises(TotpdError) as caught:
            service.generate_recovery_codes(account)
        assert caught.value.reason is ErrorReason.ACCOUNT_NOT_FOUND
        assert caught.value.field == "account_id"
    assert snapshot(engine) == before


def verdicts_counted(result: str) -> float:
    return REGISTRY.get_sample_value("totpd_verdicts_total", {"result": result}) or 0.0


def test_a_code_is_valid_once_then_replayed(
    service: MfaService, account_id: str, codes: list[str]
) -> None:
    valid, replayed = verdicts_counted("valid"), verdicts_counted("replayed")
    first = service.verify_recovery_code(account_id, codes[0])
    assert first.outcome.result is VerifyResult.VALID
    assert first.outcome.factor_id is None
    assert first.status.remaining == 9
    again = service.verify_recovery_code(account_id, codes[0])
    assert again.outcome.result is VerifyResult.REPLAYED
    assert again.status.remaining == 9
    assert (verdicts_counted("valid"), verdicts_counted("replayed")) == (valid + 1, replayed + 1)
    assert store_of(service).account_state(account_id).consecutive_failures == 1  # type: ignore[union-attr]


def _with_look_alikes(code: str) -> str:
    return code.replace("0", "O").replace("1", "l", 1).replace("1", "I")


def test_hand_typed_forms_are_accepted(
    service: MfaService, account_id: str, codes: list[str]
) -> None:
    confusable = next(code for code in codes if "0" in code or "1" in code)
    others = [code for code in codes if code != confusable]
    typed = [
        others[0].upper(),
        others[1].replace("-", ""),
        " " + others[2].replace("-", " ") + "\t\n",
        "-".join(others[3].replace("-", "")),  # a separator between every character
        _with_look_alikes(confusable),
    ]
    assert [result(service, account_id, form) for form in typed] == [VerifyResult.VALID] * 5
    assert service.recovery_codes_status(account_id).remaining == 5


MALFORMED = [
    "",
    "abcd-efgh-jkm",  # 11
    "abcd-efgh-jkmnp",  # 13
    "abcd-efgh-jkmu",  # u is not in the alphabet
    "abcd_efgh_jkmn",
    "abcd.efgh.jkmn",
    "abcd-efgh-jkm\x00",
    "ａｂｃｄ-ｅｆｇｈ-ｊｋｍｎ",  # full-width
    "abcd-efgh-jkm\u212a",  # the Kelvin sign, which str.lower makes a "k"
    "abcd\u3000efgh\u3000jkmn",  # an ideographic space
    "a" * 10_000,
    "١٢٣٤٥٦٧٨٩٠١٢",
]


@pytest.mark.parametrize("typed", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_codes_are_refused_with_nothing_written_or_counted(
    service: MfaService, engine: Engine, account_id: str, codes: list[str], typed: str
) -> None:
    before = snapshot(engine)
    with pytest.raises(TotpdError) as caught:
        service.verify_recovery_code(account_id, typed)
    error = caught.value
    assert error.reason is ErrorReason.MALFORMED_CODE
    assert error.field == "code"
    assert typed not in error.message or not typed
    assert snapshot(engine) == before


def test_an_unknown_account_is_not_found_and_nothing_is_written(
    service: MfaService, engine: Engine, account_id: str
) -> None:
    before = snapshot(engine)
    with pytest.raises(TotpdError) as caught:
        service.verify_recovery_code(account_id, "abcd-efgh-jkmn")
    assert caught.value.reason is ErrorReason.ACCOUNT_NOT_FOUND
    assert snapshot(engine) == before


def test_a_known_account_without_a_set_counts_the_failure(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enroll_active(service, clock, account_id)
    outcome = service.verify_recovery_code(account_id, "abcd-efgh-jkmn").outcome
    assert outcome.result is VerifyResult.INVALID
    assert store_of(service).account_state(account_id).consecutive_failures == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("policy", [Policy(max_consecutive_failures=5, **ROOMY)])
def test_wrong_codes_lock_the_account_and_a_right_code_opens_it(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    phone = enroll_active(service, clock, account_id)
    codes = service.generate_recovery_codes(account_id).codes
    wrong = "zzzz-zzzz-zzzz" if "zzzz-zzzz-zzzz" not in codes else "yyyy-yyyy-yyyy"
    # A wrong TOTP code and wrong recovery codes make one run of failures.
    totp = service.verify(VerifyItem(account_id, wrong_for_all([phone], clock.now)))
    assert totp.result is VerifyResult.INVALID
    lefts = [service.verify_recovery_code(account_id, wrong).outcome for _ in range(4)]
    assert [o.result for o in lefts] == [VerifyResult.INVALID] * 4
    assert [o.attempts_left for o in lefts[:3]] == [3, 2, 1]
    assert lefts[3].unlock_required

    # Locked: TOTP compares nothing; a wrong recovery code still counts and keeps
    # the lock (and its time), a right one is the user's way back in (design §5.6).
    assert service.verify(VerifyItem(account_id, code_at(phone, clock.now))).result is (
        VerifyResult.LOCKED
    )
    locked_at = store_of(service).account_state(account_id).locked_at  # type: ignore[union-attr]
    clock.advance(60)
    still = service.verify_recovery_code(account_id, wrong)
    assert still.outcome.result is VerifyResult.INVALID and still.outcome.unlock_required
    state = store_of(service).account_state(account_id)
    assert state is not None and state.locked_at == locked_at
    assert state.consecutive_failures == 6
    opened = service.verify_recovery_code(account_id, codes[0])
    assert opened.outcome.result is VerifyResult.VALID
    assert opened.status.remaining == 9
    state = store_of(service).account_state(account_id)
    assert state is not None and state.locked_at is None and state.consecutive_failures == 0
    clock.advance(phone.factor.period_seconds)
    assert service.verify(VerifyItem(account_id, code_at(phone, clock.now))).result is (
        VerifyResult.VALID
    )


def test_a_spent_budget_locks_with_a_retry_delay(
    service: MfaService, clock: Clock, account_id: str, codes: list[str]
) -> None:
    budget = service.policy.failure_budget
    wrong = next(c for c in ("zzzz-zzzz-zzzz", "yyyy-yyyy-yyyy") if c not in codes)
    outcomes = [service.verify_recovery_code(account_id, wrong).outcome for _ in range(budget)]
    assert {o.result for o in outcomes} == {VerifyResult.INVALID}
    assert outcomes[-1].attempts_left == 0 and outcomes[-1].retry_after_seconds > 0
    locked = service.verify_recovery_code(account_id, codes[0]).outcome
    assert locked.result is VerifyResult.LOCKED
    assert locked.retry_after_seconds > 0 and not locked.unlock_required
    clock.advance(locked.retry_after_seconds)
    assert result(service, account_id, codes[0]) is VerifyResult.VALID


def test_a_valid_code_ends_the_run_of_failures_but_not_the_budget(
    service: MfaService, account_id: str, codes: list[str]
) -> None:
    for _ in range(3):
        assert result(service, account_id, codes[0][::-1]) in (
            VerifyResult.INVALID,
            VerifyResult.REPLAYED,
        )
    spent = store_of(service).account_state(account_id)
    assert spent is not None and spent.consecutive_failures == 3
    assert result(service, account_id, codes[1]) is VerifyResult.VALID
    after = store_of(service).account_state(account_id)
    assert after is not None
    assert (after.consecutive_failures, after.budget_tat) == (0, spent.budget_tat)


def test_tenants_keep_their_codes_apart(service: MfaService, clock: Clock) -> None:
    sets = {}
    for tenant in ("shop", "bank"):
        with calls.scoped(CallScope(caller="t", tenant=tenant)):
            enroll_active(service, clock, "alice")
            sets[tenant] = service.generate_recovery_codes("alice").codes
    with calls.scoped(CallScope(caller="t", tenant="bank")):
        assert result(service, "alice", sets["shop"][0]) is VerifyResult.INVALID
        assert service.recovery_codes_status("alice").remaining == 10
    with calls.scoped(CallScope(caller="t", tenant="shop")):
        assert result(service, "alice", sets["shop"][0]) is VerifyResult.VALID
    shop = store_of(service).account_state("alice", tenant="shop")
    bank = store_of(service).account_state("alice", tenant="bank")
    assert shop is None or shop.consecutive_failures == 0  # PostgreSQL locked a fresh row
    assert bank is not None and bank.consecutive_failures == 1
    with calls.scoped(CallScope(caller="t", tenant="default")), pytest.raises(TotpdError):
        service.verify_recovery_code("alice", sets["shop"][1])  # no such account here


def test_disabling_the_last_active_factor_drops_the_codes(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    first, second = enroll_many(service, clock, account_id, 2)
    codes = service.generate_recovery_codes(account_id).codes
    service.disable(account_id, first.factor.factor_id, None, True)
    assert service.recovery_codes_status(account_id).remaining == 10  # one still active
    service.disable(account_id, second.factor.factor_id, None, True)
    assert service.recovery_codes_status(account_id) == RecoveryStatus(0, 0, 0)
    # The account still exists (disabled factors): a code of the old set is a failure.
    assert result(service, account_id, codes[0]) is VerifyResult.INVALID


def test_disabling_every_factor_drops_the_codes_but_not_another_accounts(
    service: MfaService, clock: Clock, account_id: str
) -> None:
    enroll_many(service, clock, account_id, 2)
    enroll_active(service, clock, account_id + "-b")
    service.generate_recovery_codes(account_id)
    service.generate_recovery_codes(account_id + "-b")
    service.disable(account_id, None, None, True)
    assert service.recovery_codes_status(account_id).issued == 0
    assert service.recovery_codes_status(account_id + "-b").remaining == 10


@pytest.mark.parametrize(
    "policy",
    [Policy(max_batch_items=2, caller_failure_burst=2, caller_failures_per_second=1)],
)
def test_the_callers_failure_rate_applies(
    service: MfaService, engine: Engine, account_id: str, codes: list[str]
) -> None:
    wrong = next(c for c in ("zzzz-zzzz-zzzz", "yyyy-yyyy-yyyy") if c not in codes)
    for _ in range(2):
        service.verify_recovery_code(account_id, wrong, caller="mallory")
    before = snapshot(engine)
    with pytest.raises(TotpdError) as caught:
        service.verify_recovery_code(account_id, codes[0], caller="mallory")
    assert caught.value.reason is ErrorReason.RATE_LIMITED
    assert snapshot(engine) == before
    assert result(service, account_id, codes[0]) is VerifyResult.VALID  # another caller


@pytest.fixture
def two_keys(tmp_path: Path) -> Iterator[tuple[Keyring, Keyring]]:
    old, new = b"\x01" * 32, b"\x02" * 32
    yield Keyring({"old": old}, "old"), Keyring({"old": old, "new": new}, "new")


def test_codes_hashed_under_an_earlier_primary_key_still_verify(
    engine: Engine, clock: Clock, account_id: str, two_keys: tuple[Keyring, Keyring]
) -> None:
    before, after = two_keys
    service = MfaService(FactorStore(engine), before, Policy(), clock)
    enroll_active(service, clock, account_id)
    codes = service.generate_recovery_codes(account_id).codes
    rotated = MfaService(FactorStore(engine), after, Policy(), clock)
    assert result(rotated, account_id, codes[0]) is VerifyResult.VALID
    assert result(rotated, account_id, codes[0]) is VerifyResult.REPLAYED
    newer = rotated.generate_recovery_codes(account_id).codes
    assert {row[3] for row in rows(engine, "recovery_codes")} == {"new"}
    assert result(rotated, account_id, newer[0]) is VerifyResult.VALID


def test_a_set_whose_key_left_the_keyring_fails_closed(
    engine: Engine, clock: Clock, account_id: str, two_keys: tuple[Keyring, Keyring]
) -> None:
    before, after = two_keys
    service = MfaService(FactorStore(engine), after, Policy(), clock)
    enroll_active(service, clock, account_id)
    codes = service.generate_recovery_codes(account_id).codes
    without = MfaService(FactorStore(engine), before, Policy(), clock)  # "new" is gone
    unchanged = snapshot(engine)
    with pytest.raises(SecretUnavailableError):
        without.verify_recovery_code(account_id, codes[0])
    assert snapshot(engine) == unchanged
