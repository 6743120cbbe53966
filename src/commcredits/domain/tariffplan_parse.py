"""Reading a CGRateS tariff-plan folder: the six CSV files, checked line by line.

The rating itself lives in :mod:`commcredits.domain.tariffplan`; this module only turns text
into the immutable pieces that rating works on, and reports every malformed line with its
file and line number in one :class:`TariffPlanError`. Both the current column sets of the
CGRateS tutorial files and the older ones are accepted (see ``docs/tariffplan.md``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Final

from commcredits.domain.money import MAX_RATE, MAX_RATE_PLACES

ANY: Final = "*any"
ROUNDING_METHODS: Final = frozenset({"*up", "*middle", "*down"})
MAX_COST_STRATEGIES: Final = frozenset({"*free", "*disconnect"})
DIRECTIONS: Final = frozenset({"*out", "*in"})
END_OF_DAY: Final = timedelta(days=1)
FILES: Final = (
    "Destinations.csv",
    "Timings.csv",
    "Rates.csv",
    "DestinationRates.csv",
    "RatingPlans.csv",
    "RatingProfiles.csv",
)
OPTIONAL_FILES: Final = frozenset({"Timings.csv"})
"""A plan that only uses the built-in ``*any`` timing needs no Timings.csv."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|m|s)", re.ASCII)
_UNIT_MICROSECONDS: Final = {
    "h": 3_600_000_000,
    "m": 60_000_000,
    "s": 1_000_000,
    "ms": 1_000,
    "us": 1,
    "µs": 1,
}
_CLOCK = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})", re.ASCII)
_WHOLE = re.compile(r"\d+", re.ASCII)
_PLAIN_DECIMAL = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
_ONE_MICROSECOND: Final = timedelta(microseconds=1)


# --------------------------------------------------------------------------- durations


def parse_duration(text: str) -> timedelta:
    """Read a CGRateS duration: ``60s``, ``1m``, ``1m30s``, ``0s``, ``1h``, ``1.5s``, ``250ms``.

    A bare number (``60``, ``0``) counts seconds, as older CGRateS releases read it. Negative
    durations and anything finer than a microsecond are refused with :class:`ValueError`.
    """
    value = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value, re.ASCII):
        value += "s"
    micros = Decimal(0)
    position = 0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        micros += Decimal(match.group(1)) * _UNIT_MICROSECONDS[match.group(2)]
        position = match.end()
    if not value or position != len(value):
        raise ValueError(f"not a duration: {text!r} (use e.g. 60s, 1m, 1m30s, 0s)")
    if micros != micros.to_integral_value():
        raise ValueError(f"duration finer than a microsecond: {text!r}")
    try:
        return timedelta(microseconds=int(micros))
    except OverflowError:
        raise ValueError(f"duration too long: {text!r}") from None


def format_duration(value: timedelta) -> str:
    """Write a duration the way CGRateS files do: ``1h2m3s``, ``45s``, ``0s``, ``1.5s``."""
    if value < timedelta(0):
        raise ValueError("durations are never negative here")
    micros = value // _ONE_MICROSECOND
    hours, micros = divmod(micros, 3_600_000_000)
    minutes, micros = divmod(micros, 60_000_000)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if micros or not text:
        seconds = Decimal(micros).scaleb(-6).normalize()
        text += f"{seconds:f}s"
    return text


def to_microseconds(value: timedelta) -> int:
    """The exact number of microseconds in a duration (timedelta is microsecond-exact)."""
    return value // _ONE_MICROSECOND


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class TariffPlanProblem:
    """One thing wrong with the folder: which file, which line (0 for the whole file), what."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class TariffPlanError(ValueError):
    """The tariff-plan folder cannot be used; ``problems`` lists every malformed line."""

    def __init__(self, problems: list[TariffPlanProblem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        listing = "\n".join(str(problem) for problem in self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the tariff plan:\n{listing}"
        )


# --------------------------------------------------------------------------- the pieces


@dataclass(frozen=True)
class Timing:
    """When a rating-plan binding is in force: calendar filters (empty = ``*any``) and a
    daily window ``[start, end)`` measured from midnight UTC."""

    tag: str
    years: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    month_days: frozenset[int] = frozenset()
    week_days: frozenset[int] = frozenset()  # ISO: 1 = Monday .. 7 = Sunday
    start: timedelta = timedelta(0)
    end: timedelta = END_OF_DAY

    def covers_day(self, day: date) -> bool:
        return (
            (not self.years or day.year in self.years)
            and (not self.months or day.month in self.months)
            and (not self.month_days or day.day in self.month_days)
            and (not self.week_days or day.isoweekday() in self.week_days)
        )

    def is_active_at(self, instant: datetime) -> bool:
        since_midnight = instant - _midnight(instant)
        return self.covers_day(instant.date()) and self.start <= since_midnight < self.end


ALWAYS: Final = Timing(tag=ANY)
"""The built-in ``*any`` timing: every day, all day."""


@dataclass(frozen=True)
class RateGroup:
    """One line of Rates.csv: from ``group_start`` of elapsed call time on, ``rate`` per
    ``rate_unit``, charged in whole ``rate_increment`` steps."""

    group_start: timedelta
    rate: Decimal
    rate_unit: timedelta
    rate_increment: timedelta
    connect_fee: Decimal


@dataclass(frozen=True)
class Rate:
    """All the groups sharing one Rates.csv Id, sorted by ``group_start`` (the first is 0s)."""

    id: str
    groups: tuple[RateGroup, ...]
    rounding: tuple[str, int] | None = None  # only in the old eight-column Rates.csv

    @property
    def connect_fee(self) -> Decimal:
        """The fee of the group in force at the call's start; later groups' fees are unused."""
        return self.groups[0].connect_fee

    def group_at(self, elapsed: timedelta) -> tuple[RateGroup, timedelta | None]:
        """The group in force after ``elapsed`` call time, and where the next one starts."""
        current = self.groups[0]
        for group in self.groups[1:]:
            if group.group_start > elapsed:
                return current, group.group_start
            current = group
        return current, None


@dataclass(frozen=True)
class DestinationRate:
    """One line of DestinationRates.csv: a destination priced by a rate, with the rounding
    and the MaxCost rule (``max_cost`` 0 means no cap)."""

    id: str
    destination_id: str
    rate: Rate
    rounding_method: str
    rounding_decimals: int
    max_cost: Decimal
    max_cost_strategy: str


@dataclass(frozen=True)
class Binding:
    """One destination rate bound by a rating plan to a timing with a weight."""

    destination_rate: DestinationRate
    timing: Timing
    weight: Decimal
    order: int  # position in RatingPlans.csv, the last tie-breaker


@dataclass(frozen=True)
class Activation:
    """One line of RatingProfiles.csv: from ``activation_time`` on, ``rating_plan_id`` rates
    this subject; ``fallback_subjects`` are tried for destinations the plan does not price."""

    activation_time: datetime
    rating_plan_id: str
    fallback_subjects: tuple[str, ...]


@dataclass(frozen=True)
class ParsedTariffPlan:
    """Everything the six files say, cross-checked."""

    prefixes: dict[str, tuple[str, ...]]
    """Prefix (without a leading ``+``) to the destination ids holding it, in file order."""
    rating_plans: dict[str, dict[str, tuple[Binding, ...]]]
    """Rating plan id, then destination id (or ``*any``), to its bindings."""
    profiles: dict[tuple[str, str, str], tuple[Activation, ...]]
    """(tenant, category, subject) to its activations, oldest first."""


def normalize_number(text: str) -> str:
    """Prefixes and dialled numbers are compared without one leading ``+``."""
    text = text.strip()
    return text[1:] if text.startswith("+") else text


def _midnight(instant: datetime) -> datetime:
    return instant.replace(hour=0, minute=0, second=0, microsecond=0)


# --------------------------------------------------------------------------- reading


@dataclass
class _Reader:
    folder: Path
    loaded_at: datetime
    problems: list[TariffPlanProblem] = field(default_factory=list)

    def rows(self, name: str) -> Iterator[tuple[int, list[str]]]:
        """The data lines of one file: (line number, stripped fields); comments skipped."""
        path = self.folder / name
        if not path.is_file():
            if name not in OPTIONAL_FILES:
                self.problems.append(TariffPlanProblem(name, 0, "file is missing"))
            return
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            try:
                for fields in reader:
                    cells = [cell.strip() for cell in fields]
                    if not any(cells) or cells[0].startswith("#"):
                        continue
                    yield reader.line_num, cells
            except csv.Error as exc:
                self.problems.append(TariffPlanProblem(name, reader.line_num, f"not CSV: {exc}"))
            except UnicodeDecodeError:
                self.problems.append(TariffPlanProblem(name, reader.line_num, "not UTF-8 text"))

    def fail(self, name: str, line: int, message: str) -> None:
        self.problems.append(TariffPlanProblem(name, line, message))


class _Bad(ValueError):
    """A malformed field; the message is reported with the line."""


def _required(value: str, column: str) -> str:
    if not value:
        raise _Bad(f"{column} is empty")
    return value


def _decimal(value: str, column: str, *, allow_negative: bool = False) -> Decimal:
    if not _PLAIN_DECIMAL.fullmatch(_required(value, column)):
        raise _Bad(f"{column} is not a decimal number: {value!r}")
    number = Decimal(value)
    if number < 0 and not allow_negative:
        raise _Bad(f"{column} must not be negative: {value!r}")
    if abs(number) >= MAX_RATE:
        raise _Bad(f"{column} is too large: {value!r} (amounts stay below {MAX_RATE:,})")
    if -number.as_tuple().exponent > MAX_RATE_PLACES:  # type: ignore[operator]
        raise _Bad(f"{column} has more than {MAX_RATE_PLACES} decimal places: {value!r}")
    return number


def _duration(value: str, column: str) -> timedelta:
    try:
        return parse_duration(_required(value, column))
    except ValueError as exc:
        raise _Bad(f"{column}: {exc}") from None


def _int_list(value: str, column: str, low: int, high: int) -> frozenset[int]:
    if value in ("", ANY):
        return frozenset()
    numbers: set[int] = set()
    for item in value.split(";"):
        if not _WHOLE.fullmatch(item.strip()) or not low <= int(item) <= high:
            raise _Bad(f"{column} takes *any or {low}..{high} separated by ';', not {value!r}")
        numbers.add(int(item))
    return frozenset(numbers)


def _clock(value: str, column: str) -> timedelta:
    match = _CLOCK.fullmatch(value)
    if not match:
        raise _Bad(f"{column} takes HH:MM:SS, not {value!r}")
    hours, minutes, seconds = (int(part) for part in match.groups())
    if minutes > 59 or seconds > 59 or hours > 24 or (hours == 24 and minutes + seconds):
        raise _Bad(f"{column} is not a time of day: {value!r}")
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _activation_time(value: str, loaded_at: datetime) -> datetime:
    if value in ("", "*any"):
        return datetime.min.replace(tzinfo=UTC)
    if value in ("*asap", "*now"):
        return loaded_at
    try:
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # overflow: an offset past year 1 or year 9999
        raise _Bad(f"ActivationTime is not an RFC 3339 time: {value!r}") from None


def _each(
    reader: _Reader, name: str, columns: tuple[int, ...], parse: Callable[[int, list[str]], None]
) -> None:
    """Run ``parse(line, cells)`` on every data line, collecting problems instead of stopping."""
    for line, cells in reader.rows(name):
        if len(cells) not in columns:
            expected = " or ".join(str(count) for count in columns)
            reader.fail(name, line, f"expected {expected} columns, found {len(cells)}")
            continue
        try:
            parse(line, cells)
        except _Bad as exc:
            reader.fail(name, line, str(exc))


def parse_folder(folder: Path, *, loaded_at: datetime) -> ParsedTariffPlan:
    """Read and cross-check the six files of ``folder``; raise :class:`TariffPlanError`
    listing every problem found, or return the plan."""
    if not folder.is_dir():
        raise TariffPlanError([TariffPlanProblem(str(folder), 0, "not a folder")])
    reader = _Reader(folder, loaded_at)
    prefixes = _read_destinations(reader)
    destination_ids = {dest_id for holders in prefixes.values() for dest_id in holders}
    timings = _read_timings(reader)
    rates = _read_rates(reader)
    destination_rates = _read_destination_rates(reader, rates, destination_ids)
    rating_plans = _read_rating_plans(reader, destination_rates, timings)
    profiles = _read_rating_profiles(reader, rating_plans)
    if reader.problems:
        raise TariffPlanError(reader.problems)
    return ParsedTariffPlan(
        prefixes={key: tuple(ids) for key, ids in prefixes.items()},
        rating_plans={
            plan: {dest: tuple(bindings) for dest, bindings in by_destination.items()}
            for plan, by_destination in rating_plans.items()
        },
        profiles=profiles,
    )


def _read_destinations(reader: _Reader) -> dict[str, list[str]]:
    """Destinations.csv: #Id,Prefix (one prefix a line, or several separated by ';')."""
    prefixes: dict[str, list[str]] = {}

    def destination(line: int, cells: list[str]) -> None:
        dest_id = _required(cells[0], "Id")
        for prefix in _required(cells[1], "Prefix").split(";"):
            key = normalize_number(prefix)
            if not key:
                raise _Bad("Prefix is empty")
            holders = prefixes.setdefault(key, [])
            if dest_id not in holders:
                holders.append(dest_id)

    _each(reader, "Destinations.csv", (2,), destination)
    return prefixes


def _read_timings(reader: _Reader) -> dict[str, Timing]:
    """Timings.csv: #Tag,Years,Months,MonthDays,WeekDays,Time, where Time is a start
    (``08:00:00``; ``*asap`` or empty for midnight) or ``start;end``."""
    timings: dict[str, Timing] = {ANY: ALWAYS}
    lines: dict[str, int] = {}

    def timing(line: int, cells: list[str]) -> None:
        tag = _required(cells[0], "Tag")
        if tag in lines:
            raise _Bad(f"timing {tag} is already defined on line {lines[tag]}")
        week_days = _int_list(cells[4], "WeekDays", 0, 7)
        if 0 in week_days:  # Sunday written as 0, the way Go counts it
            week_days = (week_days - {0}) | {7}
        window = cells[5].split(";")
        if len(window) > 2:
            raise _Bad(f"Time takes a start or start;end, not {cells[5]!r}")
        start = timedelta(0) if window[0] in ("", "*asap", "*now") else _clock(window[0], "Time")
        end = END_OF_DAY
        if len(window) == 2 and window[1]:
            end = _clock(window[1], "Time end")
            if end == END_OF_DAY - timedelta(seconds=1):
                end = END_OF_DAY  # CGRateS writes "until the end of the day" as 23:59:59
            if end <= start:
                raise _Bad(f"Time ends before it starts: {cells[5]!r}")
        timings[tag] = Timing(
            tag=tag,
            years=_int_list(cells[1], "Years", 1, 9999),
            months=_int_list(cells[2], "Months", 1, 12),
            month_days=_int_list(cells[3], "MonthDays", 1, 31),
            week_days=week_days,
            start=start,
            end=end,
        )
        lines[tag] = line

    _each(reader, "Timings.csv", (6,), timing)
    return timings


def _rounding(method: str, decimals: str) -> tuple[str, int]:
    if method not in ROUNDING_METHODS:
        raise _Bad(f"RoundingMethod takes *up, *middle or *down, not {method!r}")
    if not _WHOLE.fullmatch(decimals) or int(decimals) > 20:
        raise _Bad(f"RoundingDecimals takes a whole number 0..20, not {decimals!r}")
    return method, int(decimals)


def _read_rates(reader: _Reader) -> dict[str, Rate | None]:
    """Rates.csv: #Id,ConnectFee,Rate,RateUnit,RateIncrement,GroupIntervalStart and, in the
    old format, RoundingMethod,RoundingDecimals. A rate with a broken line maps to None, so
    that lines referring to it are not reported a second time."""
    groups: dict[str, list[tuple[int, RateGroup]]] = {}
    roundings: dict[str, tuple[str, int]] = {}
    failed: set[str] = set()

    def rate(line: int, cells: list[str]) -> None:
        rate_id = _required(cells[0], "Id")
        try:
            group = RateGroup(
                group_start=_duration(cells[5], "GroupIntervalStart"),
                rate=_decimal(cells[2], "Rate"),
                # CGRateS reads a zero unit or increment as one second
                rate_unit=_duration(cells[3], "RateUnit") or timedelta(seconds=1),
                rate_increment=_duration(cells[4], "RateIncrement") or timedelta(seconds=1),
                connect_fee=_decimal(cells[1], "ConnectFee"),
            )
            if len(cells) == 8:
                roundings[rate_id] = _rounding(cells[6], cells[7])
            if any(other.group_start == group.group_start for _, other in groups.get(rate_id, [])):
                raise _Bad(f"rate {rate_id} has two groups starting at {cells[5]}")
        except _Bad:
            failed.add(rate_id)
            raise
        groups.setdefault(rate_id, []).append((line, group))

    _each(reader, "Rates.csv", (6, 8), rate)
    result: dict[str, Rate | None] = dict.fromkeys(failed)
    for rate_id, lines in groups.items():
        if rate_id in failed:
            continue
        ordered = tuple(sorted((group for _, group in lines), key=lambda g: g.group_start))
        if ordered[0].group_start != timedelta(0):
            reader.fail("Rates.csv", lines[0][0], f"rate {rate_id} has no group starting at 0s")
            result[rate_id] = None
            continue
        result[rate_id] = Rate(rate_id, ordered, roundings.get(rate_id))
    return result


def _read_destination_rates(
    reader: _Reader, rates: dict[str, Rate | None], destination_ids: set[str]
) -> dict[str, list[DestinationRate] | None]:
    """DestinationRates.csv: #Id,DestinationId,RatesTag,RoundingMethod,RoundingDecimals,
    MaxCost,MaxCostStrategy; older files stop after RatesTag (rounding then comes from
    Rates.csv) or after RoundingDecimals. Several lines may share one Id."""
    result: dict[str, list[DestinationRate] | None] = {}

    def destination_rate(line: int, cells: list[str]) -> None:
        dr_id = _required(cells[0], "Id")
        try:
            dest_id = _required(cells[1], "DestinationId")
            if dest_id != ANY and dest_id not in destination_ids:
                raise _Bad(f"unknown DestinationId {dest_id!r} (not in Destinations.csv)")
            rate_id = _required(cells[2], "RatesTag")
            if rate_id not in rates:
                raise _Bad(f"unknown RatesTag {rate_id!r} (not in Rates.csv)")
            rate = rates[rate_id]
            if len(cells) >= 5:
                rounding = _rounding(cells[3], cells[4])
            elif rate is not None and rate.rounding is not None:
                rounding = rate.rounding
            elif rate is not None:
                raise _Bad(f"no RoundingMethod/RoundingDecimals here nor on rate {rate_id}")
            max_cost = _decimal(cells[5] or "0", "MaxCost") if len(cells) >= 6 else Decimal(0)
            strategy = cells[6] if len(cells) == 7 else ""
            if strategy and strategy not in MAX_COST_STRATEGIES:
                raise _Bad(f"MaxCostStrategy takes *free or *disconnect, not {strategy!r}")
            if max_cost > 0 and not strategy:
                raise _Bad("MaxCost is set but MaxCostStrategy is empty (*free or *disconnect)")
            if rate is None:  # already reported in Rates.csv
                result[dr_id] = None
                return
            bucket = result.setdefault(dr_id, [])
            if bucket is None:
                return
            if any(other.destination_id == dest_id for other in bucket):
                raise _Bad(f"destination rate {dr_id} prices {dest_id} twice")
            bucket.append(
                DestinationRate(
                    id=dr_id,
                    destination_id=dest_id,
                    rate=rate,
                    rounding_method=rounding[0],
                    rounding_decimals=rounding[1],
                    max_cost=max_cost,
                    max_cost_strategy=strategy if max_cost > 0 else "",
                )
            )
        except _Bad:
            result[dr_id] = None
            raise

    _each(reader, "DestinationRates.csv", (3, 5, 6, 7), destination_rate)
    return result


def _read_rating_plans(
    reader: _Reader,
    destination_rates: dict[str, list[DestinationRate] | None],
    timings: dict[str, Timing],
) -> dict[str, dict[str, list[Binding]]]:
    """RatingPlans.csv: #Id,DestinationRatesId,TimingTag,Weight."""
    plans: dict[str, dict[str, list[Binding]]] = {}
    order = 0

    def binding(line: int, cells: list[str]) -> None:
        nonlocal order
        plan_id = _required(cells[0], "Id")
        by_destination = plans.setdefault(plan_id, {})
        dr_id = _required(cells[1], "DestinationRatesId")
        if dr_id not in destination_rates:
            raise _Bad(f"unknown DestinationRatesId {dr_id!r} (not in DestinationRates.csv)")
        tag = _required(cells[2], "TimingTag")
        if tag not in timings:
            raise _Bad(f"unknown TimingTag {tag!r} (not in Timings.csv, nor *any)")
        weight = _decimal(cells[3], "Weight", allow_negative=True)
        for destination_rate in destination_rates[dr_id] or ():
            order += 1
            by_destination.setdefault(destination_rate.destination_id, []).append(
                Binding(destination_rate, timings[tag], weight, order)
            )

    _each(reader, "RatingPlans.csv", (4,), binding)
    return plans


def _read_rating_profiles(
    reader: _Reader, rating_plans: dict[str, dict[str, list[Binding]]]
) -> dict[tuple[str, str, str], tuple[Activation, ...]]:
    """RatingProfiles.csv: #Tenant,Category,Subject,ActivationTime,RatingPlanId,
    RatesFallbackSubject; older files add a Direction (first, or third in the oldest) and a
    trailing CdrStatQueueIds. Only outbound (``*out``) lines of those are kept."""
    activations: dict[tuple[str, str, str], list[Activation]] = {}

    def profile(line: int, cells: list[str]) -> None:
        if len(cells) == 6:
            tenant, category, subject, when, plan_id, fallback = cells
            direction = "*out"
        elif cells[0] in DIRECTIONS:
            direction, tenant, category, subject, when, plan_id, fallback = cells[:7]
        elif len(cells) == 7 and cells[2] in DIRECTIONS:
            tenant, category, direction, subject, when, plan_id, fallback = cells
        else:
            raise _Bad("7 or 8 columns need a Direction (*out or *in) first")
        if direction != "*out":
            return  # calls rated here are outbound; *in lines of old files are skipped
        key = (_required(tenant, "Tenant"), _required(category, "Category"))
        subject = _required(subject, "Subject")
        if _required(plan_id, "RatingPlanId") not in rating_plans:
            raise _Bad(f"unknown RatingPlanId {plan_id!r} (not in RatingPlans.csv)")
        activation = Activation(
            activation_time=_activation_time(when, reader.loaded_at),
            rating_plan_id=plan_id,
            fallback_subjects=tuple(item.strip() for item in fallback.split(";") if item.strip()),
        )
        existing = activations.setdefault((*key, subject), [])
        if any(other.activation_time == activation.activation_time for other in existing):
            raise _Bad(f"{'/'.join((*key, subject))} is activated twice at {when or 'the start'}")
        existing.append(activation)

    _each(reader, "RatingProfiles.csv", (6, 7, 8), profile)
    return {
        key: tuple(sorted(items, key=lambda item: item.activation_time))
        for key, items in activations.items()
    }
