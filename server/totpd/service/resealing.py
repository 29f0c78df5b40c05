"""The keyring step after the migrations: re-seal legacy secrets as format v2.

Design notes: ARCHITECTURE.md, "Module notes", service/resealing.py.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from totpd.crypto import Keyring, SecretUnavailableError
from totpd.store.legacy_secrets import LegacySecrets, Resealed

_log = logging.getLogger("totpd.crypto")
_BATCH = 100


class ResealReport(NamedTuple):
    resealed: int
    unavailable: int


def reseal_legacy_secrets(
    secrets: LegacySecrets, keyring: Keyring, *, batch: int = _BATCH
) -> ResealReport:
    resealed = unavailable = 0
    after = ""
    while True:
        rows = secrets.after(after, limit=batch)
        if not rows:
            break
        replacements: list[Resealed] = []
        for row in rows:
            try:
                secret = keyring.open_legacy_parts(
                    row.factor_id, row.key_id, row.nonce, row.ciphertext
                )
            except SecretUnavailableError:
                unavailable += 1
                _log.error(
                    "stored secret cannot be re-sealed; its factor stays unavailable "
                    "until the key is in the keyring",
                    extra={"factor_id": row.factor_id, "key_id": row.key_id},
                )
                continue
            sealed = keyring.seal(row.factor_id, row.account_id, secret)
            replacements.append(Resealed(row.factor_id, row.ciphertext, *sealed))
        resealed += secrets.replace(replacements)
        after = rows[-1].factor_id
    if resealed or unavailable:
        _log.info(
            "legacy secrets re-sealed",
            extra={"resealed": resealed, "unavailable": unavailable},
        )
    return ResealReport(resealed, unavailable)
