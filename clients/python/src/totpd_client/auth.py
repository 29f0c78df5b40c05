"""Who the client calls as: a bearer token and a tenant, sent as call metadata."""

from __future__ import annotations

import ipaddress

AUTHORIZATION = "authorization"
TENANT_HEADER = "x-totpd-tenant"


def _header_value(value: str, what: str) -> str:
    """A metadata value as gRPC carries it: printable ASCII, no surrounding spaces.

    The message names the option, never the value (a token must not reach a log).
    """
    if not value or value != value.strip() or not all(" " <= c <= "~" for c in value):
        raise ValueError(f"{what} must be non-empty printable ASCII without surrounding spaces")
    return value


def call_metadata(token: str | None, tenant: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata of every call: ``authorization: Bearer`` and ``x-totpd-tenant``, if set."""
    pairs: list[tuple[str, str]] = []
    if token is not None:
        pairs.append((AUTHORIZATION, "Bearer " + _header_value(token, "token")))
    if tenant is not None:
        pairs.append((TENANT_HEADER, _header_value(tenant, "tenant")))
    return tuple(pairs)


def is_loopback(target: str) -> bool:
    """Whether a gRPC target (HOST:PORT, [V6]:PORT, dns:///, ipv4:, unix:) names this machine."""
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target.removeprefix(scheme)
            break
    if target.startswith("["):
        host = target[1:].split("]", 1)[0]
    elif target.count(":") == 1:
        host = target.rsplit(":", 1)[0]
    else:
        host = target  # a bare host, or a bare IPv6 address
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
