"""Rating many calls at once: the same prices as :mod:`commcredits.domain.rating`, vectorized.

:meth:`CompiledRates.compile` takes the rows of one service and currency that are in force on
one day and turns them into numpy arrays; :meth:`CompiledRates.rate` then prices a batch of
calls (or messages) to E.164 numbers in integer arithmetic that gives, call for call, the row,
the billed units and the charge that :func:`commcredits.domain.rating.price` gives in Decimal,
rounded once, half-up (R-41).

How the lookup works: every prefix of length ``L`` is the interval of 15-digit numbers that
start with it, ``[p * 10**(15-L), (p + 1) * 10**(15-L))``. Prefixes nest, so the intervals can be
flattened into disjoint segments, each labelled with the longest prefix covering it; a number,
padded with zeros to 15 digits, finds its segment with one ``np.searchsorted``. A number shorter
than the prefix found (``+4420`` inside the interval of ``44200``) climbs to the enclosing prefix.

Money in integers: rates and connection fees are scaled to nano-units (``10**-9``); the charge of
``u`` billed seconds is ``(60 * fee + rate * u) / 60`` nano-units, rounded half-up to the minor
unit with integer division. Decimal's 28 significant digits cannot move that result: below
``2**63`` nano-units the rounding error is under ``10**-19`` while a charge that is not exactly on
a half is at least ``10**-11`` away from it.

Calls take the exact Decimal path (:meth:`RateTable.match` and :func:`price`), one by one, when:

* the number is not shaped like ``classify`` writes E.164 (``+``, then 1 to 15 digits, the first
  not 0): spaces, a missing ``+``, too many digits, anything else goes through ``classify``;
* no prefix matches and the table has country rows for this service and currency: country and
  number type come from libphonenumber, per number (results are memoized within a batch);
* the matched row's rate or connection fee has more than nine decimals, or the charge would not
  fit in 64-bit integers.

The batch path trusts well-shaped numbers: it does not ask libphonenumber whether they are
possible numbers (that costs more per number than the whole batch budget), so a number that
``classify`` would refuse as ``invalid_number`` but that a prefix row covers is priced here.
Numbers are expected in the form ``classify`` writes them, i.e. already normalized.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import phonenumbers
from phonenumbers import phonenumberutil

from commcredits.domain.errors import RuleViolation
from commcredits.domain.money import minor_units
from commcredits.domain.rating import (
    _PHONE_TYPES,
    MESSAGE_SERVICES,
    Destination,
    Rate,
    RateTable,
    classify,
    price,
)

IntArray = npt.NDArray[np.int64]

DIGITS: Final = 15
"""E.164 numbers have at most 15 digits; padded to 15 they fit in an int64."""

SCALE: Final = 9
"""Rates and fees are held as integers of 10**-9 units; finer rows take the exact path."""

MAX_DURATION: Final = 10**9
"""Longer durations (about 31 years) take the exact path rather than risk int64 overflow."""

_INT64_MAX: Final = 2**63 - 1
_POW10: Final = np.array([10**k for k in range(DIGITS - 1, -1, -1)], dtype=np.int64)
_WIDTH: Final = DIGITS + 2
"""Bytes per number: ``+``, 15 digits, and one more to notice a number that is too long."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per call: the matched row (an index into ``CompiledRates.rows``, or -1), the billed units
    (seconds for calls, segments for messages) and the charge in the currency's minor units."""

    row: IntArray
    units: IntArray
    charge: IntArray
    minor_units: int
    invalid: frozenset[int]
    """Positions whose number ``classify`` refused (``invalid_number``)."""
    exact_calls: int
    """How many calls went through the exact Decimal path."""

    def __len__(self) -> int:
        return int(self.row.shape[0])

    def amount(self, position: int) -> Decimal:
        """The charge of one call as a Decimal of the currency."""
        return Decimal(int(self.charge[position])).scaleb(-self.minor_units)

    def reason(self, position: int) -> str | None:
        """Why a call was not rated (``invalid_number`` or ``no_rate``, R-42), or None."""
        if self.row[position] >= 0:
            return None
        return "invalid_number" if position in self.invalid else "no_rate"


def _scaled(amount: Decimal) -> int | None:
    """``amount`` in 10**-9 units, or None when that would drop digits or overflow."""
    scaled = amount.scaleb(SCALE)
    if scaled != scaled.to_integral_value() or scaled >= 2**62:
        return None
    return int(scaled)


def _flatten(
    prefixes: list[tuple[str, int]], count: int
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Disjoint segments of the 15-digit number line, each labelled with the row of the longest
    prefix covering it (-1: none); and, per row, its prefix length and enclosing prefix row."""
    spans = sorted(
        (int(prefix) * 10 ** (DIGITS - len(prefix)), len(prefix), row) for prefix, row in prefixes
    )
    starts: list[int] = [0]
    labels: list[int] = [-1]
    length = np.zeros(count, dtype=np.int64)
    parent = np.full(count, -1, dtype=np.int64)
    open_spans: list[tuple[int, int]] = []  # (end, row), innermost last

    def boundary(at: int, label: int) -> None:
        if starts[-1] == at:
            labels[-1] = label
        else:
            starts.append(at)
            labels.append(label)

    def close_until(at: int) -> None:
        while open_spans and open_spans[-1][0] <= at:
            end, _ = open_spans.pop()
            boundary(end, open_spans[-1][1] if open_spans else -1)

    for start, size, row in spans:
        close_until(start)
        parent[row] = open_spans[-1][1] if open_spans else -1
        length[row] = size
        boundary(start, row)
        open_spans.append((start + 10 ** (DIGITS - size), row))
    close_until(10**DIGITS)
    return (
        np.array(starts, dtype=np.int64),
        np.array(labels, dtype=np.int64),
        length,
        parent,
    )


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRates:
    """The rows of one service and currency in force on one day, ready for :meth:`rate`."""

    table: RateTable
    service: str
    currency: str
    day: date
    rows: tuple[Rate, ...]
    """Every row of this service and currency in force on ``day``, in table order."""
    has_country_rows: bool
    _starts: IntArray
    _labels: IntArray
    _length: IntArray
    _parent: IntArray
    _first: IntArray
    _step: IntArray
    _rate: IntArray
    _fee: IntArray
    _max_units: IntArray
    """Above this many units the charge could overflow int64; -1 marks a row that is exact only."""

    @classmethod
    def compile(cls, table: RateTable, service: str, currency: str, at: date) -> CompiledRates:
        """Keep the rows of ``service`` and ``currency`` in force on ``at`` (a UTC day)."""
        noon = datetime.combine(at, time(12), tzinfo=UTC)
        rows = tuple(
            row
            for row in table.rows
            if row.service == service and row.currency == currency and row.in_force(noon)
        )
        # One spare slot, so that gathers at index 0 work on a table without rows.
        count = len(rows) + 1
        first = np.zeros(count, dtype=np.int64)
        step = np.ones(count, dtype=np.int64)
        rate = np.zeros(count, dtype=np.int64)
        fee = np.zeros(count, dtype=np.int64)
        max_units = np.full(count, -1, dtype=np.int64)
        divisor = _divisor(service, currency)
        fee_factor = 1 if service in MESSAGE_SERVICES else 60
        chosen: dict[str, int] = {}
        for index, row in enumerate(rows):
            first[index], step[index] = row.first_increment, row.increment
            # The exact path takes the first row in force per prefix, in table order. A prefix
            # of non-ASCII digits, or longer than E.164 allows, matches no number there or here.
            if row.prefix.isascii() and 0 < len(row.prefix) <= DIGITS:
                chosen.setdefault(row.prefix, index)
            scaled_rate, scaled_fee = _scaled(row.rate), _scaled(row.connection_fee)
            if scaled_rate is None or scaled_fee is None:
                continue
            rate[index], fee[index] = scaled_rate, scaled_fee
            room = _INT64_MAX - fee_factor * scaled_fee - divisor
            max_units[index] = room // scaled_rate if scaled_rate else _INT64_MAX
        starts, labels, length, parent = _flatten(list(chosen.items()), count)
        return cls(
            table=table,
            service=service,
            currency=currency,
            day=at,
            rows=rows,
            has_country_rows=any(not row.prefix for row in rows),
            _starts=starts,
            _labels=labels,
            _length=length,
            _parent=parent,
            _first=first,
            _step=step,
            _rate=rate,
            _fee=fee,
            _max_units=max_units,
        )

    def rate(self, numbers: Sequence[str], durations: npt.ArrayLike) -> BatchResult:
        """Price each call: ``durations[i]`` seconds (messages: segments) to ``numbers[i]``."""
        quantity = np.asarray(durations, dtype=np.int64)
        count = len(numbers)
        if quantity.shape != (count,):
            raise ValueError(f"{count} numbers but durations of shape {quantity.shape}")
        padded, digits, shaped = _parse(numbers)
        row = self._longest_prefix(padded, digits)
        row[~shaped] = -1
        lookup = ~shaped | ((row < 0) & self.has_country_rows)
        matched = row >= 0
        safe_row = np.where(matched, row, 0)
        units = self._units(quantity, safe_row)
        reprice = matched & ((quantity > MAX_DURATION) | (units > self._max_units[safe_row]))
        charge = self._charge(units, safe_row)
        units[~matched] = 0
        charge[~matched] = 0
        invalid = self._exact(numbers, quantity, lookup, reprice, row, units, charge)
        return BatchResult(
            row=row,
            units=units,
            charge=charge,
            minor_units=minor_units(self.currency),
            invalid=frozenset(invalid),
            exact_calls=int(np.count_nonzero(lookup | reprice)),
        )

    def _longest_prefix(self, padded: IntArray, digits: IntArray) -> IntArray:
        segment = np.searchsorted(self._starts, padded, side="right") - 1
        row = self._labels[segment]
        # A number shorter than its prefix (``+4420`` in ``44200``'s span) is not covered by it.
        too_long = np.flatnonzero((row >= 0) & (self._length[np.maximum(row, 0)] > digits))
        while too_long.size:
            row[too_long] = self._parent[row[too_long]]
            still = (row[too_long] >= 0) & (
                self._length[np.maximum(row[too_long], 0)] > digits[too_long]
            )
            too_long = too_long[still]
        return row

    def _units(self, quantity: IntArray, row: IntArray) -> IntArray:
        if self.service in MESSAGE_SERVICES:
            return np.maximum(quantity, 0)
        first, step = self._first[row], self._step[row]
        clipped = np.minimum(quantity, MAX_DURATION)
        beyond = np.maximum(clipped - first, 0)
        units = first + -(-beyond // step) * step
        return np.where(clipped > 0, units, 0)

    def _charge(self, units: IntArray, row: IntArray) -> IntArray:
        divisor = _divisor(self.service, self.currency)
        fee_factor = 1 if self.service in MESSAGE_SERVICES else 60
        # Units past max_units take the exact path; clip so the arithmetic here cannot overflow.
        bounded = np.minimum(units, np.maximum(self._max_units[row], 0))
        nanos = self._rate[row] * bounded + fee_factor * self._fee[row]
        # Half-up: the divisor is even, so adding its half and flooring rounds ties up.
        return np.where(bounded > 0, (nanos + divisor // 2) // divisor, 0)

    def _exact(
        self,
        numbers: Sequence[str],
        quantity: IntArray,
        lookup: npt.NDArray[np.bool_],
        reprice: npt.NDArray[np.bool_],
        row: IntArray,
        units: IntArray,
        charge: IntArray,
    ) -> list[int]:
        """The Decimal path: ``lookup`` calls are classified and matched, ``reprice`` calls keep
        their row and are priced in Decimal. Returns the positions whose number was refused."""
        at = datetime.combine(self.day, time(12), tzinfo=UTC)
        position_of = {id(rate): index for index, rate in enumerate(self.rows)}
        scale = 10 ** minor_units(self.currency)
        matches: dict[str, Rate | RuleViolation | None] = {}
        invalid: list[int] = []
        for position in np.flatnonzero(lookup).tolist():
            number = numbers[position]
            if number not in matches:
                try:
                    destination = classify(number)
                except RuleViolation as refused:
                    matches[number] = refused
                else:
                    matches[number] = self.table.match(self.service, destination, at, self.currency)
            found = matches[number]
            if not isinstance(found, Rate):
                if found is not None:
                    invalid.append(position)
                row[position], units[position], charge[position] = -1, 0, 0
                continue
            row[position] = position_of[id(found)]
            priced = price(found, int(quantity[position]))
            units[position], charge[position] = priced.units, int(priced.charge * scale)
        for position in np.flatnonzero(reprice).tolist():
            priced = price(self.rows[row[position]], int(quantity[position]))
            units[position], charge[position] = priced.units, int(priced.charge * scale)
        return invalid


def _divisor(service: str, currency: str) -> int:
    """Nano-units (per minute for calls) in one minor unit of ``currency``."""
    per_unit = int(10 ** (SCALE - minor_units(currency)))
    return per_unit if service in MESSAGE_SERVICES else 60 * per_unit


def _parse(numbers: Sequence[str]) -> tuple[IntArray, IntArray, npt.NDArray[np.bool_]]:
    """Per number: its digits padded with zeros to 15, how many digits it has, and whether it
    is shaped like E.164 (``+``, 1 to 15 digits, the first not 0)."""
    try:
        text = np.array(numbers, dtype=f"S{_WIDTH}")
    except UnicodeEncodeError:
        text = np.array([n if n.isascii() else "" for n in numbers], dtype=f"S{_WIDTH}")
    raw = text.view(np.uint8).reshape(len(numbers), _WIDTH)
    body = raw[:, 1 : DIGITS + 1]
    is_digit = (body >= ord("0")) & (body <= ord("9"))
    # The run of digits from the start must be everything there is.
    run = np.argmin(np.concatenate([is_digit, np.zeros((len(numbers), 1), bool)], axis=1), axis=1)
    shaped = (
        (raw[:, 0] == ord("+"))
        & (raw[:, DIGITS + 1] == 0)
        & (run == np.count_nonzero(body, axis=1))
        & (run > 0)
        & (body[:, 0] != ord("0"))
    )
    values = np.where(is_digit, body - ord("0"), 0).astype(np.int64)
    padded: IntArray = values @ _POW10
    return padded, run.astype(np.int64), shaped


# -- classifying many distinct numbers ------------------------------------------------------------

_pnu: Final[Any] = phonenumberutil
"""libphonenumber's own helpers (private, untyped): :func:`classify_number` calls them in the
order ``phonenumbers.parse`` does."""

_CANONICAL: Final = re.compile(r"\+[1-9][0-9]{3,16}")
"""What the fast path of :func:`classify_number` takes: ``+`` and 4 to 17 ASCII digits."""


def classify_number(number: str) -> Destination | None:
    """What :func:`commcredits.domain.rating.classify` says about ``number``, or None where it
    refuses it (``invalid_number``), without libphonenumber's general-purpose parsing.

    A number already in E.164 shape (``+`` then ASCII digits, the first not 0) needs none of
    ``phonenumbers.parse``'s handling of punctuation, extensions, national and IDD prefixes; the
    country calling code, national prefix stripping and length checks are libphonenumber's own
    helpers, called in ``parse``'s order, and the region and number type are worked out in one
    pass instead of two (``number_type`` finds the region again). Anything else goes through
    ``classify``."""
    text = number.strip()
    if _CANONICAL.fullmatch(text) is None:
        try:
            return classify(text)
        except RuleViolation:
            return None
    cc, national = _pnu._extract_country_code(text[1:])
    if cc == 0 or len(national) < _pnu._MIN_LENGTH_FOR_NSN:
        return None
    metadata = _pnu.PhoneMetadata.metadata_for_region_or_calling_code(
        cc, _pnu.region_code_for_country_code(cc)
    )
    _, stripped, _ = _pnu._maybe_strip_national_prefix_carrier_code(national, metadata)
    if _pnu._test_number_length(stripped, metadata) not in _KEEP_UNSTRIPPED:
        national = stripped
    if not _pnu._MIN_LENGTH_FOR_NSN <= len(national) <= _pnu._MAX_LENGTH_FOR_NSN:
        return None
    parsed = phonenumbers.PhoneNumber(country_code=cc)
    _pnu._set_italian_leading_zeros_for_phone_number(national, parsed)
    parsed.national_number = int(national)
    if not phonenumbers.is_possible_number(parsed):
        return None
    nsn = _pnu.national_significant_number(parsed)
    region, kind = _region_and_type(cc, nsn)
    if region is None or not region.isalpha():
        region = "ZZ"
    return Destination(e164=f"+{cc}{nsn}", country=region, types=_PHONE_TYPES.get(kind, ()))


_KEEP_UNSTRIPPED: Final = (
    _pnu.ValidationResult.TOO_SHORT,
    _pnu.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    _pnu.ValidationResult.INVALID_LENGTH,
)


def _region_and_type(cc: int, nsn: str) -> tuple[str | None, int]:
    """``region_code_for_number`` and ``number_type`` of a parsed number, in one pass."""
    unknown = _UNKNOWN
    regions = _pnu.COUNTRY_CODE_TO_REGION_CODE.get(cc)
    if regions is None:
        return None, unknown
    if len(regions) == 1:
        region: str | None = regions[0]
    else:
        region = None
        for candidate, metadata, leading in _shared_code_regions(cc, regions):
            if leading is not None:
                if leading.match(nsn):
                    region = candidate
                    break
            else:
                kind = _number_type(nsn, metadata)
                if kind != unknown:
                    # number_type would look the region up again and ask this same question.
                    found = _pnu.PhoneMetadata.metadata_for_region_or_calling_code(cc, candidate)
                    if found is metadata:
                        return candidate, kind
                    region = candidate
                    break
        if region is None:
            return None, unknown
    metadata = _pnu.PhoneMetadata.metadata_for_region_or_calling_code(cc, region)
    if metadata is None:
        return region, unknown
    return region, _number_type(nsn, metadata)


_SHARED: dict[int, list[tuple[str, Any, Any]]] = {}


def _shared_code_regions(cc: int, regions: Any) -> list[tuple[str, Any, Any]]:
    """The regions sharing a country calling code, in ``_region_code_for_number_from_list``'s
    order, with their metadata and compiled leading-digits pattern (None: full validation)."""
    found = _SHARED.get(cc)
    if found is None:
        found = []
        for region in regions:
            metadata = _pnu.PhoneMetadata.metadata_for_region(region.upper(), None)
            if metadata is not None:
                leading = metadata.leading_digits
                found.append(
                    (region, metadata, None if leading is None else _pnu.re_compile(leading))
                )
        _SHARED[cc] = found
    return found


_Test = tuple[frozenset[int] | None, "re.Pattern[str]"] | None
"""A number description as ``_is_number_matching_desc`` reads it: the possible lengths (None:
any) and the pattern; None never matches."""

_TYPE_TESTS: dict[int, tuple[Any, ...]] = {}


def _test(desc: Any) -> _Test:
    if desc is None or not desc.national_number_pattern:
        return None
    lengths = frozenset(desc.possible_length) if desc.possible_length else None
    return lengths, _pnu.re_compile(desc.national_number_pattern)


def _matches(test: _Test, number: str) -> bool:
    """``_is_number_matching_desc``: the length is possible and the pattern takes the whole
    number."""
    if test is None:
        return False
    lengths, pattern = test
    if lengths is not None and len(number) not in lengths:
        return False
    return pattern.fullmatch(number) is not None


def _number_type(number: str, metadata: Any) -> int:
    """``_number_type_helper`` with each description's pattern looked up once per metadata."""
    tests = _TYPE_TESTS.get(id(metadata))
    if tests is None or tests[0] is not metadata:
        tests = (
            metadata,
            _test(metadata.general_desc),
            tuple(
                (_test(getattr(metadata, name)), kind)
                for name, kind in (
                    ("premium_rate", _pnu.PhoneNumberType.PREMIUM_RATE),
                    ("toll_free", _pnu.PhoneNumberType.TOLL_FREE),
                    ("shared_cost", _pnu.PhoneNumberType.SHARED_COST),
                    ("voip", _pnu.PhoneNumberType.VOIP),
                    ("personal_number", _pnu.PhoneNumberType.PERSONAL_NUMBER),
                    ("pager", _pnu.PhoneNumberType.PAGER),
                    ("uan", _pnu.PhoneNumberType.UAN),
                    ("voicemail", _pnu.PhoneNumberType.VOICEMAIL),
                )
            ),
            _test(metadata.fixed_line),
            _test(metadata.mobile),
            bool(metadata.same_mobile_and_fixed_line_pattern),
        )
        _TYPE_TESTS[id(metadata)] = tests
    _, general, special, fixed, mobile, same = tests
    if not _matches(general, number):
        return _UNKNOWN
    for test, kind in special:
        if _matches(test, number):
            return int(kind)
    if _matches(fixed, number):
        if same or _matches(mobile, number):
            return _FIXED_OR_MOBILE
        return _FIXED
    if not same and _matches(mobile, number):
        return _MOBILE
    return _UNKNOWN


_UNKNOWN: Final[int] = phonenumbers.PhoneNumberType.UNKNOWN
_FIXED: Final[int] = phonenumbers.PhoneNumberType.FIXED_LINE
_MOBILE: Final[int] = phonenumbers.PhoneNumberType.MOBILE
_FIXED_OR_MOBILE: Final[int] = phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE
