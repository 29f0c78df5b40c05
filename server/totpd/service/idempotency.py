"""Idempotent mutations (AIP-155): a retry with the same request_id gets the first result.

Design notes: ARCHITECTURE.md, "Module notes", service/idempotency.py.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from totpd import deadlines
from totpd.crypto import Keyring, SecretUnavailableError
from totpd.service.checks import Check, Verdict
from totpd.service.errors import ErrorReason, TotpdError
from totpd.service.policy import Policy
from totpd.service.types import VerifyOutcome, VerifyResult
from totpd.store.requests import DONE, Completion, NewRequest, RequestStore, StoredRequest

# The namespace of request ids within a tenant (ids are per tenant: two tenants'
# cannot collide). One for now.
DEFAULT_SCOPE = "default"
REQUEST_ID_MAX = 64
# A claim still running after its lease was abandoned (its process died, or its
# database went away before the claim could be released): a retry may take it
# over. The holder commits nothing after its call's deadline (deadlines.py), so
# the lease ends a margin after that deadline (the margin covers replicas'
# clocks apart); a claim made outside a call, with no deadline, keeps the
# longest lease.
CLAIM_LEASE_SECONDS = 60
CLAIM_LEASE_MARGIN_SECONDS = 5
# How long a duplicate waits for the first call, and how often it looks.
_WAIT_SECONDS = 2.0
_POLL_SECONDS = 0.05
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,64}")

Result = dict[str, Any]


def request_id(value: str | None) -> str | None:
    """The validated request_id, or None for none (empty)."""
    if not value:
        return None
    if not _REQUEST_ID.fullmatch(value):
        raise TotpdError(
            ErrorReason.INVALID_ARGUMENT,
            f"request_id must be 1 to {REQUEST_ID_MAX} printable ASCII characters "
            "without spaces, or empty for none",
            field="request_id",
        )
    return value


def claim_lease_seconds() -> int:
    """How long a claim made now is held before a retry may take it over."""
    left = deadlines.remaining()
    if left is None:
        return CLAIM_LEASE_SECONDS
    return min(CLAIM_LEASE_SECONDS, math.ceil(max(left, 0.0)) + CLAIM_LEASE_MARGIN_SECONDS)


class Call:
    """One mutating call: either the replay of a first call's result, or a
    claim to act under. As a context manager around the action, it releases
    a claim whose result was not stored (the action failed), so a retry runs again.
    """

    def __init__(
        self,
        requests: RequestStore | None = None,
        request_id: str = "",
        claim_token: str = "",
        replay: Result | None = None,
        tenant: str = "",
    ) -> None:
        self._requests = requests
        self._tenant = tenant
        self._request_id = request_id
        self._token = claim_token
        self._completed = False
        self.replay = replay

    @property
    def claimed(self) -> bool:
        return self._requests is not None and self.replay is None

    def completion(self, result: Result) -> Completion | None:
        """The record of `result`, for the store to write in the change's
        transaction; None when the call has no request_id."""
        if not self.claimed:
            return None
        self._completed = True
        return self.record(result)

    def record(self, result: Result) -> Completion:
        """The record of `result` on this call's claim (`completion` also marks it handed over)."""
        return Completion(
            self._tenant, self._request_id, DEFAULT_SCOPE, self._token, json.dumps(result)
        )

    def complete(self, result: Result) -> None:
        """Store `result` now, in its own transaction (when the change made its own)."""
        completion = self.completion(result)
        if self._requests is not None and completion is not None:
            self._requests.complete(completion)

    def with_verdict(self) -> VerdictCompletion | None:
        """The record of a one-code call's verdict, for the verification round that
        stores the verdict to complete in its transaction (CodeChecker's
        `completion`); None when the call has no request_id."""
        return VerdictCompletion(self) if self.claimed else None

    @property
    def completed(self) -> bool:
        """The result is stored (or handed to the store in a transaction that committed)."""
        return self._completed

    def mark_completed(self) -> None:
        """A transaction that completed the record committed (`VerdictCompletion.stored`)."""
        self._completed = True

    def __enter__(self) -> Call:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._requests is None or not self.claimed:
            return
        if exc_type is None and self._completed:
            return
        try:
            # Deletes only a claim still running: a result that committed stays.
            self._requests.release(self._tenant, self._request_id, DEFAULT_SCOPE, self._token)
        except Exception:  # noqa: S110 (the lease frees a claim left behind)
            pass


class VerdictCompletion:
    """`verification.RoundCompletion` for one call: its single verdict as its result."""

    def __init__(self, call: Call) -> None:
        self._call = call

    def of(self, verdicts: Sequence[tuple[Check, Verdict]]) -> Completion | None:
        if len(verdicts) != 1 or not isinstance(verdicts[0][1], VerifyOutcome):
            return None  # an error is no result: the claim is released
        return self._call.record(outcome_result(verdicts[0][1]))

    def stored(self) -> None:
        self._call.mark_completed()


class Idempotency:
    def __init__(
        self,
        requests: RequestStore,
        keyring: Keyring,
        policy: Policy,
        clock: Callable[[], float],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._requests = requests
        self._keyring = keyring
        self._policy = policy
        self._clock = clock
        self._sleep = sleep

    def start(
        self,
        request_id: str | None,
        method: str,
        account_id: str,
        fields: Sequence[str],
        *,
        tenant: str,
    ) -> Call:
        """Claim `request_id` for this call, or find the first call's result.

        `fields`: every request field but the account and the id, already validated.
        The id is the tenant's: another tenant's call with the same id is another call.
        """
        if request_id is None:
            return Call()
        data = json.dumps([method, account_id, *fields]).encode()
        key_id = self._keyring.primary_key_id
        fingerprint = self._keyring.fingerprint(key_id, data)
        give_up = time.monotonic() + _WAIT_SECONDS
        first: StoredRequest | None = None
        while True:
            if first is None:
                # Absent, released by a call that failed, or abandoned: claim it.
                now = math.floor(self._clock())
                token = secrets.token_hex(16)
                new = NewRequest(
                    tenant=tenant,
                    request_id=request_id,
                    scope=DEFAULT_SCOPE,
                    method=method,
                    account_id=account_id,
                    fingerprint=fingerprint,
                    fingerprint_key_id=key_id,
                    claim_token=token,
                    created_at=now,
                    lease_until=now + claim_lease_seconds(),
                    expires_at=now + self._policy.request_id_retention_seconds,
                )
                first = self._requests.claim(new, now=now)
                if first is None:
                    return Call(self._requests, request_id, token, tenant=tenant)
            self._check_same(first, method, account_id, data)
            if first.state == DONE and first.result is not None:
                return Call(replay=json.loads(first.result))
            if time.monotonic() >= give_up:
                raise TotpdError(
                    ErrorReason.OVERLOADED,
                    "a call with this request_id is still in progress; "
                    "retry after the delay to get its result",
                    field="request_id",
                    retry_after_seconds=1.0,
                )
            self._sleep(_POLL_SECONDS)
            # Waiting reads only: the running call needs the write lock to finish.
            now = math.floor(self._clock())
            first = self._requests.get(tenant, request_id, DEFAULT_SCOPE, now=now)

    def _check_same(self, first: StoredRequest, method: str, account_id: str, data: bytes) -> None:
        try:
            expected = self._keyring.fingerprint(first.fingerprint_key_id, data)
        except SecretUnavailableError:
            raise TotpdError(
                ErrorReason.SECRET_UNAVAILABLE,
                "the key that fingerprinted the first call with this request_id "
                "is no longer in the keyring",
            ) from None
        same = hmac.compare_digest(expected, first.fingerprint)
        if not same or first.method != method or first.account_id != account_id:
            raise TotpdError(
                ErrorReason.REQUEST_ID_REUSED,
                "this request_id was used for a different request; "
                "use a new request_id for every distinct call",
                field="request_id",
            )


# -- results: the verdict and factor ids, never a secret ----------------------


def factors_result(factor_ids: Sequence[str]) -> Result:
    return {"factors": [*factor_ids]}


def outcome_result(outcome: VerifyOutcome, factor_ids: Sequence[str] = ()) -> Result:
    verdict: dict[str, Any] = outcome._asdict()
    verdict["result"] = outcome.result.value
    return {"outcome": verdict, **factors_result(factor_ids)}


def outcome_of(result: Result) -> VerifyOutcome:
    stored: dict[str, Any] = result["outcome"]
    known = {name: stored[name] for name in VerifyOutcome._fields if name in stored}
    known["result"] = VerifyResult(known["result"])
    return VerifyOutcome(**known)


def factor_ids_of(result: Result) -> list[str]:
    return [str(factor_id) for factor_id in result["factors"]]
