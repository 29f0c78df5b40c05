"""Who is calling: every TotpService call's caller, permission and tenant, before its handler.

Design notes: ARCHITECTURE.md, "Module notes", rpc/callers.py, service/access.py.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Final

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from totpd import calls
from totpd.calls import CallScope
from totpd.config import (
    ConfigError,
    Settings,
    identity_kinds,
    is_loopback_host,
    parse_listen_address,
)
from totpd.service.access import LOCAL, Caller, CallersFile, CallersFileError, valid_tenant
from totpd.service.errors import ErrorReason, TotpdError
from totpd.v1 import totp_service_pb2

_log = logging.getLogger("totpd.server")

SERVICE_PREFIX: Final = (
    "/" + totp_service_pb2.DESCRIPTOR.services_by_name["TotpService"].full_name + "/"
)
TENANT_METADATA: Final = "x-totpd-tenant"
LIST_AUDIT_EVENTS: Final = "ListAuditEvents"
# The permission each RPC needs; Disable with force needs admin (permission_for).
METHOD_PERMISSIONS: Final = {
    "Verify": "verify",
    "BatchVerify": "verify",
    "Enroll": "enroll",
    "ConfirmEnrollment": "enroll",
    "Disable": "enroll",
    "GetFactor": "read",
    "ListFactors": "read",
    "ListAuditEvents": "admin",
    # Issuing recovery codes gives no power Enroll does not (an enrolled factor
    # signs in too), and a login backend must not need admin to accept one.
    "GenerateRecoveryCodes": "enroll",
    "VerifyRecoveryCode": "verify",
    "Resync": "enroll",  # two consecutive codes prove possession, as a confirmation does
    "Unlock": "admin",
}
UNAUTHENTICATED_CALLER: Final = ""  # the caller of a denial before anyone was identified

DeniedHook = Callable[[CallScope, ErrorReason], None]


def ignore_denial(scope: CallScope, reason: ErrorReason) -> None:
    """The default `on_denied`: nothing (the composition root wires the audit trail)."""


def permission_for(method: str, request: Any) -> str:
    """What `method` needs for this request; a method not in the table needs admin."""
    if method == "Disable" and getattr(request, "force", False):
        return "admin"
    return METHOD_PERMISSIONS.get(method, "admin")


class Access:
    """How calls are resolved to callers: from a callers file, or all as "local"."""

    def __init__(self, callers: CallersFile | None, identity: tuple[str, ...]) -> None:
        self.callers = callers
        self._identity = identity

    def caller(self, token: str | None, context: grpc.ServicerContext) -> Caller:
        if self.callers is None:
            return LOCAL
        directory = self.callers.current()
        if token is not None:
            found = directory.by_token(token)
            if found is None:
                raise _unauthenticated(
                    "the bearer token matches no caller in the callers file; "
                    "check the token, or add its hash (`totpd token new NAME`)"
                )
            return found
        names = self.certificate_names(context)
        if not names:
            raise _unauthenticated(
                "no credentials: send 'authorization: Bearer <token>' metadata, "
                "or a client certificate whose identity is in the callers file"
            )
        found = directory.by_identity(names)
        if found is None:
            raise _unauthenticated(
                f"the client certificate's identity {names[0]!r} is not in the callers file"
            )
        return found

    def certificate_names(self, context: grpc.ServicerContext) -> tuple[str, ...]:
        """The names of the first kind (of `client_identity`) the peer's certificate has."""
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            return ()
        kinds = certificate_identities(pems[0])
        for kind in self._identity:
            if kinds.get(kind):
                return kinds[kind]
        return ()


@functools.lru_cache(maxsize=512)
def certificate_identities(pem: bytes) -> dict[str, tuple[str, ...]]:
    """A certificate's names by kind: "uri" and "dns" SANs, the subject's "cn"s.

    Cached: a connection presents the same certificate on every call.
    """
    certificate = x509.load_pem_x509_certificate(pem)
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = tuple(names.get_values_for_type(x509.UniformResourceIdentifier))
        dns = tuple(names.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        uris = dns = ()
    common = tuple(
        str(attribute.value)
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    )
    return {"uri": uris, "dns": dns, "cn": common}


def _unauthenticated(message: str) -> TotpdError:
    return TotpdError(ErrorReason.UNAUTHENTICATED, message)


def _credentials(context: grpc.ServicerContext) -> tuple[str | None, str | None]:
    """The bearer token and the named tenant from the call's metadata (None: absent)."""
    token = tenant = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            scheme, _, rest = str(value).strip().partition(" ")
            if scheme.lower() != "bearer" or not rest.strip():
                raise _unauthenticated("authorization metadata must be 'Bearer <token>'")
            token = rest.strip()
        elif key == TENANT_METADATA:
            tenant = str(value)
    return token, tenant


def _tenant(caller: Caller, named: str | None, *, spans_tenants: bool = False) -> str:
    """The tenant the call acts in. `spans_tenants` (ListAuditEvents, which reads
    every tenant its caller holds): none named is "" rather than TENANT_REQUIRED."""
    if named is not None:
        if not valid_tenant(named):
            raise TotpdError(
                ErrorReason.INVALID_ARGUMENT,
                f"{TENANT_METADATA} must be a tenant name (1-64 letters, digits, '.', '_' or"
                " '-', starting with a letter or digit)",
                field=TENANT_METADATA,
            )
        if not caller.holds(named):
            raise TotpdError(
                ErrorReason.PERMISSION_DENIED,
                f"caller {caller.name!r} does not hold tenant {named!r}; "
                "the callers file lists the tenants of each caller",
            )
        return named
    if caller.tenants is None:
        return calls.DEFAULT_TENANT
    if len(caller.tenants) > 1:
        if spans_tenants:
            return ""
        raise TotpdError(
            ErrorReason.TENANT_REQUIRED,
            f"caller {caller.name!r} holds several tenants: name one in"
            f" {TENANT_METADATA} metadata ({', '.join(sorted(caller.tenants))})",
            field=TENANT_METADATA,
        )
    (only,) = caller.tenants
    return only


class RefusedCallError(Exception):
    """A call refused before its handler: what to answer, and who was refused.

    `error` is the refusal (a TotpdError), or whatever the `on_denied` hook
    raised (a failed audit write fails the call). `caller` and `tenant` are
    what was known of the caller, for the access line.
    """

    def __init__(
        self, error: Exception, caller: str, tenant: str, unrecorded: CallScope | None = None
    ) -> None:
        super().__init__("call refused")
        self.error = error
        self.caller = caller
        self.tenant = tenant
        # Set when the denial is still to be told (`Callers.scope(defer_denial=True)`).
        self.unrecorded = unrecorded


class Callers:
    """Resolves each TotpService call to its caller and tenant, or refuses it.

    The server's interceptor (rpc/interceptors.py) runs `scope` before the
    handler, and the handler as that scope (`calls.scoped`). Health and
    reflection need no caller.
    """

    def __init__(self, access: Access, on_denied: DeniedHook = ignore_denial) -> None:
        self._access = access
        self._on_denied = on_denied

    def scope(
        self,
        method: str,
        request: Any,
        context: grpc.ServicerContext,
        *,
        defer_denial: bool = False,
    ) -> CallScope:
        """The call's caller and tenant, or RefusedCallError (after telling `on_denied`).

        `defer_denial`: `on_denied` (an audit write) is left to `recorded`, so a call
        resolved on the event loop never waits for the database there."""
        peer = context.peer() or ""
        caller_name, tenant = UNAUTHENTICATED_CALLER, ""
        try:
            token, named = _credentials(context)
            tenant = named if named is not None and valid_tenant(named) else ""
            caller = self._access.caller(token, context)
            caller_name = caller.name
            if not tenant and caller.tenants is not None and len(caller.tenants) == 1:
                (tenant,) = caller.tenants  # a denial is then recorded in its one tenant
            permission = permission_for(method, request)
            if permission not in caller.permissions:
                raise TotpdError(
                    ErrorReason.PERMISSION_DENIED,
                    f"caller {caller.name!r} lacks the {permission!r} permission"
                    f" {method} needs{' with force' if permission == 'admin' else ''};"
                    " the callers file lists each caller's permissions",
                )
            lists_events = method == LIST_AUDIT_EVENTS
            tenant = _tenant(caller, named, spans_tenants=lists_events)
            unheld = _unheld_filter(caller, request) if lists_events else None
            if unheld is not None:
                tenant = unheld if valid_tenant(unheld) else tenant  # the denial's tenant
                raise TotpdError(
                    ErrorReason.PERMISSION_DENIED,
                    f"caller {caller.name!r} does not hold the tenant its filter names;"
                    " the callers file lists the tenants of each caller",
                    field="tenant",
                )
            held = () if caller.tenants is None else tuple(sorted(caller.tenants))
        except TotpdError as error:
            refused = CallScope(caller_name, tenant, peer, method)
            if defer_denial and error.reason is not ErrorReason.INVALID_ARGUMENT:
                raise RefusedCallError(error, caller_name, tenant, refused) from None
            raise self._refused(error, refused) from None
        return CallScope(caller_name, tenant, peer, method, held)

    def recorded(self, refused: RefusedCallError) -> RefusedCallError:
        """A refusal whose denial `scope` deferred, once `on_denied` was told."""
        if refused.unrecorded is None or not isinstance(refused.error, TotpdError):
            return refused
        return self._refused(refused.error, refused.unrecorded)

    def _refused(self, error: TotpdError, scope: CallScope) -> RefusedCallError:
        answer: Exception = error
        if error.reason is not ErrorReason.INVALID_ARGUMENT:  # malformed: no event
            try:
                self._on_denied(scope, error.reason)
            except Exception as failure:  # the denial's audit write failed: so does the call
                answer = failure
        return RefusedCallError(answer, scope.caller, scope.tenant)


def _unheld_filter(caller: Caller, request: Any) -> str | None:
    """ListAuditEvents' own tenant filter, when it names a tenant the caller does not
    hold: refused like x-totpd-tenant (and audited), not left to filter out nothing."""
    wanted = str(getattr(request, "tenant", "") or "")
    return wanted if wanted and not caller.holds(wanted) else None


def load_access(settings: Settings) -> Access:
    """The callers file read and checked, or the implicit local caller where that is allowed.

    Refuses (ConfigError) a bad callers file, and serving beyond loopback with
    no callers file unless `allow_anonymous` says so.
    """
    identity = identity_kinds(settings.client_identity)
    if settings.callers_file is not None:
        try:
            return Access(CallersFile(settings.callers_file), identity)
        except CallersFileError as error:
            raise ConfigError(f"callers_file: {error}") from None
    host, _ = parse_listen_address(settings.listen_address)
    if not is_loopback_host(host) and not settings.allow_anonymous:
        raise ConfigError(
            f"listening on {settings.listen_address}, beyond loopback, with no callers_file:"
            " every process that reaches the port could enroll, read, verify and"
            " force-disable any account. Set callers_file (tokens: `totpd token new NAME`),"
            " listen on 127.0.0.1, or accept it with --allow-anonymous"
        )
    return Access(None, identity)


def warn_if_anonymous(settings: Settings, address: str) -> bool:
    """Anonymous callers beyond loopback: allowed when asked for, never silently."""
    host, _ = parse_listen_address(settings.listen_address)
    if settings.callers_file is not None or is_loopback_host(host):
        return False
    _log.warning(
        "serving beyond loopback with no callers file (allow_anonymous): every caller is"
        " 'local', with every permission in every tenant; set callers_file",
        extra={"address": address},
    )
    return True
