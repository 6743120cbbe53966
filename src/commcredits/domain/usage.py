"""Records of usage: a call (one row per call, R-50) and a message (R-53)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final, Literal

from commcredits.domain.errors import InvalidRequest

CallStatus = Literal["active", "ended", "denied"]

MAX_CALL_SECONDS: Final = 7 * 86_400
"""The longest call taken (a week): a switch or a file that says more is wrong, and no rate
multiplied by more would still be an amount."""


LATEST_START: Final = datetime.max.replace(tzinfo=UTC) - timedelta(seconds=MAX_CALL_SECONDS, days=1)
"""The latest start a call may have: its end, a week later at most, must still be a time."""


def check_seconds(seconds: int, field: str) -> InvalidRequest | None:
    """The refusal of a call duration (or seconds used) outside 0 to a week; None if fine."""
    if seconds < 0:
        return InvalidRequest(f"{field} cannot be negative", field=field)
    if seconds > MAX_CALL_SECONDS:
        return InvalidRequest(f"{field} is at most {MAX_CALL_SECONDS} (a week)", field=field)
    return None


@dataclass(frozen=True, slots=True)
class CallRecord:
    org_id: str
    call_id: str
    call_type: str
    user_id: str | None
    upn: str | None
    display_name: str | None
    user_location: str | None
    from_number: str
    to_number: str
    conference_id: str | None
    status: CallStatus
    decision: Literal["allow", "deny"]
    reason: str | None
    funding: str | None
    capability: str | None
    external_country: str | None
    number_type: str | None
    domestic: bool | None
    pool: str | None
    pool_minutes: int
    reserved_pool_minutes: int
    rate_table_id: str | None
    rate_line: int | None
    rate: Decimal | None
    connection_fee: Decimal | None
    first_increment: int | None
    increment: int | None
    currency: str
    charge: Decimal
    connection_fee_charged: Decimal
    reserved: Decimal
    granted_seconds: int
    used_seconds: int
    start_time: datetime
    end_time: datetime | None
    duration_seconds: int | None
    reservation_expires_at: datetime | None
    source: Literal["live", "cdr"]
    invoice_id: str | None = None


@dataclass(frozen=True, slots=True)
class SmsRecord:
    org_id: str
    sms_id: str
    user_id: str | None
    upn: str | None
    display_name: str | None
    direction: Literal["outbound", "inbound"]
    from_number: str
    to_number: str
    units: int
    decision: Literal["allow", "deny"]
    reason: str | None
    funding: str | None
    capability: str | None
    pool: str | None
    pool_units: int
    charge: Decimal
    currency: str
    from_country: str | None
    to_country: str | None
    sent_at: datetime
    invoice_id: str | None = None
