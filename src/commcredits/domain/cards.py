"""Payment cards: number, brand, expiry and security-code checks.

Pure functions, no I/O. They decide whether card details are well formed before anything is
sent to a payment gateway; whether a card can actually be charged is the gateway's answer.

Error messages never repeat the card number or the security code: errors get logged, and
card data must not reach logs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from commcredits.domain.errors import RuleViolation

_SEPARATORS: Final = re.compile(r"[ -]")
_CARD_DIGITS: Final = re.compile(r"[0-9]{12,19}")
_ASCII_DIGITS: Final = re.compile(r"[0-9]+")

# Issuer identification number ranges, as (brand, lowest prefix, highest prefix) with both
# prefixes of one length, so a plain string comparison of the number's leading digits decides.
# Checked in order; no two ranges overlap.
_IIN_RANGES: Final[tuple[tuple[str, str, str], ...]] = (
    ("amex", "34", "34"),
    ("amex", "37", "37"),
    ("diners", "300", "305"),
    ("diners", "3095", "3095"),
    ("diners", "36", "36"),
    ("diners", "38", "39"),
    ("jcb", "3528", "3589"),
    ("visa", "4", "4"),
    ("mastercard", "51", "55"),
    ("mastercard", "2221", "2720"),
    ("discover", "6011", "6011"),
    ("discover", "644", "649"),
    ("discover", "65", "65"),
    ("unionpay", "62", "62"),
    ("unionpay", "81", "81"),
)

BRANDS: Final = frozenset(brand for brand, _low, _high in _IIN_RANGES) | {"unknown"}
"""Every value :func:`card_brand` can return."""


def luhn_valid(number: str) -> bool:
    """True when ``number`` is a non-empty string of ASCII digits passing the Luhn check."""
    if not isinstance(number, str) or not _ASCII_DIGITS.fullmatch(number):
        return False
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def normalize_card_number(raw: str) -> str:
    """The card number as 12 to 19 ASCII digits, with spaces and dashes removed.

    Raises ``RuleViolation`` ``invalid_card_number`` (field ``number``) for anything else,
    including numbers that fail the Luhn check.
    """
    digits = _SEPARATORS.sub("", raw.strip()) if isinstance(raw, str) else ""
    if not _CARD_DIGITS.fullmatch(digits) or not luhn_valid(digits):
        raise RuleViolation(
            "the card number is not valid", code="invalid_card_number", field="number"
        )
    return digits


def card_brand(number: str) -> str:
    """The card network of ``number`` from its leading digits, or ``"unknown"``.

    One of ``visa``, ``mastercard`` (51-55 and 2221-2720), ``amex``, ``discover``, ``jcb``,
    ``diners``, ``unionpay``, ``unknown``. Spaces and dashes are ignored.
    """
    digits = _SEPARATORS.sub("", number) if isinstance(number, str) else ""
    if not _ASCII_DIGITS.fullmatch(digits):
        return "unknown"
    for brand, low, high in _IIN_RANGES:
        if len(digits) >= len(low) and low <= digits[: len(low)] <= high:
            return brand
    return "unknown"


def card_expired(exp_month: int, exp_year: int, at: datetime) -> bool:
    """True when a card expiring in ``exp_month``/``exp_year`` is expired at ``at``.

    A card is valid through the last moment of its expiry month in UTC: a card marked 11/2026
    can be charged at 2026-11-30T23:59:59.999999Z and is expired at 2026-12-01T00:00:00Z.
    ``at`` must be timezone-aware.
    """
    if at.utcoffset() is None:
        raise ValueError("card_expired needs a timezone-aware datetime")
    at_utc = at.astimezone(UTC)
    return (at_utc.year, at_utc.month) > (exp_year, exp_month)


def check_expiry_fields(exp_month: int, exp_year: int) -> None:
    """Refuse an expiry that is not a real month, without looking at any clock.

    Raises ``RuleViolation`` ``invalid_expiry`` with field ``exp_month`` when the month is not
    1 to 12, or field ``exp_year`` when the year is not a four-digit year.
    """
    if not _is_int(exp_month) or not 1 <= exp_month <= 12:
        raise RuleViolation(
            "exp_month must be a month from 1 to 12", code="invalid_expiry", field="exp_month"
        )
    if not _is_int(exp_year) or not 1000 <= exp_year <= 9999:
        raise RuleViolation(
            "exp_year must be a four-digit year", code="invalid_expiry", field="exp_year"
        )


def check_expiry(exp_month: int, exp_year: int, at: datetime) -> None:
    """Refuse a malformed expiry (``invalid_expiry``) or one already past at ``at``.

    An expired card raises ``RuleViolation`` ``card_expired`` with field ``exp_year``.
    """
    check_expiry_fields(exp_month, exp_year)
    if card_expired(exp_month, exp_year, at):
        raise RuleViolation("the card has expired", code="card_expired", field="exp_year")


def check_cvc(cvc: str, brand: str) -> None:
    """Refuse a security code that is not 3 ASCII digits (4 for ``amex``).

    Raises ``RuleViolation`` ``invalid_cvc`` (field ``cvc``).
    """
    length = 4 if brand == "amex" else 3
    if not isinstance(cvc, str) or len(cvc) != length or not _ASCII_DIGITS.fullmatch(cvc):
        raise RuleViolation(
            f"the security code must be {length} digits", code="invalid_cvc", field="cvc"
        )


def _is_int(value: object) -> bool:
    # bool is an int subclass; True must not pass as January.
    return isinstance(value, int) and not isinstance(value, bool)
