"""Rating: matching a rate row, billing increments, exact charges rounded once (R-40..R-42),
the rate table parser, and the vectorized batch path giving the same answers call for call."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

import numpy as np
import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commcredits.domain.errors import RuleViolation
from commcredits.domain.rating import (
    COLUMNS,
    Rate,
    RateTable,
    RateTableError,
    billed_seconds,
    classify,
    parse_rate_table,
    price,
)
from commcredits.domain.rating_batch import MAX_DURATION, CompiledRates
from commcredits.services.rating import sample_rates

HEADER = ",".join(COLUMNS)
NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def _table(*rows: str) -> RateTable:
    return parse_rate_table("\n".join([HEADER, *rows]) + "\n")


def _rate(
    rate: str = "0.10",
    *,
    fee: str = "0",
    first: int = 60,
    step: int = 60,
    currency: str = "USD",
    service: str = "outbound",
    prefix: str = "44",
) -> Rate:
    row = f"{service},{prefix},,,{rate},{fee},{first},{step},{currency},,,"
    return _table(row).rows[0]


def _problems(text: str) -> list[tuple[int, str | None]]:
    with pytest.raises(RateTableError) as raised:
        parse_rate_table(text)
    assert raised.value.code == "invalid_rate_table"
    assert raised.value.details == [
        {"line": p.line, "field": p.field, "message": p.message} for p in raised.value.problems
    ]
    return [(p.line, p.field) for p in raised.value.problems]


# --- increments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "step", "expected"),
    [
        (60, 60, [0, 60, 60, 60, 120, 3660]),
        (60, 1, [0, 60, 60, 60, 61, 3601]),
        (1, 1, [0, 1, 59, 60, 61, 3601]),
        (30, 6, [0, 30, 60, 60, 66, 3606]),
    ],
)
def test_billed_seconds_follow_the_first_block_then_whole_steps(
    first: int, step: int, expected: list[int]
) -> None:
    durations = [0, 1, 59, 60, 61, 3601]
    assert [billed_seconds(d, first, step) for d in durations] == expected


def test_the_default_increments_are_whole_minutes_rounded_up() -> None:
    row = _table("outbound,44,,,0.10,,,,USD,,,").rows[0]
    assert (row.first_increment, row.increment) == (60, 60)
    assert price(row, 61).units == 120


@given(
    duration=st.integers(-10, 200_000),
    first=st.integers(1, 3600),
    step=st.integers(1, 3600),
)
def test_billed_seconds_cover_the_call_and_stay_within_one_step(
    duration: int, first: int, step: int
) -> None:
    billed = billed_seconds(duration, first, step)
    if duration <= 0:
        assert billed == 0
    elif duration <= first:
        assert billed == first
    else:
        assert duration <= billed < duration + step
        assert (billed - first) % step == 0


# --- charges and rounding -------------------------------------------------------------------


def test_a_charge_is_the_rate_per_minute_times_billed_minutes() -> None:
    charge = price(_rate("0.0240"), 125)
    assert (charge.units, charge.charge, charge.currency) == (180, Decimal("0.07"), "USD")


def test_a_charge_landing_exactly_on_half_a_cent_rounds_up() -> None:
    assert price(_rate("0.005"), 60).charge == Decimal("0.01")
    # 0.0150 per minute for 20 seconds is 0.005 exactly.
    assert price(_rate("0.0150", first=1, step=1), 20).charge == Decimal("0.01")
    assert price(_rate("0.0149", first=1, step=1), 20).charge == Decimal("0.00")


def test_a_charge_is_rounded_once_not_per_minute_or_per_part() -> None:
    # Three minutes at 0.0125: 0.0375 rounds to 0.04 (rounding each minute would make 0.03).
    assert price(_rate("0.0125"), 180).charge == Decimal("0.04")
    # A fee of 0.004 and 0.001 of minutes: 0.005 together, though each alone rounds to 0.00.
    assert price(_rate("0.001", fee="0.004"), 60).charge == Decimal("0.01")


def test_a_yen_charge_is_rounded_half_up_to_whole_yen() -> None:
    assert price(_rate("2.5", currency="JPY"), 60).charge == Decimal("3")
    assert price(_rate("2.4", currency="JPY"), 60).charge == Decimal("2")
    assert price(_rate("1.5", currency="JPY", first=1, step=1), 30).charge == Decimal("1")
    assert price(_rate("1.5", currency="JPY"), 60).charge.as_tuple().exponent == 0


def test_a_three_decimal_currency_keeps_three_decimals() -> None:
    assert price(_rate("0.0125", currency="BHD"), 60).charge == Decimal("0.013")


def test_the_connection_fee_is_added_once_to_the_minutes() -> None:
    charge = price(_rate("0.10", fee="0.25"), 61)
    assert (charge.units, charge.charge) == (120, Decimal("0.45"))


@pytest.mark.parametrize("duration", [0, -5])
def test_a_zero_second_call_costs_nothing_not_even_the_connection_fee(duration: int) -> None:
    charge = price(_rate("0.10", fee="0.25"), duration)
    assert (charge.units, charge.charge) == (0, Decimal("0.00"))


def test_a_one_second_call_pays_the_first_block_and_the_fee() -> None:
    assert price(_rate("0.10", fee="0.25", first=60, step=1), 1).charge == Decimal("0.35")


@given(
    rate=st.decimals(min_value=0, max_value=5, places=6),
    fee=st.decimals(min_value=0, max_value=1, places=4),
    first=st.sampled_from([1, 6, 30, 60]),
    step=st.sampled_from([1, 6, 30, 60]),
    durations=st.tuples(st.integers(0, 20_000), st.integers(0, 20_000)),
)
def test_a_longer_call_never_costs_less(
    rate: Decimal, fee: Decimal, first: int, step: int, durations: tuple[int, int]
) -> None:
    row = _rate(str(rate), fee=str(fee), first=first, step=step)
    shorter, longer = sorted(durations)
    assert price(row, shorter).charge <= price(row, longer).charge


# --- SMS ------------------------------------------------------------------------------------


def test_messages_are_priced_per_segment_and_ignore_increments() -> None:
    row = _rate("0.0075", service="sms_out", first=60, step=60)
    assert [price(row, n).charge for n in (1, 2, 3)] == [
        Decimal("0.01"),
        Decimal("0.02"),
        Decimal("0.02"),
    ]
    assert price(row, 3).units == 3


def test_a_message_of_no_segments_costs_nothing_not_even_the_fee() -> None:
    row = _rate("0.0075", fee="0.01", service="sms_in")
    assert price(row, 0).charge == Decimal("0.00")
    assert price(row, 2).charge == Decimal("0.03")  # 0.015 + 0.01 = 0.025, half-up


# --- effective dates ------------------------------------------------------------------------

DATED = _table(
    "outbound,44,,,0.10,,60,60,USD,2025-01-01,2025-12-31,old",
    "outbound,44,,,0.08,,60,60,USD,2026-01-01,,new",
    "outbound,4420,,,0.05,,60,60,USD,2026-06-01,,London from June",
    "outbound,49,,,0.20,,60,60,USD,,2025-06-30,ended",
)


@pytest.mark.parametrize(
    ("at", "description"),
    [
        ("2025-12-31T23:59:59+00:00", "old"),  # the end date is inclusive
        ("2026-01-01T00:30:00+01:00", "old"),  # still 2025-12-31 in UTC
        ("2026-01-01T00:00:00+00:00", "new"),
        ("2026-01-15T09:00:00+00:00", "new"),  # London's own row is not in force yet
        ("2026-06-01T00:00:00+00:00", "London from June"),
    ],
)
def test_the_row_in_force_at_the_calls_start_is_chosen(at: str, description: str) -> None:
    _, charge = DATED.quote("outbound", "+442071234567", 60, datetime.fromisoformat(at))
    assert charge.rate.description == description


def test_a_row_before_it_starts_or_after_it_ended_prices_nothing() -> None:
    with pytest.raises(RuleViolation) as raised:
        DATED.quote("outbound", "+442071234567", 60, datetime(2024, 12, 31, 23, tzinfo=UTC))
    assert raised.value.code == "no_rate"
    with pytest.raises(RuleViolation):
        DATED.quote("outbound", "+4930123456", 60, datetime(2025, 7, 1, tzinfo=UTC))
    _, charge = DATED.quote("outbound", "+4930123456", 60, datetime(2025, 6, 30, 23, tzinfo=UTC))
    assert charge.charge == Decimal("0.20")


# --- classification -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "country", "types"),
    [
        ("+442071234567", "GB", ("fixed",)),
        ("+447400123456", "GB", ("mobile",)),
        ("+12015550123", "US", ("fixed", "mobile")),
        ("+14165550123", "CA", ("fixed", "mobile")),
        ("+18002345678", "US", ("toll_free",)),
        ("+448001234567", "GB", ("toll_free",)),
        ("+19002345678", "US", ("premium",)),
        ("+449012345678", "GB", ("premium",)),
        ("+4918012345", "DE", ("shared_cost",)),
        ("+4915123456789", "DE", ("mobile",)),
        ("+44 20 7123 4567", "GB", ("fixed",)),
    ],
)
def test_numbers_are_classified_by_country_and_type(
    number: str, country: str, types: tuple[str, ...]
) -> None:
    destination = classify(number)
    assert (destination.country, destination.types) == (country, types)
    assert destination.e164 == number.replace(" ", "")
    assert destination.number_type == types[0]


@pytest.mark.parametrize("number", ["", "+", "abc", "442071234567", "+44123", "+44 ab"])
def test_what_is_not_an_e164_number_is_refused_as_invalid_number(number: str) -> None:
    with pytest.raises(RuleViolation) as raised:
        classify(number)
    assert (raised.value.code, raised.value.field) == ("invalid_number", "to")


def test_a_quote_to_an_invalid_number_is_refused_before_matching() -> None:
    with pytest.raises(RuleViolation) as raised:
        DATED.quote("outbound", "+44123", 60, NOW)
    assert raised.value.code == "invalid_number"


# --- precedence -----------------------------------------------------------------------------

PRECEDENCE = _table(
    "outbound,4,,,0.90,,60,60,USD,,,four",
    "outbound,44,,,0.50,,60,60,USD,,,UK",
    "outbound,4420,,,0.05,,60,60,USD,,,London",
    "outbound,,GB,fixed,0.02,,60,60,USD,,,GB fixed",
    "outbound,,DE,fixed,0.03,,60,60,USD,,,DE fixed",
    "outbound,,DE,any,0.30,,60,60,USD,,,DE other",
    "outbound,,US,mobile,0.011,,60,60,USD,,,US mobile",
    "outbound,,US,any,0.019,,60,60,USD,,,US other",
    "outbound,,CA,fixed,0.012,,60,60,USD,,,CA fixed",
    "outbound,,CA,mobile,0.013,,60,60,USD,,,CA mobile",
    "outbound,,FR,any,0.04,,60,60,USD,,,FR any",
)


def _matched(number: str, table: RateTable = PRECEDENCE) -> str:
    _, charge = table.quote("outbound", number, 60, NOW)
    return charge.rate.description


def test_the_longest_prefix_wins() -> None:
    assert _matched("+442071234567") == "London"
    assert _matched("+441612345678") == "UK"
    assert _matched("+4930123456") == "four"


def test_any_prefix_match_beats_a_country_row() -> None:
    # GB has its own fixed row, yet the prefixes 44 and 4 win over it.
    assert _matched("+441612345678") != "GB fixed"
    table = _table(
        "outbound,,GB,fixed,0.02,,60,60,USD,,,GB fixed", "outbound,4,,,0.9,,60,60,USD,,,four"
    )
    assert _matched("+441612345678", table) == "four"


def test_a_country_row_of_the_numbers_type_beats_the_countrys_any_row() -> None:
    table = _table(
        "outbound,,DE,any,0.30,,60,60,USD,,,DE other",
        "outbound,,DE,fixed,0.03,,60,60,USD,,,DE fixed",
        "outbound,,DE,mobile,0.12,,60,60,USD,,,DE mobile",
    )
    assert _matched("+4930123456", table) == "DE fixed"
    assert _matched("+4915123456789", table) == "DE mobile"
    assert _matched("+4918012345", table) == "DE other"  # shared cost: no row of its own


def test_a_north_american_number_tries_the_fixed_row_then_the_mobile_row_then_any() -> None:
    assert _matched("+14165550123") == "CA fixed"
    assert _matched("+12015550123") == "US mobile"
    table = _table("outbound,,US,any,0.019,,60,60,USD,,,US other")
    assert _matched("+12015550123", table) == "US other"


def test_a_destination_without_a_rate_cannot_be_called() -> None:
    with pytest.raises(RuleViolation) as raised:
        _table("outbound,,FR,fixed,0.02,,60,60,USD,,,FR fixed").quote(
            "outbound", "+33612345678", 60, NOW
        )
    assert (raised.value.code, raised.value.field) == ("no_rate", "to")
    assert "+33612345678" in raised.value.message


def test_rows_of_another_service_do_not_match() -> None:
    with pytest.raises(RuleViolation) as raised:
        PRECEDENCE.quote("sms_out", "+442071234567", 1, NOW)
    assert raised.value.code == "no_rate"
    with pytest.raises(RuleViolation) as raised:
        PRECEDENCE.quote("voice", "+442071234567", 1, NOW)
    assert raised.value.code == "invalid_service"


def test_toll_free_calls_received_are_priced_by_the_numbers_country() -> None:
    table = _table(
        "toll_free_in,,US,any,0.025,,60,60,USD,,,US toll-free in",
        "toll_free_in,,GB,toll_free,0.045,,60,60,USD,,,GB toll-free in",
    )
    _, charge = table.quote("toll_free_in", "+18002345678", 90, NOW)
    assert (charge.rate.description, charge.charge) == ("US toll-free in", Decimal("0.05"))
    _, charge = table.quote("toll_free_in", "+448001234567", 60, NOW)
    assert charge.rate.description == "GB toll-free in"


def test_a_currency_restricts_the_rows_considered() -> None:
    table = _table(
        "outbound,44,,,0.10,,60,60,USD,,,dollars", "outbound,44,,,0.09,,60,60,EUR,,,euros"
    )
    _, charge = table.quote("outbound", "+442071234567", 60, NOW, "USD")
    assert (charge.currency, charge.charge) == ("USD", Decimal("0.10"))
    _, charge = table.quote("outbound", "+442071234567", 60, NOW, "EUR")
    assert (charge.currency, charge.charge) == ("EUR", Decimal("0.09"))


# --- the parser -----------------------------------------------------------------------------


def test_every_bad_row_is_reported_with_its_line_and_field() -> None:
    text = "\n".join(
        [
            HEADER,
            "outbound,44,,,0.10,,60,60,USD,,,fine",  # line 2
            "voice,45,,,0.10,,60,60,USD,,,",  # 3
            "outbound,46,,,abc,,60,60,XYZ,,,",  # 4: two problems
            "outbound,+47,,,0.10,,60,60,USD,,,",  # 5
            "outbound,48,,,0.10,,0,60,USD,,,",  # 6
            "outbound,49,,,0.10,,60,60,USD,2026-02-01,2026-01-01,",  # 7
            "outbound,,,,0.10,,60,60,USD,,,",  # 8
            "",  # 9: blank lines are skipped but still counted
            "outbound,,UK,fixed,0.10,,60,60,USD,,,",  # 10
            "outbound,,GB,landline,0.10,,60,60,USD,,,",  # 11
            "outbound,51,,,0.10,,60,60,USD,2026-13-01,,",  # 12
            "outbound,52,,,1e-3,-1,60,60,USD,,,",  # 13
            "outbound,53,,,-0.1,,60,86401,USD,,,",  # 14
            "outbound,54,,,0.10,,60,60,USD,,,fine too",  # 15
        ]
    )
    assert _problems(text) == [
        (3, "service"),
        (4, "rate"),
        (4, "currency"),
        (5, "prefix"),
        (6, "first_increment"),
        (7, "effective_to"),
        (8, "prefix"),
        (10, "country"),
        (11, "number_type"),
        (12, "effective_from"),
        (13, "rate"),
        (13, "connection_fee"),
        (14, "rate"),
        (14, "increment"),
    ]


def test_a_rate_or_fee_too_large_or_too_fine_is_refused_with_its_line() -> None:
    """A rate of 10^41 per minute would overflow every charge computed from it; rates and
    fees stay below a million units, so a day-long call still prices under the largest amount
    (R-41), and have at most twelve decimal places."""
    text = "\n".join(
        [
            HEADER,
            "outbound,44,,,999999.999999,,60,60,USD,,,the largest rate",  # line 2
            "outbound,45,,,100000000000000000000000000000000000000000,,60,60,USD,,,",  # 3
            "outbound,46,,,0.10,1000000,60,60,USD,,,",  # 4
            "outbound,47,,,0.000000000001,,60,60,USD,,,twelve places",  # 5
            "outbound,48,,,0.0000000000001,,60,60,USD,,,",  # 6: thirteen
        ]
    )
    assert _problems(text) == [(3, "rate"), (4, "connection_fee"), (6, "rate")]


def test_the_error_message_counts_the_problems_and_shows_the_first_ones() -> None:
    rows = [f"outbound,{40 + n},,,x,,60,60,USD,,," for n in range(7)]
    with pytest.raises(RateTableError) as raised:
        _table(*rows)
    assert "7 problems" in raised.value.message
    assert "line 2, rate" in raised.value.message
    assert "(and 2 more)" in raised.value.message


def test_missing_columns_are_named() -> None:
    header = "service,prefix,country,number_type,connection_fee,first_increment,currency"
    with pytest.raises(RateTableError) as raised:
        parse_rate_table(header + "\noutbound,44,,,,60,USD\n")
    assert [(p.line, p.field) for p in raised.value.problems] == [(1, None)]
    assert raised.value.problems[0].message == "missing columns: rate, increment"


def test_the_optional_columns_may_be_left_out() -> None:
    table = parse_rate_table(
        "service,prefix,country,number_type,rate,first_increment,increment,currency\n"
        "outbound,44,,,0.10,60,1,USD\n"
    )
    row = table.rows[0]
    assert (row.connection_fee, row.effective_from, row.effective_to) == (Decimal(0), None, None)


def test_a_header_only_table_is_refused() -> None:
    assert _problems(HEADER + "\n") == [(1, None)]


def test_a_header_with_spaces_capitals_and_a_byte_order_mark_is_accepted() -> None:
    header = "\ufeff" + ", ".join(name.upper() for name in COLUMNS)
    table = parse_rate_table(header + "\n outbound , 44 ,, , 0.10 ,,60,60, USD ,,, UK \n")
    row = table.rows[0]
    assert (row.service, row.prefix, row.rate, row.currency, row.description) == (
        "outbound",
        "44",
        Decimal("0.10"),
        "USD",
        "UK",
    )


def test_overlapping_rows_for_one_destination_are_refused() -> None:
    text = "\n".join(
        [
            HEADER,
            "outbound,44,,,0.10,,60,60,USD,2025-01-01,2025-12-31,",
            "outbound,44,,,0.08,,60,60,USD,2025-12-31,,",  # the end date is inclusive
            "outbound,,GB,fixed,0.02,,60,60,USD,,,",
            "outbound,,gb,fixed,0.03,,60,60,USD,2026-01-01,,",
        ]
    )
    assert _problems(text) == [(3, "effective_from"), (5, "effective_from")]


def test_rows_that_follow_each_other_or_differ_in_service_or_currency_may_coexist() -> None:
    table = _table(
        "outbound,44,,,0.10,,60,60,USD,2025-01-01,2025-12-31,",
        "outbound,44,,,0.08,,60,60,USD,2026-01-01,,",
        "outbound,44,,,0.08,,60,60,EUR,,,",
        "conf_dialout,44,,,0.08,,60,60,USD,,,",
        "outbound,,GB,fixed,0.02,,60,60,USD,,,",
        "outbound,,GB,mobile,0.02,,60,60,USD,,,",
    )
    assert len(table) == 6


def test_every_row_overlapping_another_is_reported() -> None:
    text = "\n".join(
        [
            HEADER,
            "outbound,44,,,0.10,,60,60,USD,2020-01-01,2030-12-31,decade",
            "outbound,44,,,0.10,,60,60,USD,2021-01-01,2021-12-31,2021",
            "outbound,44,,,0.10,,60,60,USD,2023-01-01,2023-12-31,2023",
        ]
    )
    assert _problems(text) == [(3, "effective_from"), (4, "effective_from")]


def test_a_prefix_of_non_ascii_digits_is_refused() -> None:
    assert _problems(HEADER + "\noutbound,٤٤,,,0.10,,60,60,USD,,,\n") == [(2, "prefix")]


def test_a_bad_row_spanning_several_lines_is_reported_at_the_line_it_starts_on() -> None:
    text = "\n".join(
        [
            HEADER,
            'outbound,44,,,0.10,,60,60,USD,,,"one"',
            'outbound,45,,,bad,,60,60,USD,,,"three',  # line 3
            "line",
            'description"',
        ]
    )
    assert _problems(text) == [(3, "rate")]


def test_a_country_is_upper_cased_and_an_empty_number_type_means_any() -> None:
    row = _table("outbound,,gb,,0.02,,60,60,USD,,,").rows[0]
    assert (row.country, row.number_type) == ("GB", "any")


def test_the_shipped_sample_table_parses_and_prices_common_destinations() -> None:
    table = parse_rate_table(sample_rates())
    assert len(table) > 100
    assert {row.currency for row in table.rows} >= {"USD", "EUR", "GBP"}
    assert {row.service for row in table.rows} >= {"outbound", "toll_free_in", "sms_out"}
    _, charge = table.quote("outbound", "+442071234567", 125, NOW, "USD")
    assert (charge.units, charge.charge) == (180, Decimal("0.07"))  # 3 x 0.0240 = 0.072
    _, charge = table.quote("outbound", "+19002345678", 61, NOW, "USD")
    assert charge.charge == Decimal("4.23")  # prefix 1900: 0.25 + 2 x 1.99
    _, charge = table.quote("sms_out", "+12015550123", 2, NOW, "USD")
    assert charge.charge == Decimal("0.02")  # 2 x 0.0075 = 0.015, half-up


# --- the batch path -------------------------------------------------------------------------


def _example_numbers() -> list[str]:
    """Numbers classify accepts as they are: example numbers, with their last digits varied."""
    found: set[str] = set()
    types = [
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.TOLL_FREE,
        phonenumbers.PhoneNumberType.PREMIUM_RATE,
        phonenumbers.PhoneNumberType.SHARED_COST,
    ]
    for region in ["US", "CA", "GB", "DE", "FR", "ES", "JP", "AU", "IN", "BR", "CH", "IT"]:
        for kind in types:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            for tail in ("", "00", "17", "58", "99"):
                candidate = e164[: len(e164) - len(tail)] + tail
                try:
                    if classify(candidate).e164 == candidate:
                        found.add(candidate)
                except RuleViolation:
                    pass
    return sorted(found)


EXAMPLES = _example_numbers()
ODD_NUMBERS = [
    "+44 20 7123 4567",  # spaces: classify normalizes it
    "442071234567",  # no +
    "+0442071234567",  # no country code starts with 0
    "+4420712345678901",  # 16 digits
    "+44٢٠٧١٢٣٤٥٦٧",  # non-ASCII digits
    "",
    "garbage",
]
DAY = date(2026, 1, 15)
COUNTRY_KEYS = [
    ("GB", "fixed"),
    ("GB", "mobile"),
    ("GB", "any"),
    ("US", "fixed"),
    ("US", "any"),
    ("DE", "any"),
    ("FR", "mobile"),
    ("JP", "any"),
]


@st.composite
def _rows(draw: st.DrawFn, pool: list[str], currency: str, service: str) -> list[Rate]:
    rows = []
    for line in range(2, draw(st.integers(0, 25)) + 2):
        if draw(st.integers(0, 4)) == 0:
            country, number_type = draw(st.sampled_from(COUNTRY_KEYS))
            prefix = ""
        else:
            source = draw(st.sampled_from(pool)).lstrip("+")
            prefix = source[: draw(st.integers(1, min(8, len(source))))]
            if draw(st.integers(0, 5)) == 0:
                # Longer than the number, on a span that covers it: "4420..." and "44200".
                prefix = (source + "0" * draw(st.integers(1, 3)))[:15]
            country, number_type = "", "any"
        places = draw(st.integers(0, 11))  # beyond nine decimals: the exact path
        kind = draw(st.integers(0, 9))
        if kind < 7:
            rate = Decimal(draw(st.integers(0, 10**places * 50))).scaleb(-places)
        elif kind < 9:  # prices that land on half a minor unit
            rate = Decimal(draw(st.sampled_from(["0.005", "0.015", "0.0150", "1.5", "0.0005"])))
        else:  # large enough to leave int64 on long calls
            rate = Decimal("123456.789")
        fee = Decimal(draw(st.sampled_from([0, 0, 1, 25, 5, 1234]))).scaleb(-3)
        start = draw(st.sampled_from([None, DAY, date(2026, 1, 16), date(2025, 1, 1)]))
        end = draw(st.sampled_from([None, None, DAY, date(2026, 1, 14), date(2027, 1, 1)]))
        if start is not None and end is not None and end < start:
            start, end = end, start
        rows.append(
            Rate(
                line=line,
                service=service,  # type: ignore[arg-type]
                prefix=prefix,
                country=country,
                number_type=number_type,  # type: ignore[arg-type]
                rate=rate,
                connection_fee=fee,
                first_increment=draw(st.sampled_from([1, 6, 30, 60])),
                increment=draw(st.sampled_from([1, 6, 30, 60])),
                currency=currency,
                effective_from=start,
                effective_to=end,
                description=f"row {line}",
            )
        )
    return rows


def _assert_same_as_exact_path(
    table: RateTable,
    service: str,
    currency: str,
    numbers: list[str],
    durations: list[int],
    hour: int,
) -> None:
    compiled = CompiledRates.compile(table, service, currency, DAY)
    result = compiled.rate(numbers, np.array(durations, dtype=np.int64))
    at = datetime.combine(DAY, time(hour), tzinfo=UTC)
    assert len(result) == len(numbers)
    for position, (number, duration) in enumerate(zip(numbers, durations, strict=True)):
        try:
            destination = classify(number)
        except RuleViolation:
            assert result.reason(position) == "invalid_number", number
            assert (result.units[position], result.charge[position]) == (0, 0)
            continue
        rate = table.match(service, destination, at, currency)
        if rate is None:
            assert result.reason(position) == "no_rate", number
            assert (result.units[position], result.charge[position]) == (0, 0)
            continue
        charge = price(rate, duration)
        assert compiled.rows[result.row[position]] is rate, number
        assert result.reason(position) is None
        assert (int(result.units[position]), result.amount(position)) == (
            charge.units,
            charge.charge,
        ), (number, duration, rate)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_batch_path_rates_every_call_as_the_exact_path_does(data: st.DataObject) -> None:
    currency = data.draw(st.sampled_from(["USD", "JPY", "BHD"]))
    service = data.draw(st.sampled_from(["outbound", "conf_dialout", "sms_out"]))
    # A few numbers both shape the prefixes and are called, so that most calls find a row.
    pool = data.draw(st.lists(st.sampled_from(EXAMPLES), min_size=1, max_size=6, unique=True))
    table = RateTable(data.draw(_rows(pool, currency, service)))
    calls = data.draw(st.integers(0, 30))
    numbers = data.draw(
        st.lists(
            st.one_of(st.sampled_from(pool), st.sampled_from(EXAMPLES + ODD_NUMBERS)),
            min_size=calls,
            max_size=calls,
        )
    )
    durations = data.draw(
        st.lists(
            st.one_of(
                st.integers(-5, 4000),
                st.sampled_from([0, 1, 59, 60, 61, 3601]),
                st.integers(86_400, MAX_DURATION * 3),
            ),
            min_size=calls,
            max_size=calls,
        )
    )
    _assert_same_as_exact_path(
        table, service, currency, numbers, durations, data.draw(st.integers(0, 23))
    )


def test_compiling_keeps_only_the_rows_of_the_service_and_currency_in_force_that_day() -> None:
    table = _table(
        "outbound,44,,,0.10,,60,60,USD,2025-01-01,2026-01-14,old",
        "outbound,44,,,0.08,,60,60,USD,2026-01-15,,new",
        "outbound,44,,,0.07,,60,60,EUR,,,euros",
        "sms_out,44,,,0.01,,1,1,USD,,,sms",
        "outbound,,GB,fixed,0.02,,60,60,USD,2026-02-01,,later",
    )
    compiled = CompiledRates.compile(table, "outbound", "USD", DAY)
    assert [row.description for row in compiled.rows] == ["new"]
    assert not compiled.has_country_rows
    before = CompiledRates.compile(table, "outbound", "USD", date(2026, 1, 14))
    assert [row.description for row in before.rows] == ["old"]


def test_the_batch_path_prices_prefix_rows_without_the_exact_path() -> None:
    table = _table(
        "outbound,44,,,0.0240,,60,60,USD,,,UK",
        "outbound,4420,,,0.005,0.25,60,1,USD,,,London",
    )
    compiled = CompiledRates.compile(table, "outbound", "USD", DAY)
    result = compiled.rate(
        ["+442071234567", "+441612345678", "+442071234567", "+33123456789"],
        np.array([61, 125, 0, 60]),
    )
    assert [compiled.rows[r].description if r >= 0 else None for r in result.row] == [
        "London",
        "UK",
        "London",
        None,
    ]
    assert result.units.tolist() == [61, 180, 0, 0]
    # 0.25 + 0.005 x 61 / 60 = 0.255083.. -> 0.26; 3 x 0.024 = 0.072 -> 0.07
    assert result.charge.tolist() == [26, 7, 0, 0]
    assert result.amount(0) == Decimal("0.26")
    assert [result.reason(i) for i in range(4)] == [None, None, None, "no_rate"]
    assert result.exact_calls == 0


def test_numbers_no_prefix_matches_take_the_exact_path_when_there_are_country_rows() -> None:
    table = _table(
        "outbound,4420,,,0.05,,60,60,USD,,,London",
        "outbound,,GB,mobile,0.10,,60,60,USD,,,GB mobile",
    )
    compiled = CompiledRates.compile(table, "outbound", "USD", DAY)
    numbers = ["+442071234567", "+447400123456", "+447400123456", "+33123456789", "+44123"]
    result = compiled.rate(numbers, np.array([60, 60, 120, 60, 60]))
    assert result.charge.tolist() == [5, 10, 20, 0, 0]
    assert [result.reason(i) for i in range(5)] == [None, None, None, "no_rate", "invalid_number"]
    assert result.exact_calls == 4


def test_a_charge_on_half_a_cent_rounds_up_in_the_batch_path_too() -> None:
    compiled = CompiledRates.compile(
        _table("outbound,44,,,0.005,,60,60,USD,,,"), "outbound", "USD", DAY
    )
    result = compiled.rate(["+442071234567", "+442071234567"], np.array([60, 120]))
    assert result.charge.tolist() == [1, 1]  # 0.005 -> 0.01, 0.010 -> 0.01


def test_a_number_shorter_than_a_covering_prefix_takes_the_enclosing_prefix() -> None:
    # +442071234567 padded to 15 digits lies in the span of 4420712345670, which it is too short
    # to start with; its longest matching prefix is 4420.
    table = _table(
        "outbound,4420712345670,,,0.50,,60,60,USD,,,too long",
        "outbound,44207123456,,,0.40,,60,60,USD,,,eleven digits",
        "outbound,442071234567000,,,0.45,,60,60,USD,,,longest",
        "outbound,4420,,,0.05,,60,60,USD,,,London",
    )
    compiled = CompiledRates.compile(table, "outbound", "USD", DAY)
    result = compiled.rate(["+442071234567", "+44207123456"], np.array([60, 60]))
    assert [compiled.rows[r].description for r in result.row] == ["eleven digits"] * 2
    table = _table(
        "outbound,4420712345670,,,0.50,,60,60,USD,,,too long",
        "outbound,4420,,,0.05,,60,60,USD,,,London",
    )
    compiled = CompiledRates.compile(table, "outbound", "USD", DAY)
    result = compiled.rate(["+442071234567"], np.array([60]))
    assert compiled.rows[result.row[0]].description == "London"


@pytest.mark.parametrize(
    ("rate", "fee"),
    [("0.0050000001", "0"), ("0.005", "0.0000000001"), ("999999.9999999999", "0")],
)
def test_a_row_with_more_than_nine_decimals_is_priced_in_decimal(rate: str, fee: str) -> None:
    table = _table(f"outbound,44,,,{rate},{fee},60,60,USD,,,")
    compiled = CompiledRates.compile(table, "outbound", "USD", DAY)
    result = compiled.rate(["+442071234567", "+442071234567"], np.array([60, 0]))
    assert result.exact_calls == 2
    assert result.amount(0) == price(table.rows[0], 60).charge
    assert result.amount(1) == Decimal(0)


def test_an_empty_batch_and_an_empty_table_rate_nothing() -> None:
    empty = CompiledRates.compile(RateTable([]), "outbound", "USD", DAY)
    result = empty.rate(["+442071234567"], np.array([60]))
    assert (result.row.tolist(), result.reason(0)) == ([-1], "no_rate")
    assert len(empty.rate([], np.array([], dtype=np.int64))) == 0


def test_the_durations_must_match_the_numbers() -> None:
    compiled = CompiledRates.compile(PRECEDENCE, "outbound", "USD", DAY)
    with pytest.raises(ValueError, match="2 numbers"):
        compiled.rate(["+442071234567", "+441612345678"], np.array([60]))
