"""Re-sealing stored secrets: the start-up step that upgrades legacy (format 1) secrets,
and one batch of `totpd rekey` (service/rekeying.py), which moves them to the primary key.

Design notes: ARCHITECTURE.md, "Module notes", service/resealing.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

from totpd.crypto import Keyring, SealedSecret, SecretUnavailableError, tenant_slot, wipe
from totpd.store.sealed_secrets import Resealed, SealedSecrets, StoredSecret

_log = logging.getLogger("totpd.crypto")
_BATCH = 100


class ResealReport(NamedTuple):
    resealed: int
    unavailable: int


def reseal_all(
    keyring: Keyring, rows: Sequence[StoredSecret]
) -> tuple[list[Resealed], list[StoredSecret]]:
    """Each row's secret sealed again under the primary key (current format), and the
    rows whose secret cannot be opened (key missing or authentication failed).

    Plaintexts live in buffers wiped as soon as they are sealed again.
    """
    replacements: list[Resealed] = []
    unavailable: list[StoredSecret] = []
    for row in rows:
        slot = tenant_slot(row.tenant)
        sealed = SealedSecret(row.key_id, row.nonce, row.ciphertext)
        try:
            secret = keyring.open_to_reseal(
                row.secret_format, row.factor_id, row.account_id, sealed, tenant_id=slot
            )
        except SecretUnavailableError:
            unavailable.append(row)
            continue
        try:
            replacements.append(
                Resealed(row, *keyring.seal(row.factor_id, row.account_id, secret, tenant_id=slot))
            )
        finally:
            wipe(secret)
    return replacements, unavailable


def reseal_legacy_secrets(
    secrets: SealedSecrets, keyring: Keyring, *, batch: int = _BATCH
) -> ResealReport:
    resealed = unavailable = 0
    after = ""
    while True:
        rows = secrets.after(after, limit=batch)
        if not rows:
            break
        replacements, failed = reseal_all(keyring, rows)
        for row in failed:
            _log.error(
                "stored secret cannot be re-sealed; its factor stays unavailable "
                "until the key is in the keyring",
                extra={"factor_id": row.factor_id, "key_id": row.key_id},
            )
        unavailable += len(failed)
        resealed += len(secrets.replace(replacements))
        after = rows[-1].factor_id
    if resealed or unavailable:
        _log.info(
            "legacy secrets re-sealed",
            extra={"resealed": resealed, "unavailable": unavailable},
        )
    return ResealReport(resealed, unavailable)
