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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Final

import numpy as np
import numpy.typing as npt

from commcredits.domain.errors import RuleViolation
from commcredits.domain.money import minor_units
from commcredits.domain.rating import MESSAGE_SERVICES, Rate, RateTable, classify, price

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
