"""The MFA domain service: enrollment, confirmation, verification, disable.

No grpc and no SQL here: the store persists, the native core computes codes,
this module decides. Every public method validates its input first and raises
`TotpdError` before anything is written or counted.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence

from totpd.crypto import Keyring
from totpd.service import provisioning, validation
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.policy import Policy
from totpd.service.types import (
    Algorithm,
    Enrollment,
    EnrollParams,
    Factor,
    FactorState,
    VerifyItem,
    VerifyOutcome,
    VerifyResult,
)
from totpd.service.verification import CodeCheck, CodeChecker
from totpd.store import FactorStore, LabelTaken
from totpd.store.models import LIVE_STATES, NEVER_USED_STEP, FactorRow

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

    @property
    def policy(self) -> Policy:
        return self._policy

    # -- enrollment --------------------------------------------------------

    def enroll(self, params: EnrollParams) -> Enrollment:
        account_id = validation.account_id(params.account_id)
        issuer = validation.display_name(
            params.issuer or self._policy.default_issuer, "issuer", validation.ISSUER_MAX
        )
        label = (
            validation.display_name(params.label, "label", validation.LABEL_MAX)
            if params.label
            else None
        )
        algorithm = validation.algorithm(params.algorithm)
        digits = validation.digits(params.digits)
        period = validation.period(params.period_seconds)

        now = self._now()
        factor_id = str(uuid.uuid4())
        secret = provisioning.new_secret(algorithm)
        sealed = self._keyring.seal(factor_id, secret)

        def new_row(live: list[FactorRow]) -> FactorRow:
            # Runs in the store's enrollment transaction: nothing else enrolls
            # this account meanwhile, so the limit and the labels hold.
            if len(live) >= self._policy.max_factors_per_account:
                raise TotpdError(
                    ErrorReason.FACTOR_LIMIT_REACHED,
                    f"the account already has {len(live)} factors, the maximum; disable one first",
                    field="account_id",
                )
            taken = {row.label for row in live}
            chosen = label or _first_free_label(taken)
            if chosen in taken:
                raise _label_taken()
            return FactorRow(
                id=factor_id,
                account_id=account_id,
                label=chosen,
                issuer=issuer,
                algorithm=algorithm.value,
                digits=digits,
                period_seconds=period,
                state=FactorState.PENDING.value,
                secret_key_id=sealed.key_id,
                secret_nonce=sealed.nonce,
                secret_ciphertext=sealed.ciphertext,
                last_used_step=NEVER_USED_STEP,
                failed_attempts=0,
                blocked_until=0,
                created_at=now,
                expires_at=now + self._policy.enrollment_ttl_seconds,
            )

        try:
            row = self._store.add_to_account(account_id, now=now, make_row=new_row)
        except LabelTaken:
            raise _label_taken() from None
        uri = provisioning.otpauth_uri(
            secret=secret,
            issuer=issuer,
            account_name=account_id,
            algorithm=algorithm,
            digits=digits,
            period=period,
        )
        png, svg = provisioning.qr_codes(uri)
        return Enrollment(
            factor=to_factor(row),
            otpauth_uri=uri,
            secret_base32=provisioning.base32_secret(secret),
            qr_png=png,
            qr_svg=svg,
        )

    def confirm(
        self, account_id: str, factor_id: str, code: str, caller: str | None = None
    ) -> tuple[VerifyOutcome, Factor]:
        """`caller` (on every code check): who asks, for the per-caller rate of
        failures (caller_limits.py); None for a call from inside totpd."""
        request = CodeCheck(
            account_id=validation.account_id(account_id),
            code=code,
            factor_id=validation.factor_id(factor_id),
        )
        outcome = self._checker.check(request, state=FactorState.PENDING.value, caller=caller)
        return outcome, self.get_factor(account_id, factor_id)

    # -- verification ------------------------------------------------------

    def verify(self, item: VerifyItem, caller: str | None = None) -> VerifyOutcome:
        return self._checker.check(_code_check(item), state=FactorState.ACTIVE.value, caller=caller)

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
        checks: list[CodeCheck] = []
        positions: list[int] = []
        for position, item in enumerate(items):
            try:
                checks.append(_code_check(item))
                positions.append(position)
            except TotpdError as error:
                results[position] = error
        verdicts = self._checker.check_many(checks, state=FactorState.ACTIVE.value, caller=caller)
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
        caller: str | None = None,
    ) -> tuple[VerifyOutcome, list[Factor]]:
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
        targets = self._disable_targets(account_id, factor_id)
        if force:
            outcome = VerifyOutcome(VerifyResult.VALID, factor_id=factor_id)
        else:
            assert code is not None  # checked above
            # The code proves possession of an active target, or of the pending
            # one when nothing is active yet (cancelling an enrollment).
            states = {row.state for row in targets}
            state = "active" if "active" in states else "pending"
            # A pending factor's step is used up but the factor is not
            # activated: if the disable below fails, the enrollment the caller
            # is cancelling must not be left active.
            outcome = self._checker.check(
                CodeCheck(account_id, code, factor_id), state=state, activate=False, caller=caller
            )
            if outcome.result is not VerifyResult.VALID:
                return outcome, []
        disabled = self._store.disable([row.id for row in targets])
        return outcome, [to_factor(row) for row in disabled]

    def _disable_targets(self, account_id: str, factor_id: str | None) -> list[FactorRow]:
        live = self._store.list_for_account(account_id, LIVE_STATES, now=self._now())
        if factor_id is None:
            if not live:
                raise TotpdError(
                    ErrorReason.ACCOUNT_NOT_FOUND,
                    "the account has no active or pending factor",
                    field="account_id",
                )
            return live
        targets = [row for row in live if row.id == factor_id]
        if targets:
            return targets
        row = self._owned_row(account_id, factor_id)
        if row.state not in LIVE_STATES:
            raise TotpdError(
                ErrorReason.FACTOR_NOT_ACTIVE,
                f"the factor is already {row.state}",
                field="factor_id",
            )
        return [row]

    # -- reads -------------------------------------------------------------

    def get_factor(self, account_id: str, factor_id: str) -> Factor:
        account_id = validation.account_id(account_id)
        factor_id = validation.factor_id(factor_id)
        return to_factor(self._owned_row(account_id, factor_id))

    def list_factors(self, account_id: str, include_inactive: bool) -> list[Factor]:
        account_id = validation.account_id(account_id)
        states = [state.value for state in FactorState] if include_inactive else LIVE_STATES
        rows = self._store.list_for_account(account_id, states, now=self._now())
        return [to_factor(row) for row in rows]

    def _owned_row(self, account_id: str, factor_id: str) -> FactorRow:
        row = self._store.get(factor_id)
        # Another account's factor is reported exactly like a missing one.
        if row is None or row.account_id != account_id:
            raise TotpdError(
                ErrorReason.FACTOR_NOT_FOUND,
                "the account has no factor with this factor_id",
                field="factor_id",
            )
        return row

    def _now(self) -> int:
        return math.floor(self._clock())


def to_factor(row: FactorRow) -> Factor:
    """The public view of a row: everything but the secret and the counters."""
    return Factor(
        factor_id=row.id,
        account_id=row.account_id,
        label=row.label,
        issuer=row.issuer,
        algorithm=Algorithm(row.algorithm),
        digits=row.digits,
        period_seconds=row.period_seconds,
        state=FactorState(row.state),
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
    )


def _code_check(item: VerifyItem) -> CodeCheck:
    return CodeCheck(
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
