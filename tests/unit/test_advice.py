"""Funding advice (R-55) on synthetic spend with known answers; no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from commcredits.domain import advice
from commcredits.domain.advice import (
    RatedCall,
    basis_window,
    mean,
    monthly_projection,
    percentile,
    project_balance,
    recommend,
    spend_by_day,
)
from commcredits.domain.ledger import Lot
from commcredits.domain.pools import PoolKey

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
DAY = timedelta(days=1)
D = Decimal


def _lot(lot_id: str, remaining: str, expires_in: timedelta, amount: str | None = None) -> Lot:
    expires = NOW + expires_in
    return Lot(
        id=lot_id,
        source="deposit",
        amount=D(amount or remaining),
        remaining=D(remaining),
        purchased_at=expires - timedelta(days=365),
        expires_at=expires,
    )


# -- percentiles ---------------------------------------------------------------------------------


def test_nearest_rank_percentiles_are_days_that_happened() -> None:
    one_to_ten = [D(n) for n in range(10, 0, -1)]
    assert percentile(one_to_ten, 50) == 5
    assert percentile(one_to_ten, 95) == 10
    one_to_twenty = [D(n) for n in range(1, 21)]
    assert percentile(one_to_twenty, 50) == 10
    assert percentile(one_to_twenty, 95) == 19
    assert percentile([D("7.25")], 95) == D("7.25")


def test_percentiles_and_means_of_nothing_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        percentile([], 50)
    with pytest.raises(ValueError, match="percent"):
        percentile([D(1)], 0)
    with pytest.raises(ValueError, match="at least one"):
        mean([])


def test_the_mean_is_exact_decimal() -> None:
    assert mean([D("10.00"), D("0"), D("5.00")]) == D(5)
    assert mean([D("0.01"), D("0.02")]) == D("0.015")


# -- the basis -----------------------------------------------------------------------------------


def test_the_basis_is_at_most_90_complete_days_from_the_first_usage() -> None:
    assert basis_window(TODAY, TODAY - timedelta(days=200)) == (TODAY - 90 * DAY, TODAY)
    assert basis_window(TODAY, TODAY - timedelta(days=12)) == (TODAY - 12 * DAY, TODAY)


def test_an_organization_that_started_today_or_never_is_advised_from_today_alone() -> None:
    assert basis_window(TODAY, TODAY) == (TODAY, TODAY + DAY)
    assert basis_window(TODAY, None) == (TODAY, TODAY + DAY)


# -- the recommendation --------------------------------------------------------------------------


def test_trigger_is_three_p95_days_recharge_two_weeks_and_deposit_both() -> None:
    found = recommend(D("20.00"), D("10.00"), "USD", minimum_deposit=D("50.00"))
    assert (found.trigger, found.recharge, found.deposit) == (D("60.00"), D("140.00"), D("200.00"))


def test_recommended_amounts_are_rounded_up_to_the_minor_unit() -> None:
    found = recommend(D("5.001"), D(10) / 3, "USD", minimum_deposit=D("50.00"))
    assert found.trigger == D("15.01")
    assert found.recharge == D("46.67")
    assert found.deposit == D("61.68")
    yen = recommend(D("1000.4"), D("1000"), "JPY", minimum_deposit=D("5000"))
    assert (yen.trigger, yen.recharge, yen.deposit) == (D("3002"), D("14000"), D("17002"))


def test_recommended_amounts_never_fall_below_the_minimums() -> None:
    found = recommend(D(0), D(0), "USD", minimum_deposit=D("50.00"))
    assert found.trigger == advice.MIN_TRIGGER == D("10.00")
    assert found.recharge == D("10.00")
    assert found.deposit == D("50.00")


def test_advice_on_a_month_of_known_spend() -> None:
    """30 days: 20 at 10.00, 8 quiet days and 2 busy days at 50.00.

    Sorted, the 15th day is 10.00 (p50) and the 29th 50.00 (p95); the mean is 300/30 = 10.00.
    Trigger 3 x 50 = 150, recharge 14 x 10 = 140, deposit 290. A 1,000.00 balance lasts 100 days.
    """
    start = TODAY - 30 * DAY
    amounts = [D("10.00")] * 20 + [D(0)] * 8 + [D("50.00")] * 2
    spend = {start + i * DAY: amount for i, amount in enumerate(amounts) if amount}
    found = advice.advise(
        spend,
        [_lot("lot_1", "1000.00", 300 * DAY)],
        NOW,
        "USD",
        minimum_deposit=D("50.00"),
        first_day=start - 100 * DAY,  # older history: the basis is cut to 90 days
    )
    assert found.basis_days == 90
    assert not found.short_basis
    # 68 zero days, then 20 at 10.00: rank 45 is zero, rank 86 is 10.00.
    assert (found.daily_spend_p50, found.daily_spend_p95) == (D(0), D("10.00"))
    assert found.daily_spend_mean == D(300) / 90

    recent = advice.advise(
        spend,
        [_lot("lot_1", "1000.00", 300 * DAY)],
        NOW,
        "USD",
        minimum_deposit=D("50.00"),
        first_day=start,
    )
    assert (recent.basis_days, recent.basis_from, recent.basis_to) == (30, start, TODAY - DAY)
    assert recent.short_basis is False
    assert recent.daily_spend_p50 == D("10.00")
    assert recent.daily_spend_p95 == D("50.00")
    assert recent.daily_spend_mean == D("10.00")
    assert recent.recommendation.trigger == D("150.00")
    assert recent.recommendation.recharge == D("140.00")
    assert recent.recommendation.deposit == D("290.00")
    assert recent.runway.days_until_empty == 100
    assert recent.runway.empty_at == NOW + 100 * DAY
    assert recent.runway.expiring_unused == ()


def test_a_short_history_is_flagged() -> None:
    spend = {TODAY - 3 * DAY: D("4.00"), TODAY - DAY: D("2.00")}
    found = advice.advise(
        spend, [], NOW, "USD", minimum_deposit=D("50.00"), first_day=TODAY - 3 * DAY
    )
    assert (found.basis_days, found.short_basis) == (3, True)
    assert found.daily_spend_mean == D(2)
    assert (found.daily_spend_p50, found.daily_spend_p95) == (D("2.00"), D("4.00"))


# -- the runway ----------------------------------------------------------------------------------


def test_days_until_empty_at_a_pace_that_divides_the_balance() -> None:
    runway = project_balance([_lot("a", "100.00", 300 * DAY)], D("10.00"), NOW)
    assert (runway.balance, runway.days_until_empty) == (D("100.00"), 10)
    assert runway.empty_at == NOW + 10 * DAY


def test_the_last_day_runs_out_part_way() -> None:
    runway = project_balance([_lot("a", "100.00", 300 * DAY)], D("30.00"), NOW)
    assert runway.days_until_empty == 3
    assert runway.empty_at == NOW + 3 * DAY + timedelta(hours=8)  # 10.00 of 30.00: a third


def test_a_lot_that_expires_first_forfeits_what_the_pace_did_not_use() -> None:
    """A (100, expires in 5 days) pays days 0-4 (50) and forfeits 50; B (100) pays 10 days."""
    lots = [_lot("b", "100.00", 300 * DAY), _lot("a", "100.00", 5 * DAY)]
    runway = project_balance(lots, D("10.00"), NOW)
    assert runway.balance == D("200.00")
    assert runway.days_until_empty == 15
    assert runway.empty_at == NOW + 15 * DAY
    [expiring] = runway.expiring_unused
    assert (expiring.lot_id, expiring.remaining, expiring.unused) == ("a", D(100), D(50))
    assert expiring.expires_at == NOW + 5 * DAY


def test_without_spend_the_balance_lasts_until_its_lots_expire_unused() -> None:
    runway = project_balance(
        [_lot("a", "40.00", 40 * DAY + timedelta(hours=6), amount="50.00")], D(0), NOW
    )
    assert runway.days_until_empty == 40
    assert runway.empty_at == NOW + 40 * DAY + timedelta(hours=6)
    [expiring] = runway.expiring_unused
    assert (expiring.remaining, expiring.unused) == (D("40.00"), D("40.00"))


def test_no_money_means_empty_now_and_expired_or_used_lots_do_not_count() -> None:
    assert project_balance([], D(5), NOW).days_until_empty == 0
    spent = _lot("used", "0", 100 * DAY, amount="10.00")
    gone = Lot("gone", "deposit", D(10), D(10), NOW - 400 * DAY, NOW - DAY)
    runway = project_balance([spent, gone], D(5), NOW)
    assert (runway.balance, runway.days_until_empty, runway.empty_at) == (D(0), 0, NOW)
    assert runway.expiring_unused == ()


def test_a_negative_pace_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        project_balance([], D(-1), NOW)


# -- sizing from past calls ----------------------------------------------------------------------


def test_month_by_month_projection_of_rated_calls() -> None:
    dec = datetime(2025, 12, 3, 10, tzinfo=UTC)
    jan = datetime(2026, 1, 7, 10, tzinfo=UTC)
    pool_dec = PoolKey("US", "MCOPSTN1", "2025-12")
    pool_jan = PoolKey("US", "MCOPSTN1", "2026-01")
    calls = [
        RatedCall(dec, True, funding="pool", pool=pool_dec, pool_minutes=3),
        RatedCall(dec, True, funding="pool", pool=pool_dec, pool_minutes=2, charge=D("1.50")),
        RatedCall(dec + DAY, True, funding="credits", charge=D("2.25")),
        RatedCall(jan, False, reason="no_license"),
        RatedCall(jan, True, funding="overage", charge=D("4.00")),
    ]
    sizes = {"2025-12": {pool_dec: 3000}, "2026-01": {pool_jan: 3000}}
    december, january = monthly_projection(calls, sizes)
    assert (december.month, december.calls, december.refused) == ("2025-12", 3, 0)
    assert [(p.pool, p.size, p.used) for p in december.pools] == [(pool_dec, 3000, 5)]
    assert (december.credit_spend, december.overage_spend) == (D("3.75"), D(0))
    assert (january.month, january.calls, january.refused) == ("2026-01", 2, 1)
    assert [(p.pool, p.size, p.used) for p in january.pools] == [(pool_jan, 3000, 0)]
    assert (january.credit_spend, january.overage_spend) == (D(0), D("4.00"))
    assert spend_by_day(calls) == {dec.date(): D("1.50"), (dec + DAY).date(): D("2.25")}


def test_a_pool_drawn_on_without_a_size_is_listed_with_size_zero() -> None:
    key = PoolKey("GB", "MCOPSTN1", "2026-01")
    [month] = monthly_projection(
        [RatedCall(datetime(2026, 1, 2, tzinfo=UTC), True, "", "pool", key, 4)], {}
    )
    assert [(p.size, p.used) for p in month.pools] == [(0, 4)]


def test_the_basis_of_a_call_file_ends_on_its_last_day() -> None:
    first, last = date(2025, 11, 1), date(2025, 11, 30)
    found = advice.advise(
        {first: D("3.00"), last: D("3.00")},
        [],
        NOW,
        "USD",
        minimum_deposit=D("50.00"),
        first_day=first,
        basis_end=last + DAY,
    )
    assert (found.basis_from, found.basis_to, found.basis_days) == (first, last, 30)
    assert found.daily_spend_mean == D("0.2")
    assert found.daily_spend_p95 == D("3.00")  # rank 29 of 30: one of the two busy days
