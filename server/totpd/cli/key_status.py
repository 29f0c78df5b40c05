"""`totpd keys status`: what each key id (of the keyring or found in the database) is
used for, and whether it may be removed from the keyring."""

from __future__ import annotations

import time
from dataclasses import dataclass

from totpd.crypto import Keyring
from totpd.store.sealed_secrets import KeyUse


@dataclass(frozen=True)
class KeyStatus:
    key_id: str
    primary: bool
    in_keyring: bool
    use: KeyUse

    @property
    def recovery_codes(self) -> int:
        return self.use.recovery_codes_unused + self.use.recovery_codes_used

    @property
    def state(self) -> str:
        """primary | missing | in-use | removable."""
        if self.primary:
            return "primary"
        if not self.in_keyring:
            return "missing"
        if self.use.secrets or self.recovery_codes or self.use.request_records:
            return "in-use"
        return "removable"

    @property
    def removable(self) -> bool:
        return self.state == "removable"

    def verdict(self) -> str:
        """One sentence for the operator: may it go, and if not, what to do first."""
        use = self.use
        if self.primary:
            return "the primary key: it seals every new secret; never remove it"
        if not self.in_keyring:
            return (
                f"MISSING from the keyring: {use.secrets} live secret(s) cannot be opened "
                f"(their factors answer SECRET_UNAVAILABLE) and {self.recovery_codes} recovery "
                "code(s) cannot be checked; put the key back in the keyring"
            )
        if self.removable:
            return "may be removed: no live secret, recovery code or pending request uses it"
        blockers = []
        if use.secrets:
            blockers.append(
                f"{use.secrets} live secret(s) sealed with it: run `totpd rekey` to move "
                "them to the primary key"
            )
        if self.recovery_codes:
            blockers.append(
                f"{self.recovery_codes} recovery code(s) ({use.recovery_codes_unused} unused) "
                f"of {use.recovery_code_accounts} account(s) are hashed with it: a hash cannot "
                "be re-keyed, so those accounts need a new set (GenerateRecoveryCodes)"
            )
        if use.request_records:
            until = _utc(use.request_records_until or 0)
            blockers.append(
                f"{use.request_records} idempotent request record(s) were fingerprinted with "
                f"it: a retry of those requests fails without it; they expire by {until}"
            )
        return "keep: removing it now would break things: " + "; ".join(blockers)

    def as_json(self) -> dict[str, object]:
        use = self.use
        return {
            "key_id": self.key_id,
            "primary": self.primary,
            "in_keyring": self.in_keyring,
            "state": self.state,
            "removable": self.removable,
            "secrets": use.secrets,
            "recovery_codes_unused": use.recovery_codes_unused,
            "recovery_codes_used": use.recovery_codes_used,
            "recovery_code_accounts": use.recovery_code_accounts,
            "request_records": use.request_records,
            "request_records_until": use.request_records_until,
            "verdict": self.verdict(),
        }


def key_statuses(keyring: Keyring, usage: dict[str, KeyUse]) -> list[KeyStatus]:
    """The primary first, then the keyring's other keys, then keys only the database knows."""
    primary = keyring.primary_key_id
    order = sorted(
        keyring.key_ids | set(usage),
        key=lambda key: (key != primary, key not in keyring.key_ids, key),
    )
    return [
        KeyStatus(key, key == primary, key in keyring.key_ids, usage.get(key, KeyUse()))
        for key in order
    ]


_HEADER = ("KEY ID", "PRIMARY", "IN KEYRING", "SECRETS", "RECOVERY CODES", "REQUESTS", "STATE")


def status_lines(statuses: list[KeyStatus]) -> list[str]:
    """A table (one row per key), then one verdict line per key."""
    rows = [_HEADER] + [
        (
            s.key_id,
            "yes" if s.primary else "no",
            "yes" if s.in_keyring else "NO",
            str(s.use.secrets),
            str(s.recovery_codes),
            str(s.use.request_records),
            s.state,
        )
        for s in statuses
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append("")
    lines += [f"{s.key_id}: {s.verdict()}" for s in statuses]
    return lines


def _utc(unix: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))
