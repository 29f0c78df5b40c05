"""A small synchronous client for ``totpd.v1.TotpService``."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import grpc

from .audit import AuditEvent, AuditPage, to_micros
from .auth import call_metadata, is_loopback
from .errors import TotpdError
from .lifecycle import LifecycleCalls
from .retries import RetryPolicy, retryable
from .types import (
    Algorithm,
    BatchItem,
    BatchResult,
    Confirmation,
    DisableResult,
    Enrollment,
    Factor,
    VerifyOutcome,
)
from .v1 import audit_pb2, errors_pb2, totp_service_pb2, totp_service_pb2_grpc

T = TypeVar("T")

DEFAULT_TIMEOUT = 5.0


def _reason_name(value: int) -> str:
    try:
        return errors_pb2.ErrorReason.Name(value)
    except ValueError:  # a reason newer than this client
        return ""


class TotpdClient(LifecycleCalls):
    """Client for totpd. Thread-safe; use it as a context manager or call :meth:`close`.

    * ``timeout``: deadline of every call in seconds, retries included (default 5).
    * Calls failing with ``UNAVAILABLE`` (server unreachable, or its database down:
      no verdict was reached) or ``RESOURCE_EXHAUSTED``/``OVERLOADED`` (refused
      before any work) are retried with jittered exponential backoff, waiting at
      least the server's ``google.rpc.RetryInfo`` delay, at most ``max_attempts``
      attempts in all and never past the deadline. Nothing else is retried; in
      particular ``RATE_LIMITED`` is not (it means "stop guessing").
    * ``enroll``, ``confirm`` and ``disable`` send a ``request_id`` (yours, or a
      random UUID4 made once per call and reused by every retry of it), so a
      retry after a lost response returns the first attempt's result instead of
      acting twice. ``verify`` and ``batch_verify`` carry none: a verification
      retried after a lost response may be answered ``REPLAYED`` (the code was
      used by the first attempt), which is the safe answer: ask for the next code.
      ``generate_recovery_codes``, ``verify_recovery_code`` and ``resync`` carry
      no request_id and act on every attempt (a second set, a recovery code
      burnt as REPLAYED, a step consumed twice): they are retried only on
      ``OVERLOADED``, never after an ``UNAVAILABLE``. ``unlock`` is idempotent.
    * Transport: TLS with the system roots by default; ``root_certificates`` (PEM
      bytes) to trust your own CA; ``client_certificate`` + ``client_key`` for mTLS;
      ``insecure=True`` for plaintext on loopback; or pass your own ``channel``.
    * Identity: ``token`` is sent as ``authorization: Bearer <token>`` on every
      call (or present a client certificate for mTLS); ``tenant`` as
      ``x-totpd-tenant`` (needed only by a caller holding several tenants). A
      token over ``insecure=True`` to a non-loopback target is refused unless
      ``allow_token_over_plaintext=True`` (a TLS-terminating sidecar on the
      path); with your own ``channel`` the token is sent as given.
    * Errors raise :class:`TotpdError` with ``.code``, ``.reason``, ``.field``;
      :class:`UnauthenticatedError`, :class:`PermissionDeniedError` and
      :class:`TenantRequiredError` are its subclasses for refused identities,
      never retried.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = 4,
        initial_backoff: float = 0.1,
        max_backoff: float = 2.0,
        insecure: bool = False,
        root_certificates: bytes | None = None,
        client_certificate: bytes | None = None,
        client_key: bytes | None = None,
        server_name: str | None = None,
        channel: grpc.Channel | None = None,
        options: Sequence[tuple[str, Any]] = (),
        token: str | None = None,
        tenant: str | None = None,
        allow_token_over_plaintext: bool = False,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if (client_certificate is None) != (client_key is None):
            raise ValueError("mTLS needs both client_certificate and client_key")
        if (
            token is not None
            and insecure
            and channel is None
            and not allow_token_over_plaintext
            and not is_loopback(target)
        ):
            raise ValueError(
                f"refusing to send the token in plaintext to {target}: use TLS, or pass"
                " allow_token_over_plaintext=True if TLS ends at a proxy on the way"
            )
        self._metadata = call_metadata(token, tenant)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._owns_channel = channel is None
        if channel is None:
            opts = list(options)
            if server_name:
                opts.append(("grpc.ssl_target_name_override", server_name))
            if insecure:
                if root_certificates or client_certificate:
                    raise ValueError("insecure=True excludes TLS options")
                channel = grpc.insecure_channel(target, options=opts)
            else:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=root_certificates,
                    private_key=client_key,
                    certificate_chain=client_certificate,
                )
                channel = grpc.secure_channel(target, creds, options=opts)
        self._channel = channel
        self._stub = totp_service_pb2_grpc.TotpServiceStub(channel)  # type: ignore[no-untyped-call]

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> TotpdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- RPCs --------------------------------------------------------------------
    def enroll(
        self,
        account_id: str,
        label: str = "",
        *,
        issuer: str = "",
        algorithm: Algorithm = Algorithm.UNSPECIFIED,
        digits: int = 0,
        period_seconds: int = 0,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Enrollment:
        """Creates a PENDING factor; the response is the only copy of its secret.

        ``request_id`` (at most 64 printable ASCII characters) makes the call
        idempotent within the server's retention window; None or "" means a random
        one made for this call. Pass your own to retry the call yourself later.
        """
        req = totp_service_pb2.EnrollRequest(
            account_id=account_id,
            label=label,
            issuer=issuer,
            algorithm=f"ALGORITHM_{algorithm.name}",
            digits=digits,
            period_seconds=period_seconds,
            request_id=_request_id(request_id),
        )
        r = self._call(self._stub.Enroll, req, timeout)
        return Enrollment(
            factor=Factor.from_proto(r.factor),
            otpauth_uri=r.otpauth_uri,
            secret_base32=r.secret_base32,
            qr_png=r.qr_png,
            qr_svg=r.qr_svg,
        )

    def confirm(
        self,
        account_id: str,
        factor_id: str,
        code: str,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Confirmation:
        """Activates a PENDING factor with the first code its app shows.

        ``request_id``: as for :meth:`enroll`.
        """
        req = totp_service_pb2.ConfirmEnrollmentRequest(
            account_id=account_id,
            factor_id=factor_id,
            code=code,
            request_id=_request_id(request_id),
        )
        r = self._call(self._stub.ConfirmEnrollment, req, timeout)
        return Confirmation(VerifyOutcome.from_proto(r.outcome), Factor.from_proto(r.factor))

    def verify(
        self, account_id: str, code: str, factor_id: str = "", *, timeout: float | None = None
    ) -> VerifyOutcome:
        """Checks a sign-in code against the account's ACTIVE factors (or one of them).

        Not idempotent: after a retried ``UNAVAILABLE`` the answer may be ``REPLAYED``.
        """
        req = totp_service_pb2.VerifyRequest(account_id=account_id, code=code, factor_id=factor_id)
        return VerifyOutcome.from_proto(self._call(self._stub.Verify, req, timeout).outcome)

    def batch_verify(
        self, items: Iterable[BatchItem], *, timeout: float | None = None
    ) -> list[BatchResult]:
        """Checks many codes at once; results in request order, each with its own error."""
        req = totp_service_pb2.BatchVerifyRequest(
            items=[
                totp_service_pb2.BatchVerifyItem(
                    account_id=i.account_id, code=i.code, factor_id=i.factor_id
                )
                for i in items
            ]
        )
        out: list[BatchResult] = []
        for r in self._call(self._stub.BatchVerify, req, timeout).results:
            if r.WhichOneof("result") == "error":
                e = r.error
                out.append(
                    BatchResult(
                        error=TotpdError.from_item_error(
                            e.code, _reason_name(e.reason), e.message, e.field
                        )
                    )
                )
            else:
                out.append(BatchResult(outcome=VerifyOutcome.from_proto(r.outcome)))
        return out

    def disable(
        self,
        account_id: str,
        factor_id: str = "",
        code: str = "",
        *,
        force: bool = False,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> DisableResult:
        """Disables one factor (or all of the account's) with a current code.

        ``force=True`` is the privileged admin override that needs no code:
        reserve it for authenticated administrator paths. ``request_id``: as for
        :meth:`enroll`.
        """
        req = totp_service_pb2.DisableRequest(
            account_id=account_id,
            factor_id=factor_id,
            code=code,
            force=force,
            request_id=_request_id(request_id),
        )
        r = self._call(self._stub.Disable, req, timeout)
        return DisableResult(
            VerifyOutcome.from_proto(r.outcome), [Factor.from_proto(f) for f in r.factors]
        )

    def get_factor(
        self, account_id: str, factor_id: str, *, timeout: float | None = None
    ) -> Factor:
        req = totp_service_pb2.GetFactorRequest(account_id=account_id, factor_id=factor_id)
        return Factor.from_proto(self._call(self._stub.GetFactor, req, timeout).factor)

    def list_factors(
        self, account_id: str, *, include_inactive: bool = False, timeout: float | None = None
    ) -> list[Factor]:
        """The account's factors, newest first; :meth:`mfa_status` adds its recovery codes."""
        return self.mfa_status(
            account_id, include_inactive=include_inactive, timeout=timeout
        ).factors

    def list_audit_events(
        self,
        *,
        tenant: str = "",
        account_id: str = "",
        caller: str = "",
        method: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> AuditPage:
        """One page of audit events, oldest first (needs the ``admin`` permission).

        Empty filters match anything; ``since`` is inclusive, ``until`` exclusive
        (naive datetimes are UTC). ``page_size`` 0 means the server's default (100).
        Pass the page's ``next_page_token`` with the same filters for the next one,
        or use :meth:`iter_audit_events`.
        """
        req = audit_pb2.ListAuditEventsRequest(
            tenant=tenant,
            account_id=account_id,
            caller=caller,
            method=method,
            start_time_unix_micros=to_micros(since),
            end_time_unix_micros=to_micros(until),
            page_size=page_size,
            page_token=page_token,
        )
        r = self._call(self._stub.ListAuditEvents, req, timeout)
        return AuditPage([AuditEvent.from_proto(e) for e in r.events], r.next_page_token)

    def iter_audit_events(
        self, *, limit: int | None = None, page_size: int = 0, **filters: Any
    ) -> Iterator[AuditEvent]:
        """Every matching event, oldest first, fetching page after page (at most ``limit``).

        ``filters``: the keyword arguments of :meth:`list_audit_events`. Each page is
        one call with its own ``timeout``.
        """
        token, left = "", limit
        while left is None or left > 0:
            size = page_size if left is None else min(left, page_size or 100)
            page = self.list_audit_events(page_size=size, page_token=token, **filters)
            events = page.events if left is None else page.events[:left]
            yield from events
            if left is not None:
                left -= len(events)
            token = page.next_page_token
            if not token:
                return

    # -- plumbing ----------------------------------------------------------------
    def _call(
        self,
        method: Callable[..., T],
        request: Any,
        timeout: float | None,
        retry: RetryPolicy = retryable,
    ) -> T:
        """One logical call: the same ``request`` (and request_id) on every attempt;
        ``retry`` says which failures another attempt may follow."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        backoff = self.initial_backoff
        attempt = 1
        while True:
            remaining = deadline - time.monotonic()
            try:
                return method(request, timeout=max(remaining, 0.001), metadata=self._metadata)
            except grpc.RpcError as rpc_error:
                err = TotpdError.from_rpc_error(rpc_error)
                if not retry(err) or attempt >= self.max_attempts:
                    raise err from None
                jitter = random.uniform(backoff / 2, backoff)  # noqa: S311 (jitter, not crypto)
                sleep = max(jitter, err.retry_after or 0.0)
                if deadline - time.monotonic() <= sleep:
                    raise err from None
                time.sleep(sleep)
                backoff = min(backoff * 2, self.max_backoff)
                attempt += 1


def _request_id(given: str | None) -> str:
    return given or str(uuid.uuid4())
