"""Rating: the price of a call or a message, exactly (R-40..R-42).

A rate table is a list of :class:`Rate` rows. A row matches a destination by the longest prefix
of its E.164 digits, or, with an empty prefix, by country and number type as libphonenumber
classifies the number; a prefix match beats a country match, and the row must be in force at the
call's start. The charge is computed in exact Decimal and rounded once, half-up, to the
currency's minor unit (R-41). A zero-second call costs nothing, not even the connection fee
(our choice).
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Final, Literal, cast, get_args

import phonenumbers

from commcredits.domain.countries import is_country
from commcredits.domain.errors import RuleViolation
from commcredits.domain.money import MAX_RATE, MAX_RATE_PLACES, billing_currencies, quantize

Service = Literal["outbound", "toll_free_in", "conf_dialout", "sms_out", "sms_in"]
NumberType = Literal["fixed", "mobile", "toll_free", "premium", "shared_cost", "any"]

SERVICES: Final[tuple[str, ...]] = get_args(Service)
NUMBER_TYPES: Final[tuple[str, ...]] = get_args(NumberType)
MESSAGE_SERVICES: Final = frozenset({"sms_out", "sms_in"})
COLUMNS: Final = (
    "service",
    "prefix",
    "country",
    "number_type",
    "rate",
    "connection_fee",
    "first_increment",
    "increment",
    "currency",
    "effective_from",
    "effective_to",
    "description",
)
DEFAULT_INCREMENTS: Final = (60, 60)
"""R-40: whole minutes, rounded up, unless a row says otherwise."""

_PHONE_TYPES: Final[dict[int, tuple[str, ...]]] = {
    phonenumbers.PhoneNumberType.FIXED_LINE: ("fixed",),
    phonenumbers.PhoneNumberType.MOBILE: ("mobile",),
    # North American numbers do not say which they are: a fixed row first, then a mobile one.
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE: ("fixed", "mobile"),
    phonenumbers.PhoneNumberType.TOLL_FREE: ("toll_free",),
    phonenumbers.PhoneNumberType.PREMIUM_RATE: ("premium",),
    phonenumbers.PhoneNumberType.SHARED_COST: ("shared_cost",),
}


@dataclass(frozen=True, slots=True)
class Destination:
    """A number as the rating sees it: E.164 digits, country, and the row types it may match."""

    e164: str
    country: str
    types: tuple[str, ...]
    """Number types in the order they are tried; ``any`` is always tried last."""

    @property
    def digits(self) -> str:
        return self.e164.lstrip("+")

    @property
    def number_type(self) -> str:
        return self.types[0] if self.types else "other"


def classify(number: str, *, field: str = "to") -> Destination:
    """Parse and classify an E.164 number, or refuse it with ``invalid_number``."""
    found = _classify(number.strip())
    if isinstance(found, str):
        raise RuleViolation(found, code="invalid_number", field=field)
    return found


@lru_cache(maxsize=100_000)
def _classify(text: str) -> Destination | str:
    """The classification, or why the number is refused; cached, since calls repeat numbers
    and libphonenumber's matching is the costliest step of rating one call."""
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return f"{text!r} is not an E.164 number such as +442071234567"
    if not text.startswith("+") or not phonenumbers.is_possible_number(parsed):
        return f"{text!r} is not a possible E.164 number"
    region = phonenumbers.region_code_for_number(parsed) or "ZZ"
    if not region.isalpha():
        region = "ZZ"
    types = _PHONE_TYPES.get(phonenumbers.number_type(parsed), ())
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return Destination(e164=e164, country=region, types=types)


@dataclass(frozen=True, slots=True)
class Rate:
    """One row of a rate table."""

    line: int
    service: Service
    prefix: str
    country: str
    number_type: NumberType
    rate: Decimal
    connection_fee: Decimal
    first_increment: int
    increment: int
    currency: str
    effective_from: date | None
    effective_to: date | None
    """Inclusive: the row is in force on that day too."""
    description: str

    def in_force(self, at: datetime) -> bool:
        day = at.astimezone(UTC).date()
        if self.effective_from is not None and day < self.effective_from:
            return False
        return self.effective_to is None or day <= self.effective_to


def billed_seconds(duration: int, first: int, step: int) -> int:
    """Seconds billed for ``duration``: the first block whole, then whole steps, rounded up
    (``60,60`` whole minutes; ``60,1`` first minute then per second; ``1,1`` per second)."""
    if duration <= 0:
        return 0
    if duration <= first:
        return first
    extra = duration - first
    return first + -(-extra // step) * step


@dataclass(frozen=True, slots=True)
class Charge:
    rate: Rate
    units: int
    """Billed seconds for calls, message segments for SMS."""
    charge: Decimal

    @property
    def currency(self) -> str:
        return self.rate.currency


def price(rate: Rate, quantity: int) -> Charge:
    """The charge for ``quantity`` seconds (calls) or segments (messages), rounded once (R-41)."""
    if rate.service in MESSAGE_SERVICES:
        units = max(quantity, 0)
        exact = rate.rate * units + (rate.connection_fee if units else Decimal(0))
    else:
        units = billed_seconds(quantity, rate.first_increment, rate.increment)
        # Zero seconds cost nothing, connection fee included (our choice).
        exact = rate.connection_fee + rate.rate * units / 60 if units else Decimal(0)
    return Charge(rate=rate, units=units, charge=quantize(exact, rate.currency))


@dataclass
class _Index:
    by_prefix: dict[str, list[Rate]] = field(default_factory=lambda: defaultdict(list))
    by_country: dict[tuple[str, str], list[Rate]] = field(default_factory=lambda: defaultdict(list))
    longest: int = 0


class RateTable:
    """Rows indexed for lookup by (service, currency)."""

    def __init__(self, rows: Iterable[Rate]):
        self.rows = list(rows)
        self._index: dict[tuple[str, str], _Index] = defaultdict(_Index)
        for row in self.rows:
            index = self._index[(row.service, row.currency)]
            if row.prefix:
                index.by_prefix[row.prefix].append(row)
                index.longest = max(index.longest, len(row.prefix))
            else:
                index.by_country[(row.country, row.number_type)].append(row)
        self.currencies = sorted({row.currency for row in self.rows})

    def __len__(self) -> int:
        return len(self.rows)

    def match(
        self, service: str, destination: Destination, at: datetime, currency: str | None = None
    ) -> Rate | None:
        """The row in force at ``at``: longest prefix first, then country and number type."""
        for code in [currency] if currency else self.currencies:
            index = self._index.get((service, code))
            if index is None:
                continue
            found = self._match(index, destination, at)
            if found is not None:
                return found
        return None

    @staticmethod
    def _match(index: _Index, destination: Destination, at: datetime) -> Rate | None:
        digits = destination.digits
        for length in range(min(index.longest, len(digits)), 0, -1):
            for row in index.by_prefix.get(digits[:length], ()):
                if row.in_force(at):
                    return row
        for number_type in (*destination.types, "any"):
            for row in index.by_country.get((destination.country, number_type), ()):
                if row.in_force(at):
                    return row
        return None

    def quote(
        self,
        service: str,
        to: str,
        quantity: int,
        at: datetime,
        currency: str | None = None,
    ) -> tuple[Destination, Charge]:
        """Price ``quantity`` seconds (or segments) to ``to``, or refuse with ``no_rate`` (R-42)."""
        if service not in SERVICES:
            raise RuleViolation(
                f"service is one of {', '.join(SERVICES)}", code="invalid_service", field="service"
            )
        destination = classify(to)
        rate = self.match(service, destination, at, currency)
        if rate is None:
            raise RuleViolation(
                f"no {service} rate for {destination.e164} ({destination.country},"
                f" {destination.number_type})",
                code="no_rate",
                field="to",
            )
        return destination, price(rate, quantity)


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", {self.field}" if self.field else "")
        return f"{where}: {self.message}"


class RateTableError(RuleViolation):
    """The table was refused whole; ``problems`` lists every bad row."""

    def __init__(self, problems: list[RowProblem]):
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(
            f"the rate table has {len(problems)} problems: {shown}{more}",
            code="invalid_rate_table",
            details=[{"line": p.line, "field": p.field, "message": p.message} for p in problems],
        )
        self.problems = problems


_PLAIN_DECIMAL: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
"""ASCII digits only: Python's Decimal would also read ``1_000``, ``-0`` or Arabic digits."""


def _decimal(text: str, name: str, *, default: Decimal | None = None) -> Decimal:
    if not text:
        if default is not None:
            return default
        raise ValueError(f"{name} is required")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal number") from None
    if not value.is_finite() or value < 0 or not _PLAIN_DECIMAL.fullmatch(text):
        raise ValueError(f"{text!r} must be a plain decimal, zero or more")
    if value >= MAX_RATE:
        raise ValueError(f"{text!r} is too large: rates and fees stay below {MAX_RATE:,}")
    if -value.as_tuple().exponent > MAX_RATE_PLACES:  # type: ignore[operator]
        raise ValueError(f"{text!r} has more than {MAX_RATE_PLACES} decimal places")
    return value


def _seconds(text: str, default: int) -> int:
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) <= 0 or int(text) > 86_400:
        raise ValueError(f"{text!r} must be a whole number of seconds from 1 to 86400")
    return int(text)


def _day(text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date such as 2026-01-01") from None


def _row(line: int, raw: dict[str, str], problems: list[RowProblem]) -> Rate | None:
    def value(name: str) -> str:
        return (raw.get(name) or "").strip()

    parsed: dict[str, object] = {}
    ok = True
    for name, check in _CHECKS.items():
        try:
            parsed[name] = check(value(name))
        except ValueError as exc:
            problems.append(RowProblem(line, name, str(exc)))
            ok = False
    if not ok:
        return None
    if not parsed["prefix"] and not parsed["country"]:
        problems.append(RowProblem(line, "prefix", "a row needs a prefix, or a country and type"))
        return None
    start, end = parsed["effective_from"], parsed["effective_to"]
    if isinstance(start, date) and isinstance(end, date) and end < start:
        problems.append(RowProblem(line, "effective_to", "ends before it starts"))
        return None
    return Rate(
        line=line,
        service=cast(Service, parsed["service"]),
        prefix=cast(str, parsed["prefix"]),
        country=cast(str, parsed["country"]),
        number_type=cast(NumberType, parsed["number_type"]),
        rate=cast(Decimal, parsed["rate"]),
        connection_fee=cast(Decimal, parsed["connection_fee"]),
        first_increment=cast(int, parsed["first_increment"]),
        increment=cast(int, parsed["increment"]),
        currency=cast(str, parsed["currency"]),
        effective_from=cast("date | None", start),
        effective_to=cast("date | None", end),
        description=cast(str, parsed["description"]),
    )


def _fail(message: str) -> str:
    raise ValueError(message)


_CHECKS: Final[dict[str, Callable[[str], object]]] = {
    "service": lambda t: (
        t if t in SERVICES else _fail(f"{t!r} is not one of {', '.join(SERVICES)}")
    ),
    "prefix": lambda t: (
        t
        if t == "" or (t.isascii() and t.isdigit() and len(t) <= 15)
        else _fail(f"{t!r} must be digits only (E.164 without +)")
    ),
    "country": lambda t: (
        t.upper()
        if t == "" or is_country(t.upper())
        else _fail(f"{t!r} is not an ISO 3166-1 alpha-2 country")
    ),
    "number_type": lambda t: (
        (t or "any")
        if (t or "any") in NUMBER_TYPES
        else _fail(f"{t!r} is not one of {', '.join(NUMBER_TYPES)}")
    ),
    "rate": lambda t: _decimal(t, "rate"),
    "connection_fee": lambda t: _decimal(t, "connection_fee", default=Decimal(0)),
    "first_increment": lambda t: _seconds(t, DEFAULT_INCREMENTS[0]),
    "increment": lambda t: _seconds(t, DEFAULT_INCREMENTS[1]),
    "currency": lambda t: (
        t if t in billing_currencies() else _fail(f"{t!r} is not an ISO 4217 currency")
    ),
    "effective_from": _day,
    "effective_to": _day,
    "description": lambda t: t[:300],
}


def _overlaps(rows: list[Rate]) -> list[RowProblem]:
    """Two rows for the same destination may not be in force on the same day."""
    groups: dict[tuple[object, ...], list[Rate]] = defaultdict(list)
    for row in rows:
        key = (
            (row.service, row.currency, row.prefix)
            if row.prefix
            else (row.service, row.currency, "", row.country, row.number_type)
        )
        groups[key].append(row)
    problems = []
    for group in groups.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda r: (r.effective_from or date.min, r.line))
        # Sweep in start order, remembering the row that reaches furthest so far: a row
        # overlaps an earlier one exactly when it starts before that furthest end.
        furthest = group[0]
        for row in group[1:]:
            if (row.effective_from or date.min) <= (furthest.effective_to or date.max):
                problems.append(
                    RowProblem(
                        row.line, "effective_from", f"overlaps the row on line {furthest.line}"
                    )
                )
            if (row.effective_to or date.max) > (furthest.effective_to or date.max):
                furthest = row
    return problems


def parse_rate_table(text: str) -> RateTable:
    """Parse and check a rate table CSV. Nothing is accepted unless every row is valid; all
    bad rows are reported at once, with their line numbers."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [(name or "").strip().lower() for name in reader.fieldnames or []]
    except csv.Error as exc:
        raise RateTableError([RowProblem(1, None, f"not CSV: {exc}")]) from None
    missing = [name for name in COLUMNS if name not in header and name not in _OPTIONAL]
    if missing:
        raise RateTableError([RowProblem(1, None, f"missing columns: {', '.join(missing)}")])
    reader.fieldnames = header
    problems: list[RowProblem] = []
    rows = []
    try:
        for raw in reader:
            # A quoted field may span lines: report the line the row starts on.
            spans = sum(value.count("\n") for value in raw.values() if isinstance(value, str))
            row = _row(reader.line_num - spans, raw, problems)
            if row is not None:
                rows.append(row)
    except csv.Error as exc:  # a field beyond the csv module's size limit, for one
        problems.append(RowProblem(reader.line_num, None, f"not CSV: {exc}"))
    if not rows and not problems:
        problems.append(RowProblem(1, None, "the table has no rows"))
    problems += _overlaps(rows)
    if problems:
        raise RateTableError(sorted(problems, key=lambda p: p.line))
    return RateTable(rows)


_OPTIONAL: Final = frozenset({"connection_fee", "effective_from", "effective_to", "description"})
