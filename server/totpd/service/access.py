"""Who may call, in which tenants, with which permissions: the callers file.

Design notes: ARCHITECTURE.md, "Module notes", rpc/callers.py, service/access.py.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from totpd.calls import DEFAULT_TENANT, LOCAL_CALLER

_log = logging.getLogger("totpd.callers")

PERMISSIONS: Final = ("verify", "enroll", "read", "admin")
TOKEN_PREFIX: Final = "totpd_"  # noqa: S105 (a prefix, not a secret)
TENANT_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HASH_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
_CALLER_KEYS: Final = frozenset({"name", "token_sha256", "tenants", "permissions"})
_NAME_LIMIT: Final = 255
# A changed callers file is noticed within this many seconds.
RELOAD_CHECK_SECONDS: Final = 1.0


class CallersFileError(ValueError):
    """The callers file is unreadable or breaks a rule; the message names the caller."""


@dataclass(frozen=True, slots=True)
class Caller:
    """A caller of the callers file, or the implicit local caller (`tenants` None: all)."""

    name: str
    permissions: frozenset[str]
    tenants: frozenset[str] | None
    token_hashes: tuple[bytes, ...] = field(default=(), repr=False)

    def holds(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants


LOCAL: Final = Caller(LOCAL_CALLER, frozenset(PERMISSIONS), None)


def new_token() -> str:
    """A fresh bearer token: 256 random bits, URL-safe, with a recognisable prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    """The hex digest the callers file stores for `token`."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def valid_tenant(name: str) -> bool:
    return TENANT_PATTERN.fullmatch(name) is not None


class Directory:
    """The callers of one version of the callers file."""

    def __init__(self, callers: Iterable[Caller]) -> None:
        self.callers = tuple(callers)
        self._by_name = {caller.name: caller for caller in self.callers}
        self._hashes = [
            (digest, caller) for caller in self.callers for digest in caller.token_hashes
        ]

    def by_token(self, token: str) -> Caller | None:
        """The caller holding `token`. Every stored hash is compared, in constant
        time each, so the time taken does not tell which caller (if any) matched."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        found: Caller | None = None
        for stored, caller in self._hashes:
            if hmac.compare_digest(stored, digest):
                found = caller
        return found

    def by_identity(self, names: Iterable[str]) -> Caller | None:
        """The first of a certificate's names that names a caller."""
        for name in names:
            caller = self._by_name.get(name)
            if caller is not None:
                return caller
        return None


def parse_callers(text: str, source: str) -> Directory:
    """Parse and check a callers file's text; CallersFileError names the rule broken."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CallersFileError(f"{source} is not valid TOML: {error}") from None
    unknown = sorted(set(document) - {"callers"})
    if unknown:
        raise CallersFileError(
            f"{source}: unknown key {unknown[0]!r}; the file holds [[callers]] tables only"
        )
    entries = document.get("callers", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise CallersFileError(f"{source}: 'callers' must be an array of tables ([[callers]])")
    callers: list[Caller] = []
    names: set[str] = set()
    hashes: dict[bytes, str] = {}
    for index, entry in enumerate(entries, start=1):
        caller = _caller(entry, f"{source}: caller #{index}")
        where = f"{source}: caller #{index} ({caller.name!r})"
        if caller.name in names:
            raise CallersFileError(f"{where}: the name is already used by an earlier caller")
        names.add(caller.name)
        for digest in caller.token_hashes:
            if digest in hashes:
                raise CallersFileError(
                    f"{where}: a token_sha256 is also {hashes[digest]!r}'s; "
                    "every caller needs its own token (`totpd token new NAME`)"
                )
            hashes[digest] = caller.name
        callers.append(caller)
    return Directory(callers)


def _caller(entry: dict[str, Any], where: str) -> Caller:
    unknown = sorted(set(entry) - _CALLER_KEYS)
    if unknown:
        raise CallersFileError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_CALLER_KEYS))})"
        )
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CallersFileError(f"{where}: needs a name (a string)")
    if len(name) > _NAME_LIMIT or not name.isprintable():
        raise CallersFileError(f"{where}: the name must be 1-{_NAME_LIMIT} printable characters")
    where = f"{where} ({name!r})"
    if name == LOCAL_CALLER:
        raise CallersFileError(f"{where}: the name is reserved for the implicit local caller")
    permissions = _strings(entry.get("permissions"), "permissions", where)
    for permission in permissions:
        if permission not in PERMISSIONS:
            raise CallersFileError(
                f"{where}: unknown permission {permission!r} (known: {', '.join(PERMISSIONS)})"
            )
    tenants = _strings(entry.get("tenants", [DEFAULT_TENANT]), "tenants", where)
    if not tenants:
        raise CallersFileError(f"{where}: tenants must name at least one tenant")
    for tenant in tenants:
        if not valid_tenant(tenant):
            raise CallersFileError(
                f"{where}: tenant {tenant!r} is not a tenant name "
                "(1-64 letters, digits, '.', '_' or '-', starting with a letter or digit)"
            )
    raw_hashes = entry.get("token_sha256", [])
    if isinstance(raw_hashes, str):
        raw_hashes = [raw_hashes]
    digests = []
    for text in _strings(raw_hashes, "token_sha256", where):
        if _HASH_PATTERN.fullmatch(text) is None:
            raise CallersFileError(
                f"{where}: token_sha256 must be 64 lowercase hex digits (the SHA-256 of the "
                "token, as `totpd token new` prints it), never the token itself"
            )
        digests.append(bytes.fromhex(text))
    return Caller(name, frozenset(permissions), frozenset(tenants), tuple(digests))


def _strings(value: object, key: str, where: str) -> list[str]:
    if value is None:
        raise CallersFileError(f"{where}: needs {key} (a list of strings)")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CallersFileError(f"{where}: {key} must be a list of strings")
    if len(set(value)) != len(value):
        raise CallersFileError(f"{where}: {key} lists a value twice")
    return value


def read_callers(path: Path) -> Directory:
    return parse_callers(_read_text(path), str(path))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CallersFileError(f"callers file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CallersFileError(f"callers file {path} is unreadable: {error}") from None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns)


class CallersFile:
    """The callers file as it is now: checked at most every RELOAD_CHECK_SECONDS.

    A change (inode, size or modification time) is read and checked as at
    startup; a file that does not load (half written, a typo) is refused with one
    warning and the callers in force stay, so a botched edit never locks every
    service out. Calls never wait for a reload: one thread checks, the others
    use the callers in force.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._clock = clock
        stamp = _stamp(path)
        self._directory = read_callers(path)
        self._stamp = stamp
        self._refused: tuple[int, int, int] | None = None
        self._missing = False
        self._next_check = clock() + RELOAD_CHECK_SECONDS
        self._checking = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path

    def current(self) -> Directory:
        if self._clock() >= self._next_check and self._checking.acquire(blocking=False):
            try:
                self._next_check = self._clock() + RELOAD_CHECK_SECONDS
                self._check()
            finally:
                self._checking.release()
        return self._directory

    def _check(self) -> None:
        stamp = _stamp(self._path)
        if stamp is None:
            if not self._missing:
                self._missing = True
                _log.warning(
                    "callers file is gone; the callers in force stay",
                    extra={"callers_file": str(self._path)},
                )
            return
        self._missing = False
        if stamp == self._stamp or stamp == self._refused:
            return
        try:
            directory = read_callers(self._path)
        except CallersFileError as error:  # names the caller and rule, never a token
            self._refused = stamp
            _log.warning(
                "callers file changed but does not load; the callers in force stay",
                extra={"callers_file": str(self._path), "error": str(error)},
            )
            return
        self._directory, self._stamp, self._refused = directory, stamp, None
        _log.info(
            "callers reloaded",
            extra={"callers_file": str(self._path), "callers": len(directory.callers)},
        )
