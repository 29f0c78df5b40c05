"""Who makes the call being served, in which tenant: set by the rpc layer, read below it.

The rpc layer resolves the caller (certificate or token) and the tenant before
any handler runs and sets them here for the handler's thread; the service
reads them at its entry points (and passes the tenant down to the store
explicitly); the audit trail records them. Code outside a call (the CLI, the
purge, tests of the service) sees `OUTSIDE_A_CALL`: the implicit local caller
in the default tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass

LOCAL_CALLER = "local"  # the implicit caller of a server without a callers file
DEFAULT_TENANT = "default"  # where a caller with no tenant of its own, and old rows, live


@dataclass(frozen=True, slots=True)
class CallScope:
    """The resolved identity of one call: never a token, a certificate or a code."""

    caller: str  # the caller's name from the callers file, or LOCAL_CALLER
    tenant: str  # the tenant the call acts in
    peer: str = ""  # the transport's peer address, e.g. "ipv4:10.0.0.7:53012"
    method: str = ""  # the RPC's method name, e.g. "Verify"
    # Every tenant the caller holds (what it may read the audit events of);
    # () for the implicit local caller, which holds them all, and outside a call.
    tenants: tuple[str, ...] = ()


OUTSIDE_A_CALL = CallScope(caller=LOCAL_CALLER, tenant=DEFAULT_TENANT)

_SCOPE: ContextVar[CallScope] = ContextVar("totpd_call_scope", default=OUTSIDE_A_CALL)


def current() -> CallScope:
    """The scope of the call being served on this thread (OUTSIDE_A_CALL outside one)."""
    return _SCOPE.get()


@contextmanager
def scoped(scope: CallScope) -> Iterator[None]:
    """Run the block as `scope`'s call."""
    token = _SCOPE.set(scope)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def enter(scope: CallScope) -> Token[CallScope]:
    """`scoped(scope)` without a `with` block (a generator per call costs on the rpc
    layer's path): pass the token to `leave` when the call ends."""
    return _SCOPE.set(scope)


def leave(token: Token[CallScope]) -> None:
    _SCOPE.reset(token)
