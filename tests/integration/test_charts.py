"""Charts read exactly from calls, the ledger and the pools, and drawn as PNG and SVG, on
SQLite and PostgreSQL."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from matplotlib.image import imread

from commcredits.app import Container
from commcredits.domain.errors import InvalidRequest, NotFound
from commcredits.services.calls import CallRequest, CdrRecord
from commcredits.services.charts import (
    BalanceHistory,
    ChartData,
    Charts,
    DailySpend,
    PoolUsage,
    TopDestinations,
)
from commcredits.services.credits import AutoRechargeSettings, NewOrder
from commcredits.services.orgs import NewOrganization
from commcredits.services.reports import DateRange
from tests.integration.test_credits_rules import (
    auto,
    entries,
    funded_org,
    set_clock_without_jobs,
    spend,
)

pytestmark = pytest.mark.usefixtures("ledger_checked")

HEADER = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,"
    "currency,effective_from,effective_to,description\n"
)
RATES = HEADER + (
    "outbound,,US,any,0.10,,60,60,USD,2020-01-01,,US\n"
    "outbound,,FR,any,0.25,,60,60,USD,2020-01-01,,France\n"
    "outbound,,GB,any,0.40,,60,60,USD,2020-01-01,,United Kingdom\n"
)
PAYG = ["MCOEV", "MCOPSTN_PAYG_1", "MCOPSTNPP"]
PLAN = ["MCOEV", "MCOPSTN1", "MCOPSTNPP"]
ANN, ANN_NUMBER = "ann@contoso.com", "+12125550100"
BOB, BOB_NUMBER = "bob@contoso.com", "+12125550101"
US_FIXED, FR_FIXED, GB_FIXED = "+12125550199", "+33142685300", "+442071234567"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The simulated clock starts at 2026-01-15T09:00:00Z (tests/conftest.py).
WEEK = DateRange(date(2026, 1, 9), date(2026, 1, 15), 7)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _charts(container: Container) -> Charts:
    return Charts(container.store, container.clock, container.calls)


def _org(container: Container, name: str = "Contoso") -> str:
    """A US organization with 100.00 of credits, Ann paying as she goes, Bob on a plan."""
    org = container.orgs.create(NewOrganization(name, "US", "USD", "prepaid"))
    method = container.credits.add_agreement(org.id, "EA-1")
    container.credits.place_order(org.id, NewOrder("100.00", method.id))
    for sku in ("MCOEV", "MCOPSTN1", "MCOPSTN_PAYG_1"):
        container.directory.set_subscription(org.id, sku, 5, actor="t")
    for upn, licenses in ((ANN, PAYG), (BOB, PLAN)):
        container.directory.create_user(org.id, upn, upn[:3].title(), "US", actor="t")
        container.directory.change_licenses(org.id, upn, licenses, [], actor="t")
    return org.id


def _cdr(call_id: str, start: str, seconds: int, to: str, user: str = ANN) -> CdrRecord:
    number = ANN_NUMBER if user == ANN else BOB_NUMBER
    return CdrRecord(call_id, "user_out", user, number, to, _at(start), seconds)


def _usage(container: Container, org_id: str) -> dict[str, tuple[str, str, Decimal]]:
    """Calls over three days, by CDR and one live; returns call id -> (day, funding, charge)."""
    results = container.calls.import_cdrs(
        org_id,
        [
            _cdr("fr-1", "2026-01-13T08:00:00+00:00", 125, FR_FIXED),
            _cdr("us-1", "2026-01-13T09:00:00+00:00", 61, US_FIXED),
            _cdr("gb-1", "2026-01-14T10:00:00+00:00", 300, GB_FIXED),
            _cdr("fr-2", "2026-01-14T11:00:00+00:00", 60, FR_FIXED),
            _cdr("pool-1", "2026-01-14T12:00:00+00:00", 61, US_FIXED, user=BOB),
            _cdr("pool-2", "2026-01-13T12:00:00+00:00", 120, US_FIXED, user=BOB),
        ],
    )
    assert [r.status for r in results] == ["charged"] * 6, results
    live = container.calls.authorize(
        org_id, CallRequest("live", "user_out", ANN, ANN_NUMBER, US_FIXED)
    )
    assert live.decision == "allow"
    container.calls.end(org_id, "live", 90)
    records = [r.record for r in results] + [container.calls.get(org_id, "live")]
    return {
        r.call_id: (r.start_time.date().isoformat(), r.funding or "", r.charge)
        for r in records
        if r is not None
    }


# -- the data --------------------------------------------------------------------------------


def test_daily_spend_per_funding_source_and_day_is_the_exact_sum_of_the_charges(
    container: Container,
) -> None:
    container.rating.load(RATES)
    org_id = _org(container)
    calls = _usage(container, org_id)
    other = _org(container, "Fabrikam")
    container.calls.import_cdrs(other, [_cdr("x", "2026-01-14T08:00:00+00:00", 600, GB_FIXED)])

    data = _charts(container).daily_spend(org_id, WEEK)

    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for day, funding, charge in calls.values():
        expected[day, funding] += charge
    assert {funding for _, funding in expected} == {"credits", "pool"}
    assert data.sources == ("credits", "pool")
    assert data.currency == "USD"
    assert [d.day for d in data.days] == [date(2026, 1, 9) + timedelta(n) for n in range(7)]
    for spent in data.days:
        for source in data.sources:
            assert spent.amounts[source] == expected[spent.day.isoformat(), source]
    by_day = {d.day.isoformat(): d for d in data.days}
    # FR 125 s: 3 minutes at 0.25; US 61 s: 2 minutes at 0.10 (the other org's call is not here).
    assert by_day["2026-01-13"].amounts["credits"] == Decimal("0.95")
    assert by_day["2026-01-14"].amounts["credits"] == Decimal("2.25")
    assert by_day["2026-01-15"].amounts["credits"] == Decimal("0.20")
    assert by_day["2026-01-14"].amounts["pool"] == Decimal(0)
    assert sum(d.total for d in data.days) == sum(c for _, _, c in calls.values())
    assert data.as_json()["days"][4] == {
        "day": "2026-01-13",
        "amounts": {"credits": "0.95", "pool": "0.00"},
        "total": "0.95",
    }


def test_the_balance_is_the_ledger_balance_at_each_day_end_with_recharges_and_expiries(
    container: Container,
) -> None:
    org, _ = funded_org(container, "100.00", auto_recharge=auto("30.00", "50.00"))
    set_clock_without_jobs(container, _at("2026-01-16T10:00:00+00:00"))
    spend(container, org.id, "20.00")
    set_clock_without_jobs(container, _at("2026-01-18T10:00:00+00:00"))
    spend(container, org.id, "55.00")  # 25.00 left, below 30.00: a recharge of 50.00
    set_clock_without_jobs(container, _at("2026-01-20T10:00:00+00:00"))
    charts = _charts(container)

    january = charts.balance(org.id, charts.date_range(from_="2026-01-14", to="2026-01-21"))

    # Today is the 20th: no point for the 21st, which has not happened yet.
    assert [(p.day.day, p.balance) for p in january.points] == [
        (14, Decimal(0)),
        (15, Decimal("100.00")),
        (16, Decimal("80.00")),
        (17, Decimal("80.00")),
        (18, Decimal("75.00")),
        (19, Decimal("75.00")),
        (20, Decimal("75.00")),
    ]
    assert [(e.kind, e.at.day, e.amount, e.balance_after) for e in january.events] == [
        ("deposit", 15, Decimal("100.00"), Decimal("100.00")),
        ("recharge", 18, Decimal("50.00"), Decimal("75.00")),
    ]

    container.credits.set_auto_recharge(org.id, AutoRechargeSettings(enabled=False))
    set_clock_without_jobs(container, _at("2027-01-16T10:00:00+00:00"))
    container.credits.expire_lots()  # the deposit's 12 months are over: 25.00 forfeited
    year_later = charts.balance(org.id, charts.date_range(days=7))

    ledger = entries(container, org.id)
    for point in year_later.points:
        before = [e for e in ledger if e.at.date() <= point.day]
        assert point.balance == before[-1].balance_after
    assert year_later.opening == Decimal("75.00")
    assert [(e.kind, e.amount, e.balance_after) for e in year_later.events] == [
        ("expiry", Decimal("-25.00"), Decimal("50.00"))
    ]
    assert year_later.points[-1].balance == Decimal("50.00")
    assert year_later.as_json()["events"][0]["amount"] == "-25.00"


def test_pools_show_minutes_used_against_each_pool_size(container: Container) -> None:
    container.rating.load(RATES)
    org_id = _org(container)
    _usage(container, org_id)

    data = _charts(container).pools(org_id, "2026-01")

    expected = container.calls.pools(org_id, "2026-01")
    assert [(p.capability, p.country, p.size, p.used) for p in data.pools] == [
        (key.capability, key.country, total, used) for key, total, used in expected
    ]
    [plan] = [p for p in data.pools if p.capability == "MCOPSTN1"]
    # 61 s and 120 s: two whole minutes each, rounded up.
    assert (plan.used, plan.unit, plan.label) == (4, "minutes", "US MCOPSTN1")
    assert plan.size > 0
    assert _charts(container).pools(org_id).month == "2026-01"
    assert _charts(container).pools(org_id, "2025-12").month == "2025-12"


def test_top_destinations_are_ordered_by_charge_and_leave_out_free_calls(
    container: Container,
) -> None:
    container.rating.load(RATES)
    org_id = _org(container)
    calls = _usage(container, org_id)

    data = _charts(container).top_destinations(org_id, WEEK)

    # GB 5 min at 0.40 = 2.00; FR 3 + 1 min at 0.25 = 1.00; US 2 + 2 min at 0.10 = 0.40
    # (Bob's pool minutes cost nothing and count for nothing here).
    assert [(d.country, d.country_name, d.calls, d.charge) for d in data.destinations] == [
        ("GB", "United Kingdom", 1, Decimal("2.00")),
        ("FR", "France", 2, Decimal("1.00")),
        ("US", "United States", 4, Decimal("0.40")),
    ]
    assert sum(d.charge for d in data.destinations) == sum(c for _, _, c in calls.values())
    assert data.destinations[1].seconds == 185
    top_two = _charts(container).top_destinations(org_id, WEEK, limit=2)
    assert [d.country for d in top_two.destinations] == ["GB", "FR"]
    with pytest.raises(InvalidRequest):
        _charts(container).top_destinations(org_id, WEEK, limit=0)


def test_an_unknown_chart_or_organization_is_not_found(container: Container) -> None:
    org_id = _org(container)
    charts = _charts(container)
    with pytest.raises(NotFound) as unknown:
        charts.chart("pie", org_id)
    assert unknown.value.code == "chart_not_found"
    with pytest.raises(NotFound) as nobody:
        charts.chart("balance", "org_missing")
    assert nobody.value.code == "organization_not_found"
    with pytest.raises(InvalidRequest):
        charts.chart("pools", org_id, days=7)
    with pytest.raises(InvalidRequest):
        charts.chart("balance", org_id, month="2026-01")


# -- drawing ---------------------------------------------------------------------------------


def _all_charts(container: Container, org_id: str) -> list[ChartData]:
    charts = _charts(container)
    return [
        charts.daily_spend(org_id, WEEK),
        charts.balance(org_id, WEEK),
        charts.pools(org_id, "2026-01"),
        charts.top_destinations(org_id, WEEK),
    ]


def _check_drawn(charts: Charts, data: ChartData) -> None:
    png = charts.render(data, "png")
    assert png.startswith(PNG_SIGNATURE)
    pixels = imread(io.BytesIO(png), format="png")
    assert pixels.shape[:2] == (450, 800)
    assert len(png) < 100_000

    svg = charts.render(data, "svg")
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = "".join(root.itertext())
    assert data.title in texts
    assert charts.render(data, "svg") == svg


def test_every_chart_draws_as_a_png_that_decodes_and_the_same_svg_bytes_each_time(
    container: Container,
) -> None:
    container.rating.load(RATES)
    org_id = _org(container)
    _usage(container, org_id)
    charts = _charts(container)
    drawn = _all_charts(container, org_id)
    assert [type(d) for d in drawn] == [DailySpend, BalanceHistory, PoolUsage, TopDestinations]
    for data in drawn:
        _check_drawn(charts, data)
    svg = charts.render(drawn[0], "svg").decode()
    assert "Spend (USD)" in svg
    assert "Credits" in svg


def test_charts_of_an_organization_without_usage_still_draw(container: Container) -> None:
    org = container.orgs.create(NewOrganization("Empty", "JP", "JPY", "prepaid"))
    charts = _charts(container)
    for data in _all_charts(container, org.id):
        _check_drawn(charts, data)
    with pytest.raises(InvalidRequest):
        charts.render(charts.balance(org.id, WEEK), "gif")


def test_the_svg_depends_on_the_data(container: Container) -> None:
    container.rating.load(RATES)
    org_id = _org(container)
    charts = _charts(container)
    before = charts.render(charts.daily_spend(org_id, WEEK), "svg")
    _usage(container, org_id)
    after = charts.render(charts.daily_spend(org_id, WEEK), "svg")
    assert before != after
    # Nothing of the day it was drawn is written into the file.
    assert str(datetime.now(UTC).date()).encode() not in after
