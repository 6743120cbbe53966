"""An ended call's line of the PSTN usage report (R-50), written once, when the call ends.

A call's report row never changes once the call has ended: every value in it is the call's
own (its user as they were, its rate, its charge). So the call is stored with its row already
written as text, and an export of a million calls reads one column per row instead of
formatting nineteen (docs/reports.md, "Exports"). The line is the row as the CSV export
writes it before quoting: the UsageId, then each value after the ASCII unit separator (none
written as nothing), then CR LF. The other party's number is stored unmasked, with where it
ends, so the export masks it when the organization's setting asks for it at export time.

The text functions here are the report's own: pages, exports and stored lines format every
value the same way.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Final

from commcredits.domain.countries import country_name
from commcredits.domain.money import minor_units, to_micros
from commcredits.domain.usage import CallRecord

FIELD: Final = "\x1f"
"""Written before each value after the UsageId."""

MASK_MIN_LENGTH: Final = 6
MASK_MAX_DIGITS: Final = 4
"""The stored line says where the other party's number ends only when masking it is cutting
its last digits: it is at least six characters long and ends with four ASCII digits, so
masking its last three or four digits (the countries' rules) stars exactly those."""


def usage_id(org_id: str, record_id: str) -> str:
    """A stable id per call or message: BLAKE2b of the organization and the record's id,
    in GUID form. The same call always has the same UsageId."""
    digest = hashlib.blake2b(f"{org_id}\x00{record_id}".encode(), digest_size=16).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


def iso_time(value: datetime | str | None) -> str | None:
    """UTC ISO 8601 to the second: ``2026-01-15T08:00:00Z``. Also takes a time as SQLite
    stores it (naive UTC text, ``2026-01-15 08:00:00.000000``): the export reads those raw."""
    if value is None:
        return None
    if isinstance(value, str):
        return f"{value[:10]}T{value[11:19]}Z"
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    # %-formatting: a million-call batch writes two times per call, and this is the fastest.
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (  # noqa: UP031
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
    )


@cache
def places(currency: str) -> tuple[int, int, int]:
    """The decimals shown for a currency (at least two), and the micro-units of its last
    shown decimal and of one unit of it in those decimals."""
    shown = max(2, minor_units(currency))
    return shown, 10 ** (6 - shown), 10**shown


def money_text(micros: int, currency: str) -> str:
    """Micro-units as a decimal string with at least two decimals (more only when the
    currency has them or the amount has digits below them: nothing is ever hidden)."""
    shown, unit, scale = places(currency)
    if micros >= 0 and micros % unit == 0:
        whole, cents = divmod(micros // unit, scale)
        return f"{whole}.{cents:0{shown}d}"
    text = format(Decimal(micros).scaleb(-6).normalize(), "f")
    decimals = len(text.partition(".")[2])
    return text if decimals >= shown else f"{Decimal(text):.{shown}f}"


def _maskable(number: str) -> bool:
    tail = number[-MASK_MAX_DIGITS:]
    return len(number) >= MASK_MIN_LENGTH and tail.isascii() and tail.isdigit()


class _Zero(dict[str, str]):
    """Zero in each currency, as shown: most calls cost nothing."""

    def __missing__(self, currency: str) -> str:
        self[currency] = text = money_text(0, currency)
        return text


ZERO_TEXT: Final = _Zero()
"""Zero as :func:`money_text` writes it, by currency."""


def pstn_line(call: CallRecord) -> tuple[str, int | None] | None:
    """The ended call's report line, and where the other party's number ends in it (a
    character offset: the number is ``line[:end]``'s tail) when masking it is cutting its
    last digits, else ``None`` (an export that masks it shapes that row itself). ``None``
    for a call that has not ended: the report shows only ended calls."""
    if call.status != "ended":
        return None
    inbound = call.call_type.endswith("_in")
    external = call.external_country or ""
    currency = call.currency
    domestic = call.domestic
    duration = call.duration_seconds
    fee, charge = call.connection_fee_charged, call.charge
    # One f-string per part: None is written as nothing (text is never None-like otherwise).
    caller = (
        f"{usage_id(call.org_id, call.call_id)}{FIELD}{call.call_id}"
        f"{FIELD}{call.conference_id or ''}{FIELD}{call.user_location or ''}"
        f"{FIELD}{call.user_id or ''}{FIELD}{call.upn or ''}{FIELD}{call.display_name or ''}"
        f"{FIELD}{call.from_number}"
    )
    through_destination = (
        f"{caller}{FIELD}{call.call_type}{FIELD}{'Inbound' if inbound else 'Outbound'}"
        f"{FIELD}{call.number_type or ''}"
        f"{FIELD}{'' if domestic is None else 'Domestic' if domestic else 'International'}"
        f"{FIELD}{country_name(external) if external else ''}{FIELD}{call.to_number}"
    )
    line = (
        f"{through_destination}{FIELD}{external}"
        f"{FIELD}{iso_time(call.start_time)}{FIELD}{iso_time(call.end_time) or ''}"
        f"{FIELD}{'' if duration is None else duration}"
        f"{FIELD}{money_text(to_micros(fee), currency) if fee else ZERO_TEXT[currency]}"
        f"{FIELD}{money_text(to_micros(charge), currency) if charge else ZERO_TEXT[currency]}"
        f"{FIELD}{currency}{FIELD}{call.capability or ''}\r\n"
    )
    party = call.from_number if inbound else call.to_number
    if not _maskable(party):
        return line, None
    return line, len(caller) if inbound else len(through_destination)
