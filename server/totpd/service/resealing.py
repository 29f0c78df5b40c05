"""The keyring step after the migrations: re-seal legacy secrets as format v2.

Migration 0003 cannot see the keyring, so secrets sealed before the account
binding keep format 1 until this step opens each with the legacy layout and
seals it again bound to its account. It runs wherever the keyring is at hand
(at startup before serving, and in `totpd migrate`), in small batches, and is
idempotent: the store replaces a ciphertext only where the row still holds the
one that was read, so two replicas may run it at once. A secret that cannot
be opened (its key is not in the keyring) stays format 1, which the serving
path never opens: its factor answers SECRET_UNAVAILABLE until the key is
back and the step runs again. One log line names each such factor and key id.
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
