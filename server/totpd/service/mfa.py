"""The MFA domain service: enrollment, confirmation, verification, disable.

No grpc and no SQL here: the store persists, the native core computes codes,
this module decides. Every public method validates its input first and raises
`TotpdError` before anything is written or counted. The mutations take an
optional request_id and run through `idempotency` (its module says how).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence

from totpd.crypto import Keyring, SecretUnavailableError
from totpd.domain import ISSUER_MAX, LABEL_MAX, LIVE_STATES, FactorState
from totpd.service import idempotency, provisioning, validation
from totpd.service.errors import ErrorReason, TotpdError, factor_not_found, secret_unavailable
from totpd.service.policy import Policy
from totpd.service.types import (
    Enrollment,
    EnrollParams,
    Factor,
    VerifyItem,
    VerifyOutcome,
    VerifyResult,
)
from totpd.service.verification import CodeChecker
from totpd.store import FactorStore, LabelTakenError, NewFactor, StoredFactor
from totpd.store.requests import Completion

_DEFAULT_LABEL = "Authenticator"


class MfaService:
    def __init__(
        self, store: FactorStore, keyring: Keyring, policy: Policy, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._policy = policy
        self._clock = clock
        self._checker = CodeChecker(store, keyring, policy, clock)
        self._requests = idempotency.Idempotency(store.requests, keyring, policy, clock)

    @property
    def policy(self) -> Policy:
        return self._policy

    def ping(self) -> None:
        """Return if the store answers now, raise its error if not (the health probe)."""
        self._store.ping()

    # -- enrollment --------------------------------------------------------

    def enroll(self, params: EnrollParams, request_id: str | None = None) -> Enrollment:
        request_id = idempotency.request_id(request_id)
        account_id = validation.account_id(params.account_id)
        issuer = validation.display_name(
            params.issuer or self._policy.default_issuer, "issuer", ISSUER_MAX
        )
        label = validation.display_name(params.label, "label", LABEL_MAX) if params.label else None
        algorithm = validation.algorithm(params.algorithm)
        digits = validation.digits(params.digits)
        period = validation.period(params.period_seconds)
        call = self._requests.start(request_id, "Enroll", account_id, _enroll_fields(params))
        if call.replay is not None:
            (first_factor_id,) = idempotency.factor_ids_of(call.replay)
            return self._enrollment_again(account_id, first_factor_id)

        now = self._now()
        factor_id = str(uuid.uuid4())
        secret = provisioning.new_secret(algorithm)
        sealed = self._keyring.seal(factor_id, account_id, secret)

        def new_factor(live: list[StoredFactor]) -> NewFactor:
            # Runs in the store's enrollment transaction: nothing else enrolls
            # this account meanwhile, so the limit and the labels hold.
            if len(live) >= self._policy.max_factors_per_account:
                raise TotpdError(
                    ErrorReason.FACTOR_LIMIT_REACHED,
                    f"the account already has {len(live)} factors, the maximum; disable one first",
                    field="account_id",
                )
            taken = {factor.label for factor in live}
            chosen = label or _first_free_label(taken)
            if chosen in taken:
                raise _label_taken()
            return NewFactor(
                factor_id=factor_id,
                account_id=account_id,
                label=chosen,
                issuer=issuer,
                algorithm=algorithm,
                digits=digits,
                period_seconds=period,
                secret_key_id=sealed.key_id,
                secret_nonce=sealed.nonce,
                secret_ciphertext=sealed.ciphertext,
                created_at=now,
                expires_at=now + self._policy.enrollment_ttl_seconds,
            )

        record = call.completion(idempotency.factors_result([factor_id]))
        with call:
            try:
                factor = self._store.add_to_account(
                    account_id, now=now, make_factor=new_factor, completes=record
                )
            except LabelTakenError:
                raise _label_taken() from None
        return _enrollment(factor, secret)

    def _enrollment_again(self, account_id: str, factor_id: str) -> Enrollment:
        """A retried Enroll: the first call's secret, only while its factor is pending."""
        factor = self._owned_factor(account_id, factor_id)
        if factor.state in (FactorState.ACTIVE, FactorState.DISABLED):
            raise TotpdError(
                ErrorReason.FACTOR_NOT_ACTIVE,
                f"the factor this request_id enrolled is {factor.state}; its secret is not "
                "returned again (enroll with a new request_id for a new factor)",
                field="request_id",
            )
        if factor.state is FactorState.EXPIRED or (factor.expires_at or 0) <= self._now():
            raise TotpdError(
                ErrorReason.ENROLLMENT_EXPIRED,
                "the enrollment this request_id made expired; enroll again with a new request_id",
                field="request_id",
            )
        key_id, nonce, ciphertext = (
            factor.secret_key_id,
            factor.secret_nonce,
            factor.secret_ciphertext,
        )
        if key_id is None or nonce is None or ciphertext is None:
            raise secret_unavailable()
        try:
            secret = self._keyring.open_parts(
                factor.factor_id, factor.account_id, key_id, nonce, ciphertext
            )
        except SecretUnavailableError:
            raise secret_unavailable() from None
        return _enrollment(factor, secret)

    def confirm(
        self,
        account_id: str,
        factor_id: str,
        code: str,
        request_id: str | None = None,
        caller: str | None = None,
    ) -> tuple[VerifyOutcome, Factor]:
        """`caller` (on every code check): who asks, for the per-caller rate of
        failures (caller_limits.py); None for a call from inside totpd."""
        request_id = idempotency.request_id(request_id)
        request = VerifyItem(
            account_id=validation.account_id(account_id),
            code=code,
            factor_id=validation.factor_id(factor_id),
        )
        validation.code_digits(code)
        call = self._requests.start(request_id, "ConfirmEnrollment", account_id, (factor_id, code))
        if call.replay is not None:
            return idempotency.outcome_of(call.replay), self.get_factor(account_id, factor_id)
        with call:
            outcome = self._checker.check(request, state=FactorState.PENDING, caller=caller)
            call.complete(idempotency.outcome_result(outcome))
        return outcome, self.get_factor(account_id, factor_id)

    # -- verification ------------------------------------------------------

    def verify(self, item: VerifyItem, caller: str | None = None) -> VerifyOutcome:
        return self._checker.check(_validated(item), state=FactorState.ACTIVE, caller=caller)

    def check_batch_size(self, count: int) -> None:
        """BATCH_TOO_LARGE, the one error that fails a whole batch, before any work."""
        if count > self._policy.max_batch_items:
            raise TotpdError(
                ErrorReason.BATCH_TOO_LARGE,
                f"a batch holds at most {self._policy.max_batch_items} items; split it",
                field="items",
            )

    def verify_batch(
        self, items: Sequence[VerifyItem], caller: str | None = None
    ) -> list[VerifyOutcome | TotpdError]:
        """Each item with exactly the semantics of `verify`; item errors stay per item.

        RATE_LIMITED fails the whole batch, before any item is checked.
        """
        self.check_batch_size(len(items))
        results: list[VerifyOutcome | TotpdError | None] = [None] * len(items)
        requests: list[VerifyItem] = []
        positions: list[int] = []
        for position, item in enumerate(items):
            try:
                requests.append(_validated(item))
                positions.append(position)
            except TotpdError as error:
                results[position] = error
        verdicts = self._checker.check_many(requests, state=FactorState.ACTIVE, caller=caller)
        for position, verdict in zip(positions, verdicts, strict=True):
            results[position] = verdict
        return [result for result in results if result is not None]

    # -- disable -----------------------------------------------------------

    def disable(
        self,
        account_id: str,
        factor_id: str | None,
        code: str | None,
        force: bool,
        request_id: str | None = None,
        caller: str | None = None,
    ) -> tuple[VerifyOutcome, list[Factor]]:
        request_id = idempotency.request_id(request_id)
        account_id = validation.account_id(account_id)
        factor_id = validation.optional_factor_id(factor_id)
        if force and not self._policy.allow_force_disable:
            raise TotpdError(
                ErrorReason.CODE_REQUIRED,
                "force is turned off on this server (allow_force_disable); "
                "disable needs a current code",
                field="force",
            )
        if not force:
            if not code:
                raise TotpdError(
                    ErrorReason.CODE_REQUIRED,
                    "disable needs a current code, or force for an administrator",
                    field="code",
                )
            validation.code_digits(code)
        fields = (factor_id or "", code or "", "force" if force else "")
        call = self._requests.start(request_id, "Disable", account_id, fields)
        if call.replay is not None:
            return self._disabled_again(account_id, call.replay)
        with call:
            return self._disable(account_id, factor_id, code, force, call, caller)

    def _disable(
        self,
        account_id: str,
        factor_id: str | None,
        code: str | None,
        force: bool,
        call: idempotency.Call,
        caller: str | None,
    ) -> tuple[VerifyOutcome, list[Factor]]:
        targets = self._disable_targets(account_id, factor_id)
        if force:
            outcome = VerifyOutcome(VerifyResult.VALID, factor_id=factor_id)
        else:
            assert code is not None  # checked above
            # The code proves possession of an active target, or of the pending
            # one when nothing is active yet (cancelling an enrollment).
            states = {factor.state for factor in targets}
            state = FactorState.ACTIVE if FactorState.ACTIVE in states else FactorState.PENDING
            # A pending factor's step is used up but the factor is not
            # activated: if the disable below fails, the enrollment the caller
            # is cancelling must not be left active.
            outcome = self._checker.check(
                VerifyItem(account_id, code, factor_id), state=state, activate=False, caller=caller
            )
            if outcome.result is not VerifyResult.VALID:
                call.complete(idempotency.outcome_result(outcome))
                return outcome, []

        def record(factors: list[StoredFactor]) -> Completion | None:
            ids = [factor.factor_id for factor in factors]
            return call.completion(idempotency.outcome_result(outcome, ids))

        disabled = self._store.disable(
            [factor.factor_id for factor in targets], now=self._now(), completes=record
        )
        return outcome, [to_factor(factor) for factor in disabled]

    def _disabled_again(
        self, account_id: str, first: idempotency.Result
    ) -> tuple[VerifyOutcome, list[Factor]]:
        """A retried Disable: the first verdict and the factors it disabled, as they are now
        (a factor purged since is left out)."""
        stored = self._store.get_many(idempotency.factor_ids_of(first))
        factors = [
            to_factor(stored[factor_id])
            for factor_id in idempotency.factor_ids_of(first)
            if factor_id in stored and stored[factor_id].account_id == account_id
        ]
        return idempotency.outcome_of(first), factors

    def _disable_targets(self, account_id: str, factor_id: str | None) -> list[StoredFactor]:
        live = self._store.list_for_account(account_id, LIVE_STATES, now=self._now())
        if factor_id is None:
            if not live:
                raise TotpdError(
                    ErrorReason.ACCOUNT_NOT_FOUND,
                    "the account has no active or pending factor",
                    field="account_id",
                )
            return live
        targets = [factor for factor in live if factor.factor_id == factor_id]
        if targets:
            return targets
        factor = self._owned_factor(account_id, factor_id)
        if factor.state not in LIVE_STATES:
            raise TotpdError(
                ErrorReason.FACTOR_NOT_ACTIVE,
                f"the factor is already {factor.state}",
                field="factor_id",
            )
        return [factor]

    # -- reads -------------------------------------------------------------

    def get_factor(self, account_id: str, factor_id: str) -> Factor:
        account_id = validation.account_id(account_id)
        factor_id = validation.factor_id(factor_id)
        return to_factor(self._owned_factor(account_id, factor_id))

    def list_factors(self, account_id: str, include_inactive: bool) -> list[Factor]:
        account_id = validation.account_id(account_id)
        states = tuple(FactorState) if include_inactive else LIVE_STATES
        stored = self._store.list_for_account(account_id, states, now=self._now())
        return [to_factor(factor) for factor in stored]

    def _owned_factor(self, account_id: str, factor_id: str) -> StoredFactor:
        factor = self._store.get(factor_id)
        # Another account's factor is reported exactly like a missing one.
        if factor is None or factor.account_id != account_id:
            raise factor_not_found()
        return factor

    def _now(self) -> int:
        return math.floor(self._clock())


def _enrollment(factor: StoredFactor, secret: bytes) -> Enrollment:
    """The Enroll response of a pending factor: its secret as URI, base32 and QR codes."""
    uri = provisioning.otpauth_uri(
        secret=secret,
        issuer=factor.issuer,
        account_name=factor.account_id,
        algorithm=factor.algorithm,
        digits=factor.digits,
        period=factor.period_seconds,
    )
    png, svg = provisioning.qr_codes(uri)
    return Enrollment(
        factor=to_factor(factor),
        otpauth_uri=uri,
        secret_base32=provisioning.base32_secret(secret),
        qr_png=png,
        qr_svg=svg,
    )


def _enroll_fields(params: EnrollParams) -> tuple[str, ...]:
    """The fields of an Enroll request as sent (None: the server's default)."""
    return (
        params.label,
        params.issuer or "",
        params.algorithm.value if params.algorithm else "",
        str(params.digits or ""),
        str(params.period_seconds or ""),
    )


def to_factor(stored: StoredFactor) -> Factor:
    """The public view of a stored factor: everything but the secret and the counters."""
    return Factor(
        factor_id=stored.factor_id,
        account_id=stored.account_id,
        label=stored.label,
        issuer=stored.issuer,
        algorithm=stored.algorithm,
        digits=stored.digits,
        period_seconds=stored.period_seconds,
        state=stored.state,
        created_at=stored.created_at,
        confirmed_at=stored.confirmed_at,
        last_used_at=stored.last_used_at,
        expires_at=stored.expires_at,
    )


def _validated(item: VerifyItem) -> VerifyItem:
    """The request with its ids validated, as the engine takes it."""
    return VerifyItem(
        validation.account_id(item.account_id),
        item.code,
        validation.optional_factor_id(item.factor_id),
    )


def _first_free_label(taken: set[str]) -> str:
    if _DEFAULT_LABEL not in taken:
        return _DEFAULT_LABEL
    number = 2
    while f"{_DEFAULT_LABEL} {number}" in taken:
        number += 1
    return f"{_DEFAULT_LABEL} {number}"


def _label_taken() -> TotpdError:
    return TotpdError(
        ErrorReason.LABEL_TAKEN,
        "another factor of the account already has this label; choose another",
        field="label",
    )
