"""The per-item input rules of the largest batches (service/validation.py), checked
with str methods for speed, accept exactly what their patterns describe."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from totpd.domain import ACCOUNT_ID_MAX
from totpd.service import validation
from totpd.service.errors import ErrorReason, TotpdError

ACCOUNT_ID_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{ACCOUNT_ID_MAX}}}")
CODE_PATTERN = re.compile(r"[0-9]{6,8}")

# Near the rules' edges: ASCII around the printable range, other scripts' digits
# and digit-like characters (isdigit is true for some), white space.
EDGES = "\x00\x1f \x21\x7e\x7f\x80\t\n0123456789aZ~!٣۷߂੩²³¹₂①０９\u00a0\u2007"
texts = st.text(alphabet=st.sampled_from(EDGES), max_size=ACCOUNT_ID_MAX + 2) | st.text()


def accepts(rule: object, value: str) -> bool:
    try:
        rule(value)  # type: ignore[operator]
    except TotpdError:
        return False
    return True


@given(texts)
@example("a" * ACCOUNT_ID_MAX)
@example("a" * (ACCOUNT_ID_MAX + 1))
@example("")
def test_an_account_id_is_accepted_exactly_when_printable_ascii_without_spaces(value: str) -> None:
    assert accepts(validation.account_id, value) == bool(ACCOUNT_ID_PATTERN.fullmatch(value))


@given(texts | st.text(alphabet=st.sampled_from("0123456789٣²０"), min_size=5, max_size=9))
@example("12345")
@example("123456789")
@example("12345６")
def test_a_code_is_accepted_exactly_when_six_to_eight_ascii_digits(value: str) -> None:
    if CODE_PATTERN.fullmatch(value):
        assert validation.code_digits(value) == len(value)
    else:
        with pytest.raises(TotpdError) as raised:
            validation.code_digits(value)
        assert raised.value.reason is ErrorReason.MALFORMED_CODE
