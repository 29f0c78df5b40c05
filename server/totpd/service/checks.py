"""What the verification engine passes between its modules (glossary: verification.py)."""

from __future__ import annotations

from typing import NamedTuple

from totpd.service.errors import TotpdError
from totpd.service.types import VerifyItem, VerifyOutcome

Verdict = VerifyOutcome | TotpdError


class Check(NamedTuple):
    """A request (`VerifyItem`, its ids validated) as the engine carries it."""

    position: int  # in the caller's request list
    item: VerifyItem
    digits: int  # of the code, which `validation.code_digits` accepted
