"""The report line a call is stored with when it ends (domain/report_line.py, R-50)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from commcredits.domain.report_line import (
    FIELD,
    iso_time,
    money_text,
    pstn_line,
    usage_id,
)
from commcredits.domain.usage import CallRecord

START = datetime(2026, 1, 15, 8, 0, 0, 999_999, tzinfo=UTC)
CALL = CallRecord(
    org_id="org_1",
    call_id="c1",
    call_type="user_out",
    user_id="usr_1",
    upn="ann@contoso.com",
    display_name="Ann",
    user_location="DE",
    from_number="+4930123456",
    to_number="+33142685300",
    conference_id=None,
    status="ended",
    decision="allow",
    reason=None,
    funding="credits",
    capability="MCOPSTNPP",
    external_country="FR",
    number_type="fixed",
    domestic=False,
    pool=None,
    pool_minutes=0,
    reserved_pool_minutes=0,
    rate_table_id=None,
    rate_line=None,
    rate=None,
    connection_fee=None,
    first_increment=None,
    increment=None,
    currency="EUR",
    charge=Decimal("0.08"),
    connection_fee_charged=Decimal(0),
    reserved=Decimal(0),
    granted_seconds=0,
    used_seconds=125,
    start_time=START,
    end_time=START + timedelta(seconds=125),
    duration_seconds=125,
    reservation_expires_at=None,
    source="cdr",
)


def _fields(line: str) -> list[str]:
    return line[:-2].split(FIELD)


def test_the_line_holds_the_r50_columns_in_order_with_the_usage_id_first() -> None:
    line, mask_at = pstn_line(CALL) or ("", None)
    assert line.endswith("\r\n")
    assert _fields(line) == [
        usage_id("org_1", "c1"),
        "c1",
        "",
        "DE",
        "usr_1",
        "ann@contoso.com",
        "Ann",
        "+4930123456",
        "user_out",
        "Outbound",
        "fixed",
        "International",
        "France",
        "+33142685300",
        "FR",
        "2026-01-15T08:00:00Z",
        "2026-01-15T08:02:05Z",
        "125",
        "0.00",
        "0.08",
        "EUR",
        "MCOPSTNPP",
    ]
    # Outbound: the other party is the destination, and the line says where it ends.
    assert mask_at is not None
    assert line[:mask_at].endswith(f"{FIELD}+33142685300")


def test_an_inbound_calls_other_party_is_the_caller() -> None:
    inbound = replace(CALL, call_type="user_in", from_number="+33142685300", to_number="+49301")
    line, mask_at = pstn_line(inbound) or ("", None)
    assert mask_at is not None
    assert line[:mask_at].endswith(f"{FIELD}Ann{FIELD}+33142685300")
    assert _fields(line)[9] == "Inbound"


def test_no_line_for_a_call_that_has_not_ended() -> None:
    assert pstn_line(replace(CALL, status="active")) is None
    assert pstn_line(replace(CALL, status="denied")) is None


@given(st.text(max_size=12))
def test_the_mask_offset_is_given_only_where_cutting_the_last_digits_masks_the_number(
    number: str,
) -> None:
    """Masking the last 3 or 4 characters of the stored line is right only for a number of at
    least six characters ending with four ASCII digits; anything else is shaped in Python."""
    found = pstn_line(replace(CALL, to_number=number))
    assert found is not None
    line, mask_at = found
    cuttable = len(number) >= 6 and all(ch in "0123456789" for ch in number[-4:])
    assert (mask_at is not None) == cuttable
    if mask_at is not None:
        assert line[:mask_at].endswith(number)


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(9998, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), UTC]),
    )
)
def test_times_are_written_as_a_page_writes_them(value: datetime) -> None:
    """UTC ISO 8601 to the second, whatever zone the time was given in."""
    expected = value.astimezone(UTC).isoformat(timespec="seconds")[:19] + "Z"
    assert iso_time(value) == expected
    found = pstn_line(replace(CALL, start_time=value, end_time=None, duration_seconds=None))
    assert found is not None
    assert _fields(found[0])[15:17] == [expected, ""]


@given(st.integers(-(10**15), 10**15), st.sampled_from(["EUR", "USD", "BHD", "JPY"]))
def test_money_is_written_as_a_page_writes_it(micros: int, currency: str) -> None:
    charged = replace(CALL, charge=Decimal(micros).scaleb(-6), currency=currency)
    line = pstn_line(charged)
    assert line is not None
    assert _fields(line[0])[19] == money_text(micros, currency)
