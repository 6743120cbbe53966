"""Tariff plans in the CGRateS CSV format: hand-computed prices, exact to the last digit.

Every plan here is written for these tests; each expected cost is worked out in the comment
beside it. Dates: 2025-01-01 is a Wednesday, 2025-01-06 a Monday, 2025-01-18 a Saturday.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commcredits.domain.errors import InvalidRequest, RuleViolation
from commcredits.domain.tariffplan import (
    TariffPlan,
    TariffPlanError,
    TariffQuote,
    UnauthorizedDestination,
    format_duration,
    parse_duration,
)

DESTINATIONS = """\
#Id,Prefix
DST_DE,+49
DST_DE_MOBILE,+49151
DST_DE_MOBILE,+49160
DST_FR,+33
DST_CONF_FREE,+800100
DST_CONF_CUT,+800200
DST_CONF_STEP,+800300
"""

TIMINGS = """\
#Tag,Years,Months,MonthDays,WeekDays,Time
# workdays: night until 08:00, peak until 19:00, evening until midnight
PEAK,*any,*any,*any,1;2;3;4;5,08:00:00
NIGHT,*any,*any,*any,1;2;3;4;5,00:00:00
EVENING,*any,*any,*any,1;2;3;4;5,19:00:00
WEEKEND,*any,*any,*any,6;7,00:00:00
NEW_YEAR,*any,1,1,*any,00:00:00
"""

RATES = """\
#Id,ConnectFee,Rate,RateUnit,RateIncrement,GroupIntervalStart
# first minute whole, then per second
RT_PEAK,0.10,0.12,60s,60s,0s
RT_PEAK,0,0.06,60s,1s,60s
RT_OFFPEAK,0.05,0.03,60s,60s,0s
RT_OFFPEAK,0,0.03,1m,1s,1m
RT_MOBILE,0,0.20,60s,30s,0s
RT_HOLIDAY,0,0.01,60s,60s,0s
RT_CONF,0.10,0.60,60s,1s,0s
RT_CONF_STEP,0,0.42,60s,10s,0s
"""

DESTINATION_RATES = """\
#Id,DestinationId,RatesTag,RoundingMethod,RoundingDecimals,MaxCost,MaxCostStrategy
DR_DE_PEAK,DST_DE,RT_PEAK,*up,4,0,
DR_DE_OFFPEAK,DST_DE,RT_OFFPEAK,*up,4,0,
DR_DE_HOLIDAY,DST_DE,RT_HOLIDAY,*up,4,0,
DR_MOBILE,DST_DE_MOBILE,RT_MOBILE,*middle,2,0,
DR_FR,DST_FR,RT_OFFPEAK,*up,4,0,
DR_CONF,DST_CONF_FREE,RT_CONF,*up,2,0.50,*free
DR_CONF,DST_CONF_CUT,RT_CONF,*up,2,0.50,*disconnect
DR_CONF,DST_CONF_STEP,RT_CONF_STEP,*up,2,0.50,*disconnect
"""

RATING_PLANS = """\
#Id,DestinationRatesId,TimingTag,Weight
RP_STANDARD,DR_DE_PEAK,PEAK,10
RP_STANDARD,DR_DE_OFFPEAK,NIGHT,10
RP_STANDARD,DR_DE_OFFPEAK,EVENING,10
RP_STANDARD,DR_DE_OFFPEAK,WEEKEND,10
RP_STANDARD,DR_DE_HOLIDAY,NEW_YEAR,{holiday_weight}
RP_STANDARD,DR_MOBILE,*any,10
RP_STANDARD,DR_CONF,*any,10
RP_VIP,DR_DE_OFFPEAK,*any,10
RP_PARTNER,DR_FR,*any,10
"""

RATING_PROFILES = """\
#Tenant,Category,Subject,ActivationTime,RatingPlanId,RatesFallbackSubject
acme.example,call,*any,2024-01-01T00:00:00Z,RP_STANDARD,
acme.example,call,vip,2024-01-01T00:00:00Z,RP_VIP,partner
acme.example,call,partner,2024-01-01T00:00:00Z,RP_PARTNER,
"""

FILES = {
    "Destinations.csv": DESTINATIONS,
    "Timings.csv": TIMINGS,
    "Rates.csv": RATES,
    "DestinationRates.csv": DESTINATION_RATES,
    "RatingPlans.csv": RATING_PLANS.format(holiday_weight=20),
    "RatingProfiles.csv": RATING_PROFILES,
}


def write_plan(folder: Path, files: dict[str, str] | None = None, /, **overrides: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {**(files or FILES), **overrides}.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def plan(tmp_path: Path) -> TariffPlan:
    return TariffPlan.load(write_plan(tmp_path / "retail"))


def quote(
    plan: TariffPlan,
    destination: str,
    answer_time: str,
    usage: str,
    *,
    subject: str = "alice",
    tenant: str = "acme.example",
) -> TariffQuote:
    return plan.quote(
        tenant=tenant,
        category="call",
        subject=subject,
        destination=destination,
        answer_time=datetime.fromisoformat(answer_time),
        usage=parse_duration(usage),
    )


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60s", timedelta(seconds=60)),
        ("1m", timedelta(minutes=1)),
        ("1m30s", timedelta(seconds=90)),
        ("0s", timedelta(0)),
        ("1h", timedelta(hours=1)),
        ("2h45m", timedelta(hours=2, minutes=45)),
        ("1.5s", timedelta(seconds=1, microseconds=500_000)),
        ("250ms", timedelta(milliseconds=250)),
        ("60", timedelta(seconds=60)),
        ("0", timedelta(0)),
    ],
)
def test_durations_are_read_as_cgrates_writes_them(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "s", "-1s", "1x", "1m 30s", "1.0000001s", "m1", "1e3s"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)))
def test_a_written_duration_reads_back_the_same(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@given(st.integers(0, 1000), st.integers(0, 59), st.integers(0, 59))
def test_hours_minutes_and_seconds_add_up(hours: int, minutes: int, seconds: int) -> None:
    expected = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    assert parse_duration(f"{hours}h{minutes}m{seconds}s") == expected


# --------------------------------------------------------------------------- timings


def test_a_call_crossing_19_00_is_split_and_each_part_priced_by_its_plan(
    plan: TariffPlan,
) -> None:
    # Wed 18:59:30, 150 s. Peak first minute (60 s increment) starts before 19:00, so it is
    # peak: 0.12, covering up to 19:00:30. From 19:00:30 the evening plan, in its per-second
    # group (the call is past its first minute): 90 s x 0.03/60 = 0.045.
    # Connect fee of the rate at the start (peak) 0.10. Total 0.265.
    result = quote(plan, "+493012345", "2025-01-15T18:59:30Z", "150s")
    assert result.cost == Decimal("0.2650")
    assert result.connect_fee == Decimal("0.10")
    assert [(part.timing, part.rate_id, part.increments) for part in result.parts] == [
        ("PEAK", "RT_PEAK", 1),
        ("EVENING", "RT_OFFPEAK", 90),
    ]
    assert [part.cost for part in result.parts] == [Decimal("0.12"), Decimal("0.045")]
    assert result.parts[1].start == datetime(2025, 1, 15, 19, 0, 30, tzinfo=UTC)


def test_a_call_crossing_08_00_takes_its_connect_fee_from_the_night_rate(
    plan: TariffPlan,
) -> None:
    # Mon 07:58:00, 5 min. Night: first minute 0.03, then 60 s per second 0.03 (to 08:00).
    # Peak from 08:00, still per second (elapsed 2 min): 180 s x 0.06/60 = 0.18.
    # Connect fee once, the night rate's 0.05 (not the peak's 0.10): 0.05+0.03+0.03+0.18.
    result = quote(plan, "+493012345", "2025-01-06T07:58:00Z", "5m")
    assert result.connect_fee == Decimal("0.05")
    assert result.cost == Decimal("0.2900")
    assert [(part.timing, part.group_start, part.cost) for part in result.parts] == [
        ("NIGHT", timedelta(0), Decimal("0.03")),
        ("NIGHT", timedelta(seconds=60), Decimal("0.03")),
        ("PEAK", timedelta(seconds=60), Decimal("0.18")),
    ]


def test_the_weekend_timing_prices_saturday_off_peak(plan: TariffPlan) -> None:
    # Sat 12:00, 90 s: connect 0.05 + first minute 0.03 + 30 s x 0.03/60 = 0.015 -> 0.095.
    # (On a Wednesday at noon it would be peak: 0.10 + 0.12 + 0.03 = 0.25.)
    assert quote(plan, "+493012345", "2025-01-18T12:00:00Z", "90s").cost == Decimal("0.0950")
    assert quote(plan, "+493012345", "2025-01-15T12:00:00Z", "90s").cost == Decimal("0.2500")
    assert quote(plan, "+493012345", "2025-01-18T12:00:00Z", "90s").parts[0].timing == "WEEKEND"


def test_a_holiday_timing_with_a_higher_weight_overrides_the_weekday(plan: TariffPlan) -> None:
    # Wed 2025-01-01 10:00 is peak by weekday (weight 10), but NEW_YEAR (weight 20) wins:
    # 150 s in 60 s increments = 3 x 0.01 = 0.03, no connect fee.
    result = quote(plan, "+493012345", "2025-01-01T10:00:00Z", "150s")
    assert result.cost == Decimal("0.0300")
    assert result.connect_fee == Decimal("0")
    assert result.parts[0].timing == "NEW_YEAR"
    assert result.rated_usage == timedelta(minutes=3)


def test_a_holiday_with_a_lower_weight_does_not_override(tmp_path: Path) -> None:
    low = TariffPlan.load(
        write_plan(tmp_path, **{"RatingPlans.csv": RATING_PLANS.format(holiday_weight=5)})
    )
    # Peak applies again: 0.10 + 0.12 + 90 s x 0.06/60 (0.09) = 0.31.
    result = quote(low, "+493012345", "2025-01-01T10:00:00Z", "150s")
    assert result.cost == Decimal("0.3100")
    assert result.parts[0].timing == "PEAK"


def test_a_call_into_the_holiday_at_midnight_is_split_there(plan: TariffPlan) -> None:
    # Tue 2024-12-31 23:59:00 evening rate, 3 min. First minute 0.03 (until 00:00), then the
    # holiday from midnight: 2 more 60 s increments x 0.01. Connect 0.05. Total 0.10.
    result = quote(plan, "+493012345", "2024-12-31T23:59:00Z", "3m")
    assert [part.timing for part in result.parts] == ["EVENING", "NEW_YEAR"]
    assert result.cost == Decimal("0.1000")


def test_timings_are_evaluated_in_utc(plan: TariffPlan) -> None:
    # 20:30 at UTC+02:00 is 18:30 UTC on a Wednesday: peak, not evening.
    result = plan.quote(
        tenant="acme.example",
        category="call",
        subject="alice",
        destination="+493012345",
        answer_time=datetime(2025, 1, 15, 20, 30, tzinfo=timezone(timedelta(hours=2))),
        usage=timedelta(seconds=60),
    )
    assert result.parts[0].timing == "PEAK"
    assert result.answer_time == datetime(2025, 1, 15, 18, 30, tzinfo=UTC)


# --------------------------------------------------------------------------- rate groups


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # connect 0.10 + the whole first minute 0.12, however short
        ("1s", "0.2200"),
        ("45s", "0.2200"),
        ("60s", "0.2200"),
        # then per second at 0.06/60 = 0.001
        ("61s", "0.2210"),
        ("2m", "0.2800"),
        ("10m", "0.7600"),
    ],
)
def test_the_first_minute_is_charged_whole_then_each_second(
    plan: TariffPlan, usage: str, expected: str
) -> None:
    assert quote(plan, "+493012345", "2025-01-15T10:00:00Z", usage).cost == Decimal(expected)


def test_a_45_second_call_is_rated_as_a_whole_first_minute(plan: TariffPlan) -> None:
    result = quote(plan, "+493012345", "2025-01-15T10:00:00Z", "45s")
    assert result.rated_usage == timedelta(seconds=60)
    assert result.allowed_usage == timedelta(seconds=45)
    assert result.parts[0].end == datetime(2025, 1, 15, 10, 1, tzinfo=UTC)


def test_the_longest_prefix_wins(plan: TariffPlan) -> None:
    # +49151 is DST_DE_MOBILE, not DST_DE: 70 s in 30 s steps = 3 x 0.10 = 0.30.
    result = quote(plan, "+4915112345678", "2025-01-15T10:00:00Z", "70s")
    assert (result.destination_id, result.matched_prefix) == ("DST_DE_MOBILE", "+49151")
    assert result.cost == Decimal("0.30")
    # the same number dialled without the + matches the same prefix
    assert quote(plan, "4915112345678", "2025-01-15T10:00:00Z", "70s").cost == Decimal("0.30")


# --------------------------------------------------------------------------- rounding


def rounding_plan(folder: Path, method: str, decimals: int) -> TariffPlan:
    return TariffPlan.load(
        write_plan(
            folder,
            {
                "Destinations.csv": "#Id,Prefix\nDST_ALL,1\n",
                "Rates.csv": "#Id,ConnectFee,Rate,RateUnit,RateIncrement,GroupIntervalStart\n"
                "RT_NICKEL,0,0.05,60s,1s,0s\nRT_SIX,0,0.06,60s,1s,0s\n",
                "DestinationRates.csv": "#Id,DestinationId,RatesTag,RoundingMethod,"
                "RoundingDecimals,MaxCost,MaxCostStrategy\n"
                f"DR_NICKEL,DST_ALL,RT_NICKEL,{method},{decimals},0,\n"
                f"DR_SIX,DST_ALL,RT_SIX,{method},{decimals},0,\n",
                "RatingPlans.csv": "#Id,DestinationRatesId,TimingTag,Weight\n"
                "RP_NICKEL,DR_NICKEL,*any,10\nRP_SIX,DR_SIX,*any,10\n",
                "RatingProfiles.csv": "#Tenant,Category,Subject,ActivationTime,RatingPlanId,"
                "RatesFallbackSubject\nt,call,nickel,,RP_NICKEL,\nt,call,six,,RP_SIX,\n",
            },
        )
    )


@pytest.mark.parametrize(
    ("method", "decimals", "subject", "seconds", "expected"),
    [
        # 7 s at 0.05/60 = 0.0058333...
        ("*up", 2, "nickel", 7, "0.01"),
        ("*middle", 2, "nickel", 7, "0.01"),
        ("*down", 2, "nickel", 7, "0.00"),
        ("*up", 4, "nickel", 7, "0.0059"),
        ("*middle", 4, "nickel", 7, "0.0058"),
        ("*down", 4, "nickel", 7, "0.0058"),
        ("*up", 0, "nickel", 7, "1"),
        # 5 s at 0.06/60 = 0.005 exactly: a half, which *middle rounds up
        ("*middle", 2, "six", 5, "0.01"),
        ("*down", 2, "six", 5, "0.00"),
        ("*up", 3, "six", 5, "0.005"),
        # 4 s = 0.004: below the half
        ("*middle", 2, "six", 4, "0.00"),
    ],
)
def test_the_total_is_rounded_once_by_the_destination_rates_method(
    tmp_path: Path, method: str, decimals: int, subject: str, seconds: int, expected: str
) -> None:
    rated = rounding_plan(tmp_path, method, decimals).quote(
        tenant="t",
        category="call",
        subject=subject,
        destination="100",
        answer_time=datetime(2025, 3, 3, 12, tzinfo=UTC),
        usage=timedelta(seconds=seconds),
    )
    assert rated.cost == Decimal(expected)
    assert str(rated.cost) == expected
    assert rated.rounding_method == method


def test_repeating_decimals_are_summed_exactly_before_the_single_rounding(
    tmp_path: Path,
) -> None:
    # 1 s at 0.05/60 three times would be 3 x 0.0008 = 0.0024 if each were rounded first;
    # summed exactly, 3 s is 0.0025 -> *down at 4 decimals keeps 0.0025.
    rated = rounding_plan(tmp_path, "*down", 4).quote(
        tenant="t",
        category="call",
        subject="nickel",
        destination="100",
        answer_time=datetime(2025, 3, 3, 12, tzinfo=UTC),
        usage=timedelta(seconds=3),
    )
    assert rated.cost == Decimal("0.0025")


# --------------------------------------------------------------------------- max cost


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ("30s", "0.40"),  # 0.10 + 30 x 0.01, under the cap
        ("40s", "0.50"),  # exactly the cap
        ("2m", "0.50"),  # 0.10 + 1.20 = 1.30, capped at 0.50
    ],
)
def test_max_cost_free_caps_the_call(plan: TariffPlan, usage: str, expected: str) -> None:
    result = quote(plan, "+800100555", "2025-01-15T10:00:00Z", usage)
    assert result.cost == Decimal(expected)
    assert not result.disconnected
    assert result.allowed_usage == parse_duration(usage)


def test_max_cost_free_marks_the_part_it_made_free(plan: TariffPlan) -> None:
    result = quote(plan, "+800100555", "2025-01-15T10:00:00Z", "2m")
    assert [part.capped for part in result.parts] == [True]
    assert result.parts[0].cost == Decimal("0.40")  # 0.50 less the 0.10 connect fee


def test_max_cost_disconnect_ends_the_call_when_the_total_reaches_it(plan: TariffPlan) -> None:
    # 0.10 connect + 0.01/s: the total reaches 0.50 after 40 s, so a 2 minute call is cut
    # there and costs 0.50.
    result = quote(plan, "+800200555", "2025-01-15T10:00:00Z", "2m")
    assert result.disconnected
    assert result.allowed_usage == timedelta(seconds=40)
    assert result.cost == Decimal("0.50")


def test_max_cost_disconnect_leaves_shorter_calls_alone(plan: TariffPlan) -> None:
    result = quote(plan, "+800200555", "2025-01-15T10:00:00Z", "30s")
    assert not result.disconnected
    assert result.allowed_usage == timedelta(seconds=30)
    assert result.cost == Decimal("0.40")


def test_max_cost_disconnect_charges_the_increment_that_crosses_it(plan: TariffPlan) -> None:
    # 10 s steps of 0.07: after 7 steps 0.49 < 0.50, so the 8th is still charged (0.56);
    # then the total has reached MaxCost and the call ends at 80 s.
    result = quote(plan, "+800300555", "2025-01-15T10:00:00Z", "5m")
    assert result.disconnected
    assert result.allowed_usage == timedelta(seconds=80)
    assert result.cost == Decimal("0.56")


# --------------------------------------------------------------------------- profiles


def test_a_subject_without_a_profile_is_rated_by_the_any_subject(plan: TariffPlan) -> None:
    result = quote(plan, "+493012345", "2025-01-15T10:00:00Z", "1m", subject="nobody")
    assert (result.matched_subject, result.rating_plan) == ("*any", "RP_STANDARD")


def test_a_subject_uses_its_own_plan_first(plan: TariffPlan) -> None:
    # vip's plan prices Germany off-peak all the time: 0.05 + 0.03 at Wednesday noon.
    result = quote(plan, "+493012345", "2025-01-15T12:00:00Z", "1m", subject="vip")
    assert (result.matched_subject, result.rating_plan) == ("vip", "RP_VIP")
    assert result.cost == Decimal("0.0800")


def test_the_fallback_subject_prices_what_the_subjects_plan_does_not(plan: TariffPlan) -> None:
    # RP_VIP has no France; vip falls back to partner, whose RP_PARTNER prices +33.
    result = quote(plan, "+33145678900", "2025-01-15T12:00:00Z", "1m", subject="vip")
    assert (result.matched_subject, result.rating_plan) == ("partner", "RP_PARTNER")
    assert result.destination_id == "DST_FR"
    assert result.cost == Decimal("0.0800")


def test_an_unmatched_destination_is_unauthorized(plan: TariffPlan) -> None:
    with pytest.raises(UnauthorizedDestination) as raised:
        quote(plan, "+12025550100", "2025-01-15T12:00:00Z", "1m", subject="vip")
    assert raised.value.code == "UNAUTHORIZED_DESTINATION"
    assert isinstance(raised.value, RuleViolation)
    assert "+12025550100" in raised.value.message


def test_an_unknown_tenant_is_unauthorized(plan: TariffPlan) -> None:
    with pytest.raises(UnauthorizedDestination, match="no rating profile"):
        quote(plan, "+493012345", "2025-01-15T12:00:00Z", "1m", tenant="other.example")


def test_the_plan_active_at_the_calls_start_prices_it(tmp_path: Path) -> None:
    profiles = (
        "#Tenant,Category,Subject,ActivationTime,RatingPlanId,RatesFallbackSubject\n"
        "acme.example,call,*any,2024-01-01T00:00:00Z,RP_STANDARD,\n"
        "acme.example,call,*any,2025-02-01T00:00:00Z,RP_VIP,\n"
    )
    switching = TariffPlan.load(write_plan(tmp_path, **{"RatingProfiles.csv": profiles}))
    before = quote(switching, "+493012345", "2025-01-31T23:59:00Z", "5m")
    after = quote(switching, "+493012345", "2025-02-01T00:00:00Z", "5m")
    assert (before.rating_plan, after.rating_plan) == ("RP_STANDARD", "RP_VIP")
    with pytest.raises(UnauthorizedDestination):
        quote(switching, "+493012345", "2023-12-31T12:00:00Z", "1m")


def test_zero_usage_costs_nothing_but_still_needs_a_rate(plan: TariffPlan) -> None:
    result = quote(plan, "+493012345", "2025-01-15T12:00:00Z", "0s")
    assert (result.cost, result.connect_fee, result.parts) == (Decimal("0.0000"), Decimal(0), ())
    with pytest.raises(UnauthorizedDestination):
        quote(plan, "+12025550100", "2025-01-15T12:00:00Z", "0s")


def test_naive_times_and_negative_usage_are_refused(plan: TariffPlan) -> None:
    with pytest.raises(InvalidRequest):
        quote(plan, "+493012345", "2025-01-15T12:00:00", "1m")
    with pytest.raises(InvalidRequest):
        plan.quote(
            tenant="acme.example",
            category="call",
            subject="alice",
            destination="+493012345",
            answer_time=datetime(2025, 1, 15, tzinfo=UTC),
            usage=timedelta(seconds=-1),
        )


def test_the_json_form_carries_the_cost_the_fee_and_the_plan(plan: TariffPlan) -> None:
    shown = quote(plan, "+493012345", "2025-01-15T18:59:30Z", "150s").as_json()
    assert {key: shown[key] for key in ("cost", "connect_fee", "rating_plan")} == {
        "cost": "0.2650",
        "connect_fee": "0.10",
        "rating_plan": "RP_STANDARD",
    }
    assert shown["usage"] == "2m30s"


# --------------------------------------------------------------------------- formats


def test_the_older_column_sets_are_read_too(tmp_path: Path) -> None:
    # Rates with RoundingMethod,RoundingDecimals; DestinationRates with three columns;
    # RatingProfiles with a leading Direction and CdrStatQueueIds; a Time with an end.
    old = TariffPlan.load(
        write_plan(
            tmp_path,
            {
                "Destinations.csv": "#Tag,Prefix\nGERMANY,+49\n",
                "Timings.csv": "#Tag,Years,Months,MonthDays,WeekDays,Time\n"
                "DAYTIME,*any,*any,*any,*any,08:00:00;20:00:00\n",
                "Rates.csv": "#Tag,ConnectFee,Rate,RateUnit,RateIncrement,GroupIntervalStart,"
                "RoundingMethod,RoundingDecimals\nRT_1CENT,0,0.01,1s,1s,0s,*up,2\n",
                "DestinationRates.csv": "#Tag,DestinationsTag,RatesTag\n"
                "DR_RETAIL,GERMANY,RT_1CENT\n",
                "RatingPlans.csv": "#Tag,DestinationRatesTag,TimingTag,Weight\n"
                "RP_RETAIL,DR_RETAIL,DAYTIME,10\n",
                "RatingProfiles.csv": "#Direction,Tenant,Category,Subject,ActivationTime,"
                "RatingPlanId,RatesFallbackSubject,CdrStatQueueIds\n"
                "*out,cgrates.org,call,*any,2013-01-06T00:00:00Z,RP_RETAIL,,\n"
                "*in,cgrates.org,call,*any,2013-01-06T00:00:00Z,RP_MISSING_IS_IGNORED,,\n",
            },
        )
    )
    rated = old.quote(
        tenant="cgrates.org",
        category="call",
        subject="1001",
        destination="+4930123",
        answer_time=datetime(2025, 1, 15, 9, tzinfo=UTC),
        usage=timedelta(seconds=61),
    )
    assert rated.cost == Decimal("0.61")
    with pytest.raises(UnauthorizedDestination, match="no rate in force"):
        old.quote(
            tenant="cgrates.org",
            category="call",
            subject="1001",
            destination="+4930123",
            answer_time=datetime(2025, 1, 15, 21, tzinfo=UTC),
            usage=timedelta(seconds=61),
        )


def test_every_malformed_line_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    folder = write_plan(
        tmp_path,
        **{
            "Rates.csv": "#Id,ConnectFee,Rate,RateUnit,RateIncrement,GroupIntervalStart\n"
            "RT_PEAK,0.10,0.12,60s,60s,0s\n"
            "RT_BAD,0,abc,60s,1s,0s\n"
            "RT_SHORT,0,0.1\n"
            "RT_HUGE,0,1000000,60s,1s,0s\n",
            "Timings.csv": TIMINGS.replace("08:00:00", "8 o'clock"),
        },
    )
    (folder / "RatingPlans.csv").write_text(
        "#Id,DestinationRatesId,TimingTag,Weight\nRP_X,DR_NOPE,*any,10\nRP_X,DR_DE_PEAK,*any,heavy\n"
    )
    with pytest.raises(TariffPlanError) as raised:
        TariffPlan.load(folder)
    shown = [str(problem) for problem in raised.value.problems]
    assert 'Timings.csv:3: Time takes HH:MM:SS, not "8 o\'clock"' in shown
    assert "Rates.csv:3: Rate is not a decimal number: 'abc'" in shown
    assert "Rates.csv:4: expected 6 or 8 columns, found 3" in shown
    assert "Rates.csv:5: Rate is too large: '1000000' (amounts stay below 1,000,000)" in shown
    assert any(line.startswith("RatingPlans.csv:2: unknown DestinationRatesId") for line in shown)
    assert "RatingPlans.csv:3: Weight is not a decimal number: 'heavy'" in shown
    assert isinstance(raised.value, ValueError)
    assert "Rates.csv:3" in str(raised.value)


def test_references_to_missing_pieces_are_reported_where_they_are_made(tmp_path: Path) -> None:
    folder = write_plan(
        tmp_path,
        **{
            "DestinationRates.csv": DESTINATION_RATES + "DR_X,DST_NOWHERE,RT_PEAK,*up,4,0,\n"
            "DR_Y,DST_DE,RT_NONE,*sideways,4,0,\nDR_Z,DST_DE,RT_PEAK,*up,4,1,\n",
            "RatingProfiles.csv": RATING_PROFILES + "acme.example,call,bob,,RP_NONE,\n",
        },
    )
    with pytest.raises(TariffPlanError) as raised:
        TariffPlan.load(folder)
    shown = [str(problem) for problem in raised.value.problems]
    assert (
        "DestinationRates.csv:10: unknown DestinationId 'DST_NOWHERE' (not in Destinations.csv)"
        in shown
    )
    assert "RatingProfiles.csv:5: unknown RatingPlanId 'RP_NONE' (not in RatingPlans.csv)" in shown
    assert "DestinationRates.csv:11: unknown RatesTag 'RT_NONE' (not in Rates.csv)" in shown
    assert any(line.startswith("DestinationRates.csv:12: MaxCost is set") for line in shown)


def test_a_rate_needs_a_group_from_zero(tmp_path: Path) -> None:
    rates = RATES + "RT_LATE,0,0.1,60s,1s,60s\n"
    with pytest.raises(TariffPlanError, match=r"Rates.csv:11: rate RT_LATE has no group"):
        TariffPlan.load(write_plan(tmp_path, **{"Rates.csv": rates}))


def test_a_missing_file_is_reported_and_timings_may_be_left_out(tmp_path: Path) -> None:
    folder = write_plan(tmp_path)
    (folder / "RatingProfiles.csv").unlink()
    with pytest.raises(TariffPlanError) as raised:
        TariffPlan.load(folder)
    assert [str(problem) for problem in raised.value.problems] == [
        "RatingProfiles.csv: file is missing"
    ]
    only_any = write_plan(
        tmp_path / "only-any",
        **{
            "RatingPlans.csv": "#Id,DestinationRatesId,TimingTag,Weight\nRP_FR,DR_FR,*any,1\n",
            "RatingProfiles.csv": "#Tenant,Category,Subject,ActivationTime,RatingPlanId,"
            "RatesFallbackSubject\nacme.example,call,*any,,RP_FR,\n",
        },
    )
    (only_any / "Timings.csv").unlink()
    assert quote(TariffPlan.load(only_any), "+331", "2025-01-15T12:00:00Z", "1m").cost == Decimal(
        "0.0800"
    )


def test_a_folder_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TariffPlanError, match="not a folder"):
        TariffPlan.load(tmp_path / "absent")


# --------------------------------------------------------------------------- the docs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tariffplan.md"


@pytest.fixture(scope="module")
def documented_plan(tmp_path_factory: pytest.TempPathFactory) -> TariffPlan:
    """The worked example of docs/tariffplan.md, read from the page itself."""
    blocks = re.findall(r"\*\*`(\w+\.csv)`\*\*\n\n```csv\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert len(blocks) == 6
    return TariffPlan.load(write_plan(tmp_path_factory.mktemp("documented"), dict(blocks)))


@pytest.mark.parametrize(
    ("destination", "answer_time", "usage", "cost", "allowed"),
    [
        ("+442071234567", "2025-03-04T18:58:20Z", "181s", "0.2004", "181s"),
        ("+442071234567", "2025-03-08T10:00:00Z", "45s", "0.0500", "45s"),
        ("+442071234567", "2025-12-25T11:00:00Z", "2m30s", "0.0800", "2m30s"),
        ("+442071234567", "2025-12-18T11:00:00Z", "2m30s", "0.2150", "2m30s"),
        ("+447700900123", "2025-03-04T12:00:00Z", "5m", "0.60", "5m"),
        ("+447700900123", "2025-03-04T12:00:00Z", "12m", "1.00", "12m"),
        ("+12025550100", "2025-03-04T12:00:00Z", "10m", "0.1800", "10m"),
        ("+12025550100", "2025-03-04T12:00:00Z", "20m", "0.3006", "16m42s"),
        ("+448001234567", "2025-03-04T12:00:00Z", "20m", "0.00", "20m"),
    ],
)
def test_the_worked_example_in_the_docs_holds(
    documented_plan: TariffPlan,
    destination: str,
    answer_time: str,
    usage: str,
    cost: str,
    allowed: str,
) -> None:
    result = documented_plan.quote(
        tenant="example.net",
        category="call",
        subject="alice",
        destination=destination,
        answer_time=datetime.fromisoformat(answer_time),
        usage=parse_duration(usage),
    )
    assert str(result.cost) == cost
    assert result.allowed_usage == parse_duration(allowed)


def test_the_docs_unknown_number_is_unauthorized(documented_plan: TariffPlan) -> None:
    with pytest.raises(UnauthorizedDestination):
        documented_plan.quote(
            tenant="example.net",
            category="call",
            subject="alice",
            destination="+81312345678",
            answer_time=datetime(2025, 3, 4, 12, tzinfo=UTC),
            usage=timedelta(minutes=1),
        )


# --------------------------------------------------------------------------- properties


@pytest.fixture(scope="module")
def shared_plan(tmp_path_factory: pytest.TempPathFactory) -> TariffPlan:
    """One loaded plan for every Hypothesis example (a module fixture is not reset between
    examples, and the plan is immutable, so sharing it is safe)."""
    return TariffPlan.load(write_plan(tmp_path_factory.mktemp("retail")))


@settings(max_examples=60, deadline=None)
@given(
    start=st.datetimes(
        min_value=datetime(2024, 12, 28), max_value=datetime(2025, 1, 8), timezones=st.just(UTC)
    ),
    shorter=st.integers(0, 4 * 3600),
    extra=st.integers(0, 4 * 3600),
    destination=st.sampled_from(["+493012345", "+4915112345", "+800100555", "+800300555"]),
)
def test_cost_never_decreases_as_usage_grows(
    shared_plan: TariffPlan, start: datetime, shorter: int, extra: int, destination: str
) -> None:
    costs = [
        shared_plan.quote(
            tenant="acme.example",
            category="call",
            subject="alice",
            destination=destination,
            answer_time=start,
            usage=timedelta(seconds=seconds),
        ).cost
        for seconds in (shorter, shorter + extra)
    ]
    assert costs[0] <= costs[1]
