"""Identifiers: a short prefix naming the kind, then a time-ordered random part.

``org_01JD3K...`` reads well in logs and support tickets, and the time-ordered part keeps new
rows at the end of their indexes.
"""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A new id such as ``org_01JD3K8Q6W4ZQ7X1N5C2V9B0MA``: 48 bits of milliseconds, 80 random."""
    millis = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_base32(millis, 10)}{_base32(random_bits, 16)}"
