"""Usage reports (R-50..R-54): PSTN calls, messages and minute pools, as pages or exports.

Reports read the tables through their own SQLAlchemy Core queries, never through domain
objects or repositories: a report is a projection of rows, and an export of a million rows
must stream. Rows are fetched ``yield_per`` at a time (a server-side cursor on PostgreSQL, a
lazily stepped statement on SQLite) and written out chunk by chunk, so memory stays flat
whatever the range holds.

A report row is a tuple of display values, one per column: text, whole numbers, money as
exact decimal strings and times as UTC ISO 8601 strings. JSON and CSV show them as they are;
the Excel writer turns money into numbers and times into dates by each column's kind.

Ranges are whole UTC days, inclusive at both ends, by call start (message sent time), and
reach at most one year back. Where the organization's billing country requires it (the
``MASKED_DIGITS`` table), the other party's number is masked. Our choice: masking is on by
default there; the operator may switch it on or off for an organization (its
``mask_numbers`` setting, ``PATCH /v1/orgs/{org}``), or for one request.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any, Final, Literal, TypeVar

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from commcredits.adapters.clock import Clock
from commcredits.domain.countries import country_name
from commcredits.domain.errors import InvalidRequest, RuleViolation
from commcredits.domain.report_line import FIELD as _FIELD
from commcredits.domain.report_line import ZERO_TEXT, iso_time, money_text, usage_id
from commcredits.domain.report_line import places as _places
from commcredits.services.calls import Calls
from commcredits.services.orgs import get_org, mask_numbers_setting
from commcredits.services.xlsx_stream import CellKind, XlsxColumn, excel_serial, workbook_chunks
from commcredits.store.database import Store
from commcredits.store.tables import calls, sms_messages

ReportName = Literal["pstn", "sms", "pools"]
ExportFormat = Literal["csv", "xlsx", "zip"]
ColumnKind = Literal["text", "int", "money", "time", "percent"]

REPORTS: Final[tuple[str, ...]] = ("pstn", "sms", "pools")
FORMATS: Final[tuple[str, ...]] = ("csv", "xlsx", "zip")
RANGE_DAYS: Final = (7, 28)
DEFAULT_DAYS: Final = 28
FETCH_ROWS: Final = 2000
"""Rows fetched from the database at a time, and rows per written chunk."""

CALL_TYPES: Final = frozenset(
    {
        "user_in",
        "user_out",
        "user_out_transfer",
        "user_out_forwarding",
        "conf_in",
        "conf_out",
        "ucap_in",
        "ucap_out",
        "emergency_out",
        "unassigned_in",
    }
)
"""R-51."""

SMS_DIRECTIONS: Final = frozenset({"outbound", "inbound"})

MASKED_DIGITS: Final[dict[str, int]] = {
    **dict.fromkeys(["BE", "DE", "DK", "ES", "FI", "IT", "NL", "NO", "SE"], 3),
    **dict.fromkeys(["CH", "FR"], 4),
}
"""Billing countries whose rules require masking the other party's number: digits hidden."""

OTHER_MASKED_DIGITS: Final = 4
"""Our choice: digits hidden where the operator switched masking on for an organization
billed in a country without such a rule."""

XLSX_SHEET_ROWS: Final = 1_048_576
"""Excel's rows per sheet: a header and 1,048,575 data rows; more continue on a new sheet."""

CONTENT_TYPES: Final[dict[str, str]] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "zip": "application/zip",
}


@dataclass(frozen=True, slots=True)
class ReportKind:
    name: str
    title: str
    """The Excel sheet's name."""
    stem: str
    """File names: ``<stem>.<UTC date>.<ext>``."""
    columns: tuple[str, ...]
    kinds: tuple[ColumnKind, ...]


PSTN = ReportKind(
    "pstn",
    "PSTN usage",
    "PSTN.calls",
    (
        "UsageId",
        "Call ID",
        "Conference ID",
        "User Location",
        "user ObjectId",
        "UPN",
        "User Display Name",
        "Caller ID",
        "Call Type",
        "Call Direction",
        "Number Type",
        "Domestic/International",
        "Destination Dialed",
        "Destination Number",
        "External Country",
        "Start Time",
        "End Time",
        "Duration Seconds",
        "Connection Fee",
        "Charge",
        "Currency",
        "Capability",
    ),
    ("text",) * 15 + ("time", "time", "int", "money", "money", "text", "text"),
)
"""R-50, in order and with these header names."""

SMS = ReportKind(
    "sms",
    "SMS usage",
    "SMS.messages",
    (
        "UsageId",
        "Message ID",
        "Sent Time",
        "UPN",
        "User Display Name",
        "Direction",
        "Source Number",
        "Destination Number",
        "Units",
        "Charge",
        "Currency",
        "Capability",
        "Source Country",
        "Destination Country",
    ),
    ("text", "text", "time") + ("text",) * 5 + ("int", "money") + ("text",) * 4,
)
"""R-53."""

POOLS = ReportKind(
    "pools",
    "Minute pools",
    "Pools.minutes",
    (
        "Month",
        "Country",
        "Capability",
        "Description",
        "Pool Kind",
        "user ObjectId",
        "Unit",
        "Total",
        "Used",
        "Available",
        "Percent Used",
    ),
    ("text",) * 7 + ("int", "int", "int", "percent"),
)
"""R-54."""

KINDS: Final[dict[str, ReportKind]] = {kind.name: kind for kind in (PSTN, SMS, POOLS)}


# -- ranges, filters, the request --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DateRange:
    """Whole UTC days, both ends included."""

    first_day: date
    last_day: date
    days: int | None = None
    """7 or 28 when asked as "the last N days"."""

    @property
    def start(self) -> datetime:
        return datetime(self.first_day.year, self.first_day.month, self.first_day.day, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """Exclusive: midnight UTC after the last day."""
        last = self.last_day + timedelta(days=1)
        return datetime(last.year, last.month, last.day, tzinfo=UTC)

    def months(self) -> list[str]:
        """Each calendar month (``YYYY-MM``) the range touches, oldest first."""
        months = []
        year, month = self.first_day.year, self.first_day.month
        while (year, month) <= (self.last_day.year, self.last_day.month):
            months.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return months


def one_year_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def _day(value: date | str, name: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest(
            f"{name} is a date, YYYY-MM-DD (UTC)", code="invalid_date", field=name
        ) from None


def parse_range(
    today: date,
    *,
    days: int | None = None,
    from_: date | str | None = None,
    to: date | str | None = None,
    default_days: int | None = DEFAULT_DAYS,
) -> DateRange:
    """The report's range (R-52): the last ``days`` (7 or 28) UTC days including today, or
    ``from``..``to`` inclusive (``to`` defaults to today); never more than a year back."""
    if days is not None and (from_ is not None or to is not None):
        raise InvalidRequest(
            "ask for days or for from/to, not both", code="conflicting_range", field="days"
        )
    if from_ is None and to is not None:
        raise InvalidRequest("to needs a from", code="invalid_range", field="from")
    if from_ is None:
        days = days if days is not None else default_days
        if days is None:
            return DateRange(today.replace(day=1), today)
        if days not in RANGE_DAYS:
            raise InvalidRequest("days is 7 or 28", code="invalid_value", field="days")
        return DateRange(today - timedelta(days=days - 1), today, days)
    first = _day(from_, "from")
    last = _day(to, "to") if to is not None else today
    if first > last:
        raise RuleViolation("from is after to", code="invalid_range", field="from")
    earliest = one_year_before(today)
    if first < earliest:
        raise RuleViolation(
            f"reports reach one year back at most: from must be {earliest.isoformat()} or later",
            code="range_too_old",
            field="from",
        )
    return DateRange(first, last)


@dataclass(frozen=True, slots=True)
class ReportFilters:
    user: str | None = None
    """A UPN (case-insensitive)."""
    call_type: str | None = None
    """A call type of R-51; for the SMS report, the direction (outbound or inbound)."""
    capability: str | None = None


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """A checked request for one report: what every page and export of it reads."""

    kind: ReportKind
    org_id: str
    country: str
    """The organization's billing country."""
    range: DateRange
    filters: ReportFilters
    masking: bool
    generated_at: datetime
    currency: str | None = None
    """The organization's billing currency: the CSV export formats money in the database for
    rows in it (any other row is shaped in Python)."""

    def parameters(self) -> dict[str, Any]:
        """What was asked, as written to ``parameters.json`` in a zip export."""
        return {
            "report": self.kind.name,
            "organization": self.org_id,
            "from": self.range.first_day.isoformat(),
            "to": self.range.last_day.isoformat(),
            "days": self.range.days,
            "time_zone": "UTC",
            "filters": {
                "user": self.filters.user,
                "call_type": self.filters.call_type,
                "capability": self.filters.capability,
            },
            "masking": self.masking,
            "masked_digits": self.masked_digits,
            "generated_at": iso_time(self.generated_at),
        }

    @property
    def masked_digits(self) -> int:
        """Digits hidden at the end of the other party's number (0: none)."""
        return MASKED_DIGITS.get(self.country, OTHER_MASKED_DIGITS) if self.masking else 0

    def file_name(self, ext: str) -> str:
        return f"{self.kind.stem}.{self.generated_at.date().isoformat()}.{ext}"


def _filters(
    name: str, user: str | None, call_type: str | None, capability: str | None
) -> ReportFilters:
    user = user.strip().lower() or None if user is not None else None
    call_type = call_type.strip() or None if call_type is not None else None
    capability = capability.strip().upper() or None if capability is not None else None
    if name == "pools" and (user or call_type):
        raise InvalidRequest(
            "the pools report filters by capability only",
            code="invalid_filter",
            field="user" if user else "call_type",
        )
    allowed = SMS_DIRECTIONS if name == "sms" else CALL_TYPES
    if call_type is not None and call_type not in allowed:
        raise InvalidRequest(
            f"call_type is one of {', '.join(sorted(allowed))}",
            code="invalid_value",
            field="call_type",
        )
    return ReportFilters(user, call_type, capability)


# -- values as shown ------------------------------------------------------------------------


def mask_number(number: str, country: str) -> str:
    """The number as a report shows it to an organization billed in ``country``: its last 3
    or 4 digits replaced by ``*`` where that country requires it. Numbers with no more digits
    than that (short codes such as 112) identify nobody and are shown as they are."""
    digits = MASKED_DIGITS.get(country)
    return _mask(number, digits) if digits else number


def masking_default(country: str) -> bool:
    """Our choice: masking is on wherever the billing country requires it, unless the
    operator switched it for the organization."""
    return country in MASKED_DIGITS


def _mask(number: str, digits: int) -> str:
    if len(number) > digits + 1 and number[-digits:].isdigit():
        return number[:-digits] + "*" * digits
    positions = [i for i, ch in enumerate(number) if ch.isdigit()]
    if len(positions) <= digits:
        return number
    chars = list(number)
    for i in positions[-digits:]:
        chars[i] = "*"
    return "".join(chars)


def _instant(value: datetime | str) -> datetime:
    """A time read raw (see :func:`iso_time`) as an aware UTC datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# -- queries ---------------------------------------------------------------------------------


def _raw(column: Any) -> Any:
    """The column without its result processing: times come back as the driver gives them
    (text on SQLite) and are formatted by :func:`iso_time` in one step, which is most of
    what keeps a million-row export fast."""
    return type_coerce(column, String).label(column.name)


_PSTN_FIELDS = (
    calls.c.call_id,
    calls.c.conference_id,
    calls.c.user_location,
    calls.c.user_id,
    calls.c.upn,
    calls.c.display_name,
    calls.c.from_number,
    calls.c.call_type,
    calls.c.number_type,
    type_coerce(calls.c.domestic, Integer).label("domestic"),
    calls.c.to_number,
    calls.c.external_country,
    _raw(calls.c.start_time),
    _raw(calls.c.end_time),
    calls.c.duration_seconds,
    calls.c.connection_fee_micros,
    calls.c.charge_micros,
    calls.c.currency,
    calls.c.capability,
)

_SMS_FIELDS = (
    sms_messages.c.sms_id,
    _raw(sms_messages.c.sent_at),
    sms_messages.c.upn,
    sms_messages.c.display_name,
    sms_messages.c.direction,
    sms_messages.c.from_number,
    sms_messages.c.to_number,
    sms_messages.c.units,
    sms_messages.c.charge_micros,
    sms_messages.c.currency,
    sms_messages.c.capability,
    sms_messages.c.from_country,
    sms_messages.c.to_country,
)

Cursor = tuple[datetime, str]


def _pstn_query(
    request: ReportRequest, after: Cursor | None, fields: Sequence[Any] = _PSTN_FIELDS
) -> Select[Any]:
    """Only ended calls (R-50); by start time, then call id, so pages never skip or repeat."""
    c = calls.c
    query = select(*fields).where(
        c.org_id == request.org_id,
        c.status == "ended",
        c.start_time >= request.range.start,
        c.start_time < request.range.end,
    )
    f = request.filters
    if f.user:
        query = query.where(c.upn == f.user)
    if f.call_type:
        query = query.where(c.call_type == f.call_type)
    if f.capability:
        query = query.where(c.capability == f.capability)
    if after is not None:
        query = query.where(
            or_(c.start_time > after[0], and_(c.start_time == after[0], c.call_id > after[1]))
        )
    return query.order_by(c.start_time, c.call_id)


def _sms_query(request: ReportRequest, after: Cursor | None) -> Select[Any]:
    """Messages that were sent (allowed), by sent time, then message id."""
    c = sms_messages.c
    query = select(*_SMS_FIELDS).where(
        c.org_id == request.org_id,
        c.decision == "allow",
        c.sent_at >= request.range.start,
        c.sent_at < request.range.end,
    )
    f = request.filters
    if f.user:
        query = query.where(c.upn == f.user)
    if f.call_type:
        query = query.where(c.direction == f.call_type)
    if f.capability:
        query = query.where(c.capability == f.capability)
    if after is not None:
        query = query.where(
            or_(c.sent_at > after[0], and_(c.sent_at == after[0], c.sms_id > after[1]))
        )
    return query.order_by(c.sent_at, c.sms_id)


Row = tuple[Any, ...]


def _pstn_rows(request: ReportRequest, raw: Iterable[Sequence[Any]]) -> list[Row]:
    """Database rows of calls as R-50 rows. Caller ID is the from number, Destination Number
    the to number; the other party (from for inbound call types, to otherwise) is masked."""
    org_id = request.org_id
    digits = request.masked_digits
    names: dict[str | None, str | None] = {None: None}
    # Keys 1 and 0 are the same as True and False: SQLite's raw booleans find them too.
    domestic_label = {True: "Domestic", False: "International", None: None}
    time_text, money, blake2b = iso_time, money_text, hashlib.blake2b
    zero = ZERO_TEXT
    rows: list[Row] = []
    add = rows.append
    for (
        call_id,
        conference_id,
        location,
        user_id,
        upn,
        display_name,
        from_number,
        call_type,
        number_type,
        domestic,
        to_number,
        external,
        start,
        end,
        duration,
        fee,
        charge,
        currency,
        capability,
    ) in raw:
        inbound = call_type.endswith("_in")
        if digits:
            if inbound:
                from_number = _mask(from_number, digits)
            else:
                to_number = _mask(to_number, digits)
        if external not in names:
            names[external] = country_name(external)
        digest = blake2b(f"{org_id}\x00{call_id}".encode(), digest_size=16).hexdigest()
        add(
            (
                f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}",
                call_id,
                conference_id,
                location,
                user_id,
                upn,
                display_name,
                from_number,
                call_type,
                "Inbound" if inbound else "Outbound",
                number_type,
                domestic_label[domestic],
                names[external],
                to_number,
                external,
                f"{start[:10]}T{start[11:19]}Z" if start.__class__ is str else time_text(start),
                f"{end[:10]}T{end[11:19]}Z" if end.__class__ is str else time_text(end),
                duration,
                money(fee, currency) if fee else zero[currency],
                money(charge, currency) if charge else zero[currency],
                currency,
                capability,
            )
        )
    return rows


def _sms_rows(request: ReportRequest, raw: Iterable[Sequence[Any]]) -> list[Row]:
    org_id = request.org_id
    rows: list[Row] = []
    add = rows.append
    digits = request.masked_digits
    for (
        sms_id,
        sent_at,
        upn,
        display_name,
        direction,
        from_number,
        to_number,
        units,
        charge,
        currency,
        capability,
        from_country,
        to_country,
    ) in raw:
        if digits:
            if direction == "inbound":
                from_number = _mask(from_number, digits)
            else:
                to_number = _mask(to_number, digits)
        add(
            (
                usage_id(org_id, sms_id),
                sms_id,
                iso_time(sent_at),
                upn,
                display_name,
                direction.title(),
                from_number,
                to_number,
                units,
                money_text(charge, currency),
                currency,
                capability,
                from_country,
                to_country,
            )
        )
    return rows


# -- the CSV export's fast path ------------------------------------------------------------
#
# Most of a million-row export's time went into turning 19 columns per row into Python
# objects and back into text. The PSTN export asks the database for each row's CSV line
# instead, all but its UsageId: text fields as stored, times and money formatted by SQL
# (money by integer arithmetic on the micro-units, digit for digit what money_text gives),
# the other party's number masked, the country named. On SQLite one printf() writes the line
# (a concatenation per field costs more than the rest of the row's work), read straight from
# the driver's cursor. Python adds what the database cannot compute, the UsageId (a hash),
# and checks a whole batch at once: fields are joined by the ASCII unit separator, so a few
# scans of the batch's bytes tell whether any field needs RFC 4180 quoting. A clean batch
# becomes CSV by one replace; a batch with a comma, quote or line break in a field is written
# row by row by csv.writer, as before. A field the SQL cannot format exactly (money in another
# currency, a number to mask whose last digits are not at its end) comes back as the group
# separator, and its row is shaped in Python like a page row. The bytes are the same either
# way (but for a NUL character inside a text value: SQLite's printf ends a value there, and
# PostgreSQL cannot store one at all).

_SHAPE: Final = "\x1d"
"""Written by the query where it cannot format a field exactly: the row is shaped in Python
(a field that holds this character itself is too, which gives the same bytes)."""
_CSV_SPECIAL: Final = (b",", b'"', _SHAPE.encode())
"""What makes csv.writer (QUOTE_MINIMAL, CRLF line ends) quote a field, but CR and LF (which
end each line, so they are counted: :data:`_LINE_MARKS`), and the mark of a row to shape."""
_LINE_MARKS: Final = b"\x1f\r\n"
_FIELD_BYTE: Final = _FIELD.encode()


class _Matches(FunctionElement[bool]):
    """``text`` matches a character-class pattern: GLOB on SQLite, ``~`` on PostgreSQL."""

    type = Boolean()
    name = "matches"
    inherit_cache = True


@compiles(_Matches, "sqlite")
def _matches_sqlite(element: _Matches, compiler: SQLCompiler, **kw: Any) -> str:
    text, glob, _ = list(element.clauses)
    return f"({compiler.process(text, **kw)} GLOB {compiler.process(glob, **kw)})"


@compiles(_Matches, "postgresql")
def _matches_postgresql(element: _Matches, compiler: SQLCompiler, **kw: Any) -> str:
    text, _, regex = list(element.clauses)
    return f"({compiler.process(text, **kw)} ~ {compiler.process(regex, **kw)})"


def _matches(text: Any, glob: str, regex: str) -> ColumnElement[bool]:
    return _Matches(text, literal(glob, String), literal(regex, String))


class _UtcText(FunctionElement[str]):
    """A UTC instant as ``2026-01-15T08:00:00Z`` (what :func:`iso_time` gives)."""

    type = String()
    name = "utc_text"
    inherit_cache = True


@compiles(_UtcText, "sqlite")
def _utc_text_sqlite(element: _UtcText, compiler: SQLCompiler, **kw: Any) -> str:
    # Stored as naive UTC text, "2026-01-15 08:00:00.000000".
    (value,) = list(element.clauses)
    return f"(replace(substr({compiler.process(value, **kw)}, 1, 19), ' ', 'T') || 'Z')"


@compiles(_UtcText, "postgresql")
def _utc_text_postgresql(element: _UtcText, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = list(element.clauses)
    return (
        f"to_char({compiler.process(value, **kw)} AT TIME ZONE 'UTC', "
        '\'YYYY-MM-DD"T"HH24:MI:SS"Z"\')'
    )


class _Line(FunctionElement[str]):
    """A row's CSV line but for the UsageId: each value as text after the unit separator
    (NULL as empty), then CRLF. One ``printf`` on SQLite (a concatenation per field costs more
    than the rest of the row's work), ``concat`` elsewhere. On SQLite a time is cut to its
    ISO 8601 form by the format itself, from the stored text ("2026-01-15 08:00:00.000000"):
    the date, "T", the time to the second, "Z" (see :class:`_UtcText`)."""

    type = String()
    name = "csv_line"
    inherit_cache = True


@compiles(_Line, "sqlite")
def _line_sqlite(element: _Line, compiler: SQLCompiler, **kw: Any) -> str:
    formats: list[str] = []
    args: list[str] = []
    for part in element.clauses:
        if not isinstance(part, _UtcText):
            formats.append("%s")
            args.append(compiler.process(part, **kw))
            continue
        inner = next(iter(part.clauses))
        value = compiler.process(inner, **kw)
        if getattr(inner, "nullable", True) is False:
            formats.append("%.10sT%.8sZ")
            args += [value, f"substr({value}, 12)"]
        else:
            # NULL prints as nothing; so must the "T" and the "Z" then.
            formats.append("%.10s%s%.8s%s")
            args += [
                value,
                f"CASE WHEN {value} IS NULL THEN '' ELSE 'T' END",
                f"substr({value}, 12)",
                f"CASE WHEN {value} IS NULL THEN '' ELSE 'Z' END",
            ]
    pattern = _FIELD + _FIELD.join(formats) + "\r\n"
    return f"printf('{pattern}', {', '.join(args)})"


@compiles(_Line)
def _line_default(element: _Line, compiler: SQLCompiler, **kw: Any) -> str:
    args = [compiler.process(part, **kw) for part in element.clauses]
    separated = ", ".join(f"'{_FIELD}', {arg}" for arg in args)
    return f"concat({separated}, '\r\n')"


class _CountryName(FunctionElement[str]):
    """:func:`country_name` in SQL: a search tree of CASE expressions over the known codes
    (a few comparisons a row); an unknown code is shown as it is, NULL as empty."""

    type = String()
    name = "country_name"
    inherit_cache = True


@cache
def _known_countries() -> tuple[tuple[str, str], ...]:
    letters = [chr(n) for n in range(ord("A"), ord("Z") + 1)]
    codes = (a + b for a in letters for b in letters)
    return tuple((code, name) for code in codes if (name := country_name(code)) != code)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _country_case(code: str, countries: Sequence[tuple[str, str]], collate: str) -> str:
    if len(countries) <= 4:
        found = " ".join(f"WHEN {_sql_text(c)} THEN {_sql_text(n)}" for c, n in countries)
        return f"CASE {code} {found} ELSE {code} END"
    middle = len(countries) // 2
    below = _country_case(code, countries[:middle], collate)
    above = _country_case(code, countries[middle:], collate)
    pivot = _sql_text(countries[middle][0])
    return f"CASE WHEN {code}{collate} < {pivot} THEN {below} ELSE {above} END"


@compiles(_CountryName, "sqlite")
def _country_name_sqlite(element: _CountryName, compiler: SQLCompiler, **kw: Any) -> str:
    code = compiler.process(next(iter(element.clauses)), **kw)
    return _country_case(code, _known_countries(), "")


@compiles(_CountryName)
def _country_name_default(element: _CountryName, compiler: SQLCompiler, **kw: Any) -> str:
    # Byte order, as the tree was built: a collation could order the codes otherwise.
    code = compiler.process(next(iter(element.clauses)), **kw)
    return _country_case(code, _known_countries(), ' COLLATE "C"')


def _money_sql(micros: Any, currency: str) -> ColumnElement[str] | None:
    """Micro-units as :func:`money_text` writes them, by integer arithmetic in the database;
    ``None`` where the currency's places are beyond micro-units."""
    places = _places(currency)[0]
    if places > 6:
        return None

    def positive(amount: Any) -> ColumnElement[str]:
        # Decimals shown: the currency's places, more while digits remain below them.
        shown: Any = (
            case(*((amount % 10 ** (6 - p) == 0, p) for p in range(places, 6)), else_=6)
            if places < 6
            else 6
        )
        return (
            cast(amount // 1_000_000, String)
            .concat(".")
            .concat(func.substr(cast(amount % 1_000_000 + 1_000_000, String), 2, shown))
        )

    return case(
        (micros == 0, money_text(0, currency)),
        (micros > 0, positive(micros)),
        else_=literal("-", String).concat(positive(-micros)),
    )


def _masked_sql(number: Any, digits: int) -> ColumnElement[str]:
    """:func:`_mask` where the database can do it exactly: the last ``digits`` characters
    are ASCII digits, or the number is printable ASCII without any digit (shown as it is).
    Anything else is the mark of a row to shape in Python."""
    length = func.length(number)
    last_are_digits = _matches(
        func.substr(number, length - (digits - 1)), "[0-9]" * digits, f"^[0-9]{{{digits}}}$"
    )
    no_digits = and_(~_matches(number, "*[0-9]*", "[0-9]"), ~_matches(number, "*[^ -~]*", "[^ -~]"))
    return case(
        (
            and_(length > digits + 1, last_are_digits),
            func.substr(number, 1, length - digits).concat("*" * digits),
        ),
        (no_digits, number),
        else_=literal(_SHAPE, String),
    )


def _pstn_csv_fields(request: ReportRequest) -> tuple[Any, ...] | None:
    """The columns of the fast path: the call id and the row's CSV line after its UsageId
    (see :class:`_Line`); ``None`` when it cannot serve this request."""
    if request.currency is None:
        return None
    fee, charge = (
        _money_sql(calls.c.connection_fee_micros, request.currency),
        _money_sql(calls.c.charge_micros, request.currency),
    )
    if fee is None or charge is None:
        return None
    c = calls.c
    inbound = _matches(c.call_type, "*_in", "_in$")
    caller: Any = c.from_number
    destination: Any = c.to_number
    digits = request.masked_digits
    if digits:
        caller = case((inbound, _masked_sql(c.from_number, digits)), else_=c.from_number)
        destination = case((inbound, c.to_number), else_=_masked_sql(c.to_number, digits))
    line: Any = _Line(
        c.call_id,
        c.conference_id,
        c.user_location,
        c.user_id,
        c.upn,
        c.display_name,
        caller,
        c.call_type,
        case((inbound, "Inbound"), else_="Outbound"),
        c.number_type,
        case(
            (c.domestic.is_(True), "Domestic"),
            (c.domestic.is_(False), "International"),
            else_="",
        ),
        _CountryName(c.external_country),
        destination,
        c.external_country,
        _UtcText(c.start_time),
        _UtcText(c.end_time),
        c.duration_seconds,
        fee,
        charge,
        c.currency,
        c.capability,
    )
    # The line stored when the call ended (UsageId first), masked here when the request asks;
    # calls ended before lines were stored have none and get the line formatted above.
    stored: Any = c.report_line
    if digits:
        stored = case(
            (
                c.report_mask_at.is_not(None),
                func.substr(c.report_line, 1, c.report_mask_at - digits)
                .concat("*" * digits)
                .concat(func.substr(c.report_line, c.report_mask_at + 1)),
            ),
            else_=literal(_SHAPE, String),
        )
    # Another currency than the organization's: shaped in Python.
    line = case(
        (c.currency != request.currency, literal(_SHAPE, String)),
        (c.report_line.is_not(None), stored),
        else_=line,
    )
    return c.call_id, line.label("line")


def _driver_batches(
    conn: Connection, query: Select[Any], size: int
) -> Iterator[Sequence[Sequence[Any]]]:
    """The query's rows as the driver returns them, ``size`` at a time. On SQLite straight
    from the driver's cursor (it steps the statement as rows are fetched, so memory stays
    flat), skipping the result rows SQLAlchemy would build around each one: the fast path
    only selects text and integers, which need no conversion. Elsewhere ``yield_per`` (a
    server-side cursor on PostgreSQL)."""
    if conn.dialect.name == "sqlite" and not conn.get_execution_options().get("stream_results"):
        result = conn.execute(query)
        try:
            cursor = result.cursor
            while rows := cursor.fetchmany(size):
                yield rows
        finally:
            result.close()
        return
    yield from conn.execution_options(yield_per=size).execute(query).partitions()


def _csv_rows(rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


# -- the use cases ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    request: ReportRequest
    rows: list[tuple[Any, ...]]
    next_cursor: str | None

    def as_json(self) -> dict[str, Any]:
        columns = self.request.kind.columns
        return {
            "report": self.request.kind.name,
            "parameters": self.request.parameters(),
            "columns": list(columns),
            "rows": [dict(zip(columns, row, strict=True)) for row in self.rows],
            "next_cursor": self.next_cursor,
        }


@dataclass(frozen=True, slots=True)
class Export:
    file_name: str
    content_type: str
    chunks: Iterator[bytes] = field(repr=False)


def _encode_cursor(value: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> list[Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        value = None
    if not isinstance(value, list):
        raise InvalidRequest("not a cursor of this report", code="invalid_cursor", field="cursor")
    return value


def _keyset(cursor: str) -> Cursor:
    value = _decode_cursor(cursor)
    try:
        at, record_id = value
        return datetime.fromisoformat(at).astimezone(UTC), str(record_id)
    except (TypeError, ValueError):
        raise InvalidRequest(
            "not a cursor of this report", code="invalid_cursor", field="cursor"
        ) from None


class Reports:
    """The reports of R-50..R-54 for one store."""

    def __init__(self, store: Store, clock: Clock, calls: Calls, *, fetch_rows: int = FETCH_ROWS):
        self.store = store
        self.clock = clock
        self.calls = calls
        self.fetch_rows = fetch_rows

    def request(
        self,
        report: str,
        org_id: str,
        *,
        days: int | None = None,
        from_: date | str | None = None,
        to: date | str | None = None,
        user: str | None = None,
        call_type: str | None = None,
        capability: str | None = None,
        masking: bool | None = None,
    ) -> ReportRequest:
        """Check what was asked, before anything is streamed: a refusal is a clean error."""
        kind = KINDS.get(report)
        if kind is None:
            raise InvalidRequest(
                f"the reports are {', '.join(REPORTS)}", code="invalid_value", field="report"
            )
        now = self.clock.now().astimezone(UTC)
        # The pools report is of the current month unless a range is asked for.
        default_days = None if kind is POOLS else DEFAULT_DAYS
        date_range = parse_range(
            now.date(), days=days, from_=from_, to=to, default_days=default_days
        )
        filters = _filters(kind.name, user, call_type, capability)
        with self.store.unit_of_work(read_only=True) as uow:
            org = get_org(uow, org_id)
            setting = mask_numbers_setting(uow, org.id)
        if masking is None:
            masking = masking_default(org.country) if setting is None else setting
        return ReportRequest(
            kind=kind,
            org_id=org.id,
            country=org.country,
            range=date_range,
            filters=filters,
            masking=masking,
            generated_at=now,
            currency=org.currency,
        )

    # -- rows ---------------------------------------------------------------------------------

    def _query(self, request: ReportRequest, after: Cursor | None) -> Select[Any]:
        return _pstn_query(request, after) if request.kind is PSTN else _sms_query(request, after)

    def _shape(self, request: ReportRequest, raw: Iterable[Sequence[Any]]) -> list[Row]:
        return _pstn_rows(request, raw) if request.kind is PSTN else _sms_rows(request, raw)

    def batches(self, request: ReportRequest) -> Generator[list[Row], None, None]:
        """Every row of the report, in order, in batches of up to ``fetch_rows``: one read
        transaction, ``yield_per`` rows at a time, never the whole range in memory."""
        if request.kind is POOLS:
            yield self._pool_rows(request)
            return
        with self.store.unit_of_work(read_only=True) as uow:
            conn = uow.conn.execution_options(yield_per=self.fetch_rows)
            result = conn.execute(self._query(request, None))
            for partition in result.partitions():
                yield self._shape(request, partition)

    def rows(self, request: ReportRequest) -> Iterator[Row]:
        """Every row of the report, in order (see :meth:`batches`)."""
        batches = self.batches(request)
        try:
            for batch in batches:
                yield from batch
        finally:
            batches.close()

    def count(self, request: ReportRequest) -> int:
        """How many rows the report has (for progress indicators)."""
        if request.kind is POOLS:
            return len(self._pool_rows(request))
        query = self._query(request, None).order_by(None)
        with self.store.unit_of_work(read_only=True) as uow:
            total = uow.conn.execute(select(func.count()).select_from(query.subquery())).scalar()
        return int(total or 0)

    def page(self, request: ReportRequest, *, limit: int = 100, cursor: str | None = None) -> Page:
        """One page of rows; ``next_cursor`` continues after its last row."""
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit is 1 to 1000", code="invalid_value", field="limit")
        if request.kind is POOLS:
            start = (_decode_cursor(cursor) or [None])[0] if cursor else 0
            if not isinstance(start, int) or start < 0:
                raise InvalidRequest("not a cursor of this report", code="invalid_cursor")
            rows = self._pool_rows(request)
            more = start + limit < len(rows)
            return Page(
                request,
                rows[start : start + limit],
                _encode_cursor([start + limit]) if more else None,
            )
        after = _keyset(cursor) if cursor else None
        with self.store.unit_of_work(read_only=True) as uow:
            raw = uow.conn.execute(self._query(request, after).limit(limit + 1)).all()
        more = len(raw) > limit
        raw = raw[:limit]
        next_cursor = None
        if more:
            last = raw[-1]
            at = last.start_time if request.kind is PSTN else last.sent_at
            key = last.call_id if request.kind is PSTN else last.sms_id
            next_cursor = _encode_cursor([_instant(at).isoformat(), key])
        return Page(request, list(self._shape(request, raw)), next_cursor)

    def _pool_rows(self, request: ReportRequest) -> list[tuple[Any, ...]]:
        """R-54: per month, country and capability: total, used, available, percent used."""
        catalogue = self.calls.catalogue
        rows: list[tuple[Any, ...]] = []
        for month in request.range.months():
            for key, total, used in self.calls.pools(request.org_id, month):
                if request.filters.capability and key.capability != request.filters.capability:
                    continue
                name = (
                    catalogue.sku(key.capability).name
                    if key.capability in catalogue.skus
                    else key.capability
                )
                if total:
                    percent = f"{Decimal(used * 100) / Decimal(total):.1f}"
                else:
                    percent = "100.0" if used else "0.0"
                rows.append(
                    (
                        month,
                        key.country,
                        key.capability,
                        name,
                        key.kind,
                        key.user_id,
                        "messages" if key.kind == "sms" else "minutes",
                        total,
                        used,
                        max(total - used, 0),
                        percent,
                    )
                )
        return rows

    # -- exports ------------------------------------------------------------------------------

    def export(
        self,
        request: ReportRequest,
        fmt: str,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Export:
        """The report as a file, produced chunk by chunk as it is read."""
        if fmt not in FORMATS:
            raise InvalidRequest(
                f"format is json, {', '.join(FORMATS)}", code="invalid_value", field="format"
            )
        return Export(
            request.file_name(fmt), CONTENT_TYPES[fmt], self._chunks(request, fmt, progress)
        )

    def _chunks(
        self, request: ReportRequest, fmt: str, progress: Callable[[int], None] | None
    ) -> Iterator[bytes]:
        fields = _pstn_csv_fields(request) if request.kind is PSTN else None
        if fields is not None and fmt == "xlsx":
            lines = self._pstn_line_rows(request, fields)
            line_batches = _counting(lines, progress) if progress else lines
            try:
                yield from xlsx_chunks(request.kind, line_batches, created=request.generated_at)
            finally:
                lines.close()
            return
        if fields is not None:
            texts = self._pstn_csv_texts(request, fields)
            try:
                body = _csv_from_texts(request.kind, texts, progress)
                yield from body if fmt == "csv" else zip_chunks(request, body)
            finally:
                texts.close()
            return
        batches = self.batches(request)
        counted = _counting(batches, progress) if progress else batches
        try:
            if fmt == "csv":
                yield from csv_chunks(request.kind, counted)
            elif fmt == "xlsx":
                yield from xlsx_chunks(request.kind, counted, created=request.generated_at)
            else:
                yield from zip_chunks(request, csv_chunks(request.kind, counted))
        finally:
            batches.close()

    def _pstn_csv_texts(
        self, request: ReportRequest, fields: tuple[Any, ...]
    ) -> Generator[tuple[int, bytes], None, None]:
        """The PSTN report's CSV rows (no header) as UTF-8, a batch at a time, with the
        batch's row count: the fast path described above :func:`_pstn_csv_fields`."""
        seed = hashlib.blake2b(f"{request.org_id}\x00".encode(), digest_size=16).copy
        fields_after_id = len(PSTN.columns) - 1
        # Each line has a unit separator before each field but the UsageId, then CR and LF.
        marks = fields_after_id + 2
        with self.store.unit_of_work(read_only=True) as uow:
            query = _pstn_query(request, None, fields)
            for batch in _driver_batches(uow.conn, query, self.fetch_rows):
                lines: list[str] = []
                add = lines.append
                for call_id, line in batch:
                    if line[0] != _FIELD:  # stored whole (or the mark of a row to shape)
                        add(line)
                        continue
                    digest = seed()
                    digest.update(call_id.encode())
                    d = digest.hexdigest()
                    add(f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:]}{line}")
                data = "".join(lines).encode()
                count = len(lines)
                # Clean: no field holds a comma, quote, CR, LF, separator or the mark of a
                # row to shape (the separators, CRs and LFs are exactly the query's own).
                if (
                    not any(special in data for special in _CSV_SPECIAL)
                    and len(data) - len(data.translate(None, _LINE_MARKS)) == count * marks
                ):
                    yield count, data.replace(_FIELD_BYTE, b",")
                    continue
                rows: list[Sequence[Any]] = []
                for line, (call_id, _) in zip(lines, batch, strict=True):
                    row: Sequence[Any] = line[:-2].split(_FIELD)
                    if _SHAPE in line or len(row) != fields_after_id + 1 or line[-2:] != "\r\n":
                        row = self._shaped(uow.conn, request, call_id)
                    rows.append(row)
                yield count, _csv_rows(rows).encode()

    def _pstn_line_rows(
        self, request: ReportRequest, fields: tuple[Any, ...]
    ) -> Generator[list[Sequence[Any]], None, None]:
        """The PSTN report's rows, a batch at a time, from the fast path's lines (see
        :func:`_pstn_csv_fields`): each value as its CSV text, an empty one for none; what
        the Excel export writes (it types cells by column, not by value)."""
        seed = hashlib.blake2b(f"{request.org_id}\x00".encode(), digest_size=16).copy
        fields_after_id = len(PSTN.columns) - 1
        with self.store.unit_of_work(read_only=True) as uow:
            query = _pstn_query(request, None, fields)
            for batch in _driver_batches(uow.conn, query, self.fetch_rows):
                rows: list[Sequence[Any]] = []
                add = rows.append
                for call_id, line in batch:
                    stored = line[0] != _FIELD
                    row = line[:-2].split(_FIELD) if stored else line[1:-2].split(_FIELD)
                    if (
                        _SHAPE in line
                        or len(row) != fields_after_id + stored
                        or line[-2:] != "\r\n"
                    ):
                        add(self._shaped(uow.conn, request, call_id))
                        continue
                    if stored:
                        add(row)
                        continue
                    digest = seed()
                    digest.update(call_id.encode())
                    d = digest.hexdigest()
                    row.insert(0, f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:]}")
                    add(row)
                yield rows

    def _shaped(self, conn: Connection, request: ReportRequest, call_id: str) -> Row:
        """One call's row shaped in Python, as a page shows it."""
        raw = conn.execute(_pstn_query(request, None).where(calls.c.call_id == call_id)).all()
        return _pstn_rows(request, raw)[0]


_Batch = TypeVar("_Batch", bound=Sized)


def _counting(batches: Iterator[_Batch], progress: Callable[[int], None]) -> Iterator[_Batch]:
    for batch in batches:
        yield batch
        progress(len(batch))


# -- writers ---------------------------------------------------------------------------------


def csv_chunks(kind: ReportKind, batches: Iterable[Sequence[Row]]) -> Iterator[bytes]:
    """RFC 4180: a header row, CRLF line ends, fields quoted when they need it; UTF-8.
    One chunk per batch of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(kind.columns)
    for batch in batches:
        writer.writerows(batch)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


def _csv_from_texts(
    kind: ReportKind,
    texts: Iterable[tuple[int, bytes]],
    progress: Callable[[int], None] | None,
) -> Iterator[bytes]:
    """The header row, then each batch of CSV as it comes (see :func:`csv_chunks`)."""
    yield _csv_rows([kind.columns]).encode()
    for count, data in texts:
        yield data
        if progress:
            progress(count)


def _excel_time(value: str) -> float:
    """An ISO 8601 UTC string (``2026-01-15T08:00:00Z``) as an Excel serial date."""
    return excel_serial(value)


_XLSX_CELLS: Final[dict[str, tuple[CellKind, str | None, float]]] = {
    "text": ("text", None, 18),
    "int": ("number", None, 10),
    "money": ("number", "0.00####", 12),
    "percent": ("number", "0.0", 10),
    "time": ("time", "yyyy-mm-dd hh:mm:ss", 20),
}
"""How each column kind is written: cell kind, number format, width."""


def xlsx_chunks(
    kind: ReportKind,
    batches: Iterable[Sequence[Sequence[Any]]],
    *,
    sheet_rows: int = XLSX_SHEET_ROWS,
    read_size: int = 1 << 20,
    created: datetime | None = None,
) -> Iterator[bytes]:
    """A real .xlsx: numbers as numbers (money is the exact decimal the CSV shows, read by
    Excel as its own number type so sums and filters work), times as dates, a frozen header
    row and an autofilter on every sheet; rows beyond a sheet's limit continue on the next
    sheet. Written by :mod:`commcredits.services.xlsx_stream` in constant memory."""
    columns = [
        XlsxColumn(title, *_XLSX_CELLS[column_kind])
        for title, column_kind in zip(kind.columns, kind.kinds, strict=True)
    ]
    return workbook_chunks(
        kind.title, columns, batches, sheet_rows=sheet_rows, read_size=read_size, created=created
    )


class _Sink(io.RawIOBase):
    """A write-only stream that hands its bytes out as they come: what lets ``zipfile``
    write a zip (with data descriptors) straight into a response."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._written += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._written

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def zip_chunks(request: ReportRequest, csv_body: Iterable[bytes]) -> Iterator[bytes]:
    """A zip holding ``<stem>.<UTC date>.csv`` (``csv_body``, as it comes) and
    ``parameters.json`` (range and filters)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(request.file_name("csv"), request.generated_at.timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as entry:
            for chunk in csv_body:
                entry.write(chunk)
                if data := sink.take():
                    yield data
        archive.writestr(
            zipfile.ZipInfo("parameters.json", request.generated_at.timetuple()[:6]),
            json.dumps(request.parameters(), indent=2) + "\n",
            compress_type=zipfile.ZIP_DEFLATED,
        )
    yield sink.take()
