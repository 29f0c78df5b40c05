"""Shared by the service tests: a count of the (code, factor) pairs the native core
compares, and the verdicts of a BatchVerify as one comparable list."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from totpd import otp
from totpd.service.errors import TotpdError
from totpd.service.types import VerifyOutcome


class Compared:
    """Counts the (code, factor) pairs the native core compares."""

    def __init__(self) -> None:
        self.pairs = 0
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            pairs, self.pairs = self.pairs, 0
        return pairs


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> Iterator[Compared]:
    counter = Compared()
    real = otp.verify_batch

    def counting(table: object, indices: object, codes: list[int], window: int) -> object:
        with counter._lock:
            counter.pairs += len(codes)
        return real(table, indices, codes, window)  # type: ignore[arg-type]

    monkeypatch.setattr(otp, "verify_batch", counting)
    yield counter


def results_of(outcomes: list[VerifyOutcome | TotpdError]) -> list[object]:
    return [o.reason if isinstance(o, TotpdError) else o.result for o in outcomes]
