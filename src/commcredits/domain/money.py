"""Exact money: Decimal amounts in an ISO 4217 currency, never floats.

Three representations, each in its place:

* ``Decimal`` in code, parsed by :func:`parse_amount` from ``str``, ``int`` or ``Decimal`` only;
* :class:`Money`, an immutable (amount, currency) pair that refuses to mix currencies;
* integer micro-units (1/1,000,000 of the currency unit) in the database, because SQLite
  cannot hold a Decimal exactly. :func:`to_micros` refuses anything it cannot store exactly.

Rounding happens in one function, :func:`quantize`, to the currency's minor unit with the
named policy :data:`ROUNDING` (half-up, R-41).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache
from typing import Final

from commcredits.domain.errors import InvalidRequest, RuleViolation

ROUNDING: Final = ROUND_HALF_UP
"""R-41: every charge is rounded once, half-up, to the currency's minor unit."""

MICROS_PER_UNIT: Final = 1_000_000
"""The database stores amounts as integer micro-units of the currency."""

MICRO: Final = Decimal("0.000001")

MAX_AMOUNT: Final = Decimal("1000000000000")
"""No single amount may reach a trillion units; keeps micro-units well inside a BIGINT."""

MAX_RATE: Final = Decimal("1000000")
"""No rate or fee may reach a million units (per minute, per message, per call): a day-long
call at the highest rate still prices under :data:`MAX_AMOUNT`."""

MAX_RATE_PLACES: Final = 12
"""Decimal places a rate or fee may have: far below any currency's smallest unit, and what a
person can still read back from the file."""

# ISO 4217 minor units that are not 2. Everything else in the active list has 2.
_MINOR_UNITS_EXCEPTIONS: Final[dict[str, int]] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}

# Codes that are ISO 4217 but not money an organization is billed in.
_NOT_BILLING_CURRENCIES: Final = frozenset(
    [
        "XAG",
        "XAU",
        "XBA",
        "XBB",
        "XBC",
        "XBD",
        "XDR",
        "XPD",
        "XPT",
        "XSU",
        "XTS",
        "XUA",
        "XXX",
        "BOV",
        "CHE",
        "CHW",
        "COU",
        "MXV",
        "USN",
    ]
)

_AMOUNT_PATTERN: Final = re.compile(r"[+-]?[0-9]{1,15}(\.[0-9]{1,18})?")


@cache
def billing_currencies() -> frozenset[str]:
    """Active ISO 4217 currencies an organization can be billed in.

    Taken from CLDR (through Babel): the union of the currencies legal tender today in some
    territory, less precious metals, funds and testing codes.
    """
    from babel.core import get_global

    territory_currencies = get_global("territory_currencies")
    # Each entry is (code, start, end, tender); an end of None means still in use.
    codes = {
        code
        for entries in territory_currencies.values()
        for code, _start, end, tender in entries
        if end is None and tender
    }
    return frozenset(code for code in codes if code not in _NOT_BILLING_CURRENCIES)


def minor_units(currency: str) -> int:
    """Number of decimals of the currency's minor unit (USD 2, JPY 0, BHD 3)."""
    return _MINOR_UNITS_EXCEPTIONS.get(currency, 2)


def check_currency(code: object, *, field: str = "currency") -> str:
    """Return ``code`` if it is an active billing currency, else raise ``invalid_currency``."""
    if not isinstance(code, str) or code not in billing_currencies():
        raise RuleViolation(
            f"{code!r} is not an ISO 4217 currency code in use",
            code="invalid_currency",
            field=field,
        )
    return code


def parse_amount(value: str | int | Decimal, *, field: str = "amount") -> Decimal:
    """The one parser from outside values to an amount.

    Accepts decimal strings in plain notation (``"50"``, ``"-12.5"``), ints and finite Decimals.
    Floats are refused outright: a float has already lost the exact value.
    """
    if isinstance(value, bool | float):
        raise InvalidRequest(
            "amounts are decimal strings, never floats", code="invalid_amount", field=field
        )
    if isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, Decimal):
        result = value
    elif isinstance(value, str):
        text = value.strip()
        if not _AMOUNT_PATTERN.fullmatch(text):
            raise RuleViolation(
                f'{value!r} is not a decimal amount such as "50.00"',
                code="invalid_amount",
                field=field,
            )
        try:
            result = Decimal(text)
        except InvalidOperation as exc:  # pragma: no cover - the pattern already ruled it out
            raise RuleViolation(
                f"{value!r} is not an amount", code="invalid_amount", field=field
            ) from exc
    else:
        raise InvalidRequest(
            "an amount must be a decimal string", code="invalid_amount", field=field
        )
    if not result.is_finite():
        raise RuleViolation("an amount must be a finite number", code="invalid_amount", field=field)
    if abs(result) >= MAX_AMOUNT:
        raise RuleViolation("the amount is too large", code="amount_too_large", field=field)
    return result


def plain(amount: Decimal) -> str:
    """The shortest plain-notation text of an amount: ``150``, ``0.000001``, never ``1.5E+2``."""
    return format(amount.normalize(), "f")


def quantize(amount: Decimal, currency: str, rounding: str = ROUNDING) -> Decimal:
    """Round ``amount`` to the currency's minor unit: the only rounding of money in the product."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=rounding)


def to_micros(amount: Decimal) -> int:
    """Exact conversion to database micro-units; refuses to drop digits silently."""
    micros = amount * MICROS_PER_UNIT
    if micros != micros.to_integral_value():
        raise ValueError(f"{amount} has more than six decimals and cannot be stored exactly")
    return int(micros)


def from_micros(micros: int) -> Decimal:
    """Decimal amount of database micro-units (exact)."""
    return Decimal(micros).scaleb(-6)


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount of one currency. Arithmetic across currencies raises."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError(f"Money needs a Decimal amount, got {type(self.amount).__name__}")

    @classmethod
    def of(cls, value: str | int | Decimal, currency: str) -> Money:
        return cls(parse_amount(value), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def from_micros(cls, micros: int, currency: str) -> Money:
        return cls(from_micros(micros), currency)

    def to_micros(self) -> int:
        return to_micros(self.amount)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: int | Decimal) -> Money:
        if isinstance(factor, bool) or not isinstance(factor, int | Decimal):
            raise TypeError("Money can only be multiplied by an int or a Decimal")
        return Money(self.amount * factor, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def __bool__(self) -> bool:
        return bool(self.amount)

    def quantized(self, rounding: str = ROUNDING) -> Money:
        return Money(quantize(self.amount, self.currency, rounding), self.currency)

    def is_quantized(self) -> bool:
        """True when the amount has no digits below the currency's minor unit."""
        return quantize(self.amount, self.currency) == self.amount

    def format(self) -> str:
        """The contract's decimal string: exactly the currency's minor-unit decimals."""
        return str(quantize(self.amount, self.currency))

    def format_exact(self) -> str:
        """Like :meth:`format`, but never hides digits below the minor unit (prices, fees)."""
        return self.format() if self.is_quantized() else plain(self.amount)

    def __str__(self) -> str:
        return f"{self.format()} {self.currency}"


def parse_money(value: str | int | Decimal, currency: str, *, field: str = "amount") -> Money:
    """Parse a user-supplied amount in ``currency``, refusing digits below its minor unit."""
    amount = parse_amount(value, field=field)
    money = Money(amount, currency)
    if not money.is_quantized():
        raise RuleViolation(
            f"{currency} amounts have at most {minor_units(currency)} decimals",
            code="too_many_decimals",
            field=field,
        )
    return money
