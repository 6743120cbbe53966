"""Identifiers: a prefix, then 26 Crockford base 32 digits, time-ordered."""

from __future__ import annotations

import re
import time

from hypothesis import given
from hypothesis import strategies as st

from commcredits.domain.ids import encode, new_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _digits(value: int, length: int) -> str:
    """Base 32 the plain way: the reference the fast encoder must equal."""
    out = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        out.append(CROCKFORD[digit])
    return "".join(reversed(out))


@given(millis=st.integers(0, 2**48 - 1), random_bits=st.integers(0, 2**80 - 1))
def test_an_id_is_the_milliseconds_in_ten_digits_then_eighty_random_bits_in_sixteen(
    millis: int, random_bits: int
) -> None:
    assert encode(millis, random_bits) == _digits(millis, 10) + _digits(random_bits, 16)


def test_new_ids_read_well_and_sort_by_time() -> None:
    first = new_id("org")
    time.sleep(0.002)
    second = new_id("org")
    assert re.fullmatch(r"org_[0-9A-HJKMNP-TV-Z]{26}", first)
    assert first[:14] < second[:14]  # the time part
    assert len({new_id("txn") for _ in range(1000)}) == 1000
