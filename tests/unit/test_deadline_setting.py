"""The `max_database_wait_seconds` setting and the deadline carried to the store."""

from __future__ import annotations

import time

import pytest

from totpd import deadlines
from totpd.config import ConfigError, load_settings
from totpd.store import deadline
from totpd.store.deadline import DeadlineExceededError


def test_the_longest_database_wait_defaults_to_five_seconds() -> None:
    assert load_settings(environ={}).max_database_wait_seconds == 5.0


def test_the_longest_database_wait_comes_from_every_source() -> None:
    assert (
        load_settings(environ={"TOTPD_MAX_DATABASE_WAIT_SECONDS": "2.5"}).max_database_wait_seconds
        == 2.5
    )
    flagged = load_settings(None, {"max_database_wait_seconds": "0.25"}, {})
    assert flagged.max_database_wait_seconds == 0.25


@pytest.mark.parametrize("value", ["0", "-1", "601", "five", "", "nan"])
def test_a_longest_database_wait_out_of_bounds_is_refused_with_its_name(value: str) -> None:
    with pytest.raises(ConfigError, match="max_database_wait_seconds"):
        load_settings(environ={"TOTPD_MAX_DATABASE_WAIT_SECONDS": value})


def test_a_nested_deadline_only_ever_shortens_the_call() -> None:
    assert deadlines.current() is None
    with deadlines.within(0.5):
        outer = deadlines.current()
        assert outer is not None
        with deadlines.within(60):
            assert deadlines.current() == outer
        with deadlines.within(None):
            assert deadlines.current() == outer
        with deadlines.within(0.1):
            inner = deadlines.current()
            assert inner is not None and inner < outer
        assert deadlines.current() == outer
    assert deadlines.current() is None and deadlines.remaining() is None


def test_a_wait_is_limited_by_the_time_left_and_refused_once_it_passed() -> None:
    assert deadline.wait_limit(7.0) == 7.0  # no deadline: the store's own limit
    with deadlines.within(60):
        assert 0 < deadline.wait_limit(7.0) == 7.0
        assert deadline.wait_limit(3600) <= 60
    with deadlines.within(0):
        assert deadlines.expired()
        with pytest.raises(DeadlineExceededError):
            deadline.wait_limit(7.0)
        with pytest.raises(DeadlineExceededError):
            deadline.check()
    started = time.monotonic()
    with deadlines.within(0.05):
        while not deadlines.expired():  # bounded by the deadline itself
            assert time.monotonic() - started < 30
        with pytest.raises(DeadlineExceededError):
            deadline.check()
