"""Identifiers: a short prefix naming the kind, then a time-ordered random part.

``org_01JD3K...`` reads well in logs and support tickets, and the time-ordered part keeps new
rows at the end of their indexes.
"""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
"""Two characters for each 10-bit value: an id is 13 table lookups."""
_SHIFTS = tuple(range(120, -1, -10))


def encode(millis: int, random_bits: int) -> str:
    """The 26 characters of an id: ``millis`` in 10, ``random_bits`` (80 bits) in 16, as
    Crockford base 32 digits, most significant first, ten bits at a time (ids are made for
    every call record and ledger entry)."""
    value = (millis & (1 << 50) - 1) << 80 | random_bits
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])


def new_id(prefix: str) -> str:
    """A new id such as ``org_01JD3K8Q6W4ZQ7X1N5C2V9B0MA``: 48 bits of milliseconds, 80 random."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{encode(millis, int.from_bytes(os.urandom(10), 'big'))}"
