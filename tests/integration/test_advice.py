"""Funding advice from charged calls, the forecast mail, and sizing from a call file (R-55)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.datastructures import State
from litestar.testing import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from commcredits.api.auth import authorize
from commcredits.api.errors import EXCEPTION_HANDLERS
from commcredits.api.routes import advice as advice_routes
from commcredits.app import Container
from commcredits.domain.errors import InvalidRequest
from commcredits.services.advice import FORECAST_KIND, Advisor
from commcredits.services.calls import CdrRecord
from commcredits.services.credits import AutoRechargeSettings, NewOrder
from commcredits.services.orgs import NewOrganization
from commcredits.store import tables
from tests.conftest import OPERATOR_KEY

D = Decimal
HEADER = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,"
    "currency,effective_from,effective_to,description\n"
)
RATES = (
    HEADER
    + "outbound,,US,any,5.00,,60,60,USD,2020-01-01,,US (test)\n"
    + "outbound,,FR,any,1.00,,60,60,USD,2020-01-01,,FR (test)\n"
)
ANN = "ann@contoso.com"
ANN_NUMBER = "+12125550100"
US_FIXED = "+12125550199"
FR_FIXED = "+33142685300"
PAYG = ["MCOEV", "MCOPSTN_PAYG_1", "MCOPSTNPP"]
PLAN = ["MCOEV", "MCOPSTN1", "MCOPSTNPP"]


def _advisor(container: Container) -> Advisor:
    return advice_routes.advisor_of(container)


def _org(container: Container, deposit: str, licenses: list[str]) -> tuple[str, str]:
    container.rating.load(RATES)
    org = container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid", False))
    method = container.credits.add_agreement(org.id, "EA-1")
    container.credits.place_order(org.id, NewOrder(deposit, method.id))
    for sku in ("MCOEV", "MCOPSTN1", "MCOPSTN_PAYG_1"):
        container.directory.set_subscription(org.id, sku, 5, actor="t")
    container.directory.create_user(org.id, ANN, "Ann", "US", actor="t")
    container.directory.change_licenses(org.id, ANN, licenses, [], actor="t")
    return org.id, method.id


def _charge_days(container: Container, org_id: str, minutes_per_day: list[int]) -> None:
    """Day by day, charge ``minutes`` one-minute calls to the US (5.00 each), then move on."""
    start = container.clock.now()
    for day, minutes in enumerate(minutes_per_day):
        container.clock.set(start + timedelta(days=day))  # type: ignore[attr-defined]
        at = container.clock.now()
        records = [
            CdrRecord(f"d{day}-{n}", "user_out", ANN, ANN_NUMBER, US_FIXED, at, 60)
            for n in range(minutes)
        ]
        assert {r.status for r in container.calls.import_cdrs(org_id, records)} <= {"charged"}
    container.clock.set(start + timedelta(days=len(minutes_per_day)))  # type: ignore[attr-defined]


@pytest.mark.usefixtures("ledger_checked")
def test_advice_from_ten_days_of_charged_calls(container: Container) -> None:
    """Days alternate 5.00 and 10.00: p50 5.00, p95 10.00, mean 7.50; trigger 30.00, recharge
    105.00, deposit 135.00; 925.00 left lasts 123 whole days."""
    org_id, _ = _org(container, "1000.00", PAYG)
    _charge_days(container, org_id, [1, 2] * 5)
    found = _advisor(container).advice(org_id)
    advice = found.advice
    assert (advice.basis_days, advice.short_basis) == (10, True)
    assert (advice.daily_spend_p50, advice.daily_spend_p95) == (D("5.00"), D("10.00"))
    assert advice.daily_spend_mean == D("7.5")
    recommended = advice.recommendation
    assert (recommended.trigger, recommended.recharge) == (D("30.00"), D("105.00"))
    assert recommended.deposit == D("135.00")
    assert advice.runway.balance == D("925.00")
    assert advice.runway.days_until_empty == 123
    assert advice.runway.empty_at.date() == (found.at + timedelta(days=123)).date()
    assert advice.runway.expiring_unused == ()
    assert found.auto_recharge is False


@pytest.mark.usefixtures("ledger_checked")
def test_a_week_of_calls_imported_in_one_batch_is_seven_days_of_spend(
    container: Container,
) -> None:
    """R-55: daily spend follows the calls' own start times, not the import's. One 5.00 call
    on each of the last seven days, all imported today: seven days of 5.00, not one of 35.00
    (which would put p95 and the trigger at seven times the pace)."""
    org_id, _ = _org(container, "1000.00", PAYG)
    now = container.clock.now()
    records = [
        CdrRecord(f"w{day}", "user_out", ANN, ANN_NUMBER, US_FIXED, now - timedelta(days=day), 60)
        for day in range(1, 8)
    ]
    assert {r.status for r in container.calls.import_cdrs(org_id, records)} == {"charged"}
    with container.store.unit_of_work(read_only=True) as uow:
        debited = uow.conn.execute(
            select(func.count(func.distinct(func.date(tables.ledger_entries.c.at)))).where(
                tables.ledger_entries.c.org_id == org_id,
                tables.ledger_entries.c.kind == "usage",
            )
        ).scalar_one()
    assert debited == 1
    advice = _advisor(container).advice(org_id).advice
    assert advice.basis_days == 7
    assert (advice.daily_spend_p50, advice.daily_spend_p95) == (D("5.00"), D("5.00"))
    assert advice.daily_spend_mean == D("5")
    assert advice.runway.balance == D("965.00")
    assert advice.runway.days_until_empty == 193


@pytest.mark.parametrize("late", [False, True], ids=["debited-then", "imported-today"])
@pytest.mark.usefixtures("ledger_checked")
def test_a_history_older_than_the_basis_is_cut_to_90_days(container: Container, late: bool) -> None:
    """A first call 120 days ago, then quiet until ten days of 10.00: the basis is the last
    90 days whole (80 of them without spend), not the ten busy days, whether that first call
    was debited 120 days ago or only imported today from a batch of old CDRs."""
    org_id, _ = _org(container, "1000.00", PAYG)
    began = container.clock.now()
    if late:
        _charge_days(container, org_id, [0] * 110 + [2] * 10)
        old = CdrRecord("old", "user_out", ANN, ANN_NUMBER, US_FIXED, began, 60)
        assert container.calls.import_cdrs(org_id, [old])[0].status == "charged"
    else:
        _charge_days(container, org_id, [1] + [0] * 109 + [2] * 10)
    advice = _advisor(container).advice(org_id).advice
    assert advice.basis_days == 90
    assert advice.basis_from == (began + timedelta(days=30)).date()
    assert advice.daily_spend_mean == D("100.00") / 90


@pytest.mark.usefixtures("ledger_checked")
def test_an_organization_without_usage_gets_the_minimums(container: Container) -> None:
    org_id, _ = _org(container, "50.00", PAYG)
    advice = _advisor(container).advice(org_id).advice
    assert advice.basis_days == 1
    assert advice.daily_spend_p95 == D(0)
    recommended = advice.recommendation
    assert (recommended.deposit, recommended.trigger, recommended.recharge) == (
        D("50.00"),
        D("10.00"),
        D("10.00"),
    )
    # Nothing is spent: the deposit lasts until it expires, unused, twelve months on.
    [lot] = advice.runway.expiring_unused
    assert lot.unused == D("50.00")


def _forecasts(container: Container, org_id: str) -> list[Any]:
    return container.mailer.list_for_org(org_id, kind=FORECAST_KIND)


@pytest.mark.usefixtures("ledger_checked")
def test_the_forecast_mail_goes_out_once_when_the_balance_runs_out_within_a_week(
    container: Container,
) -> None:
    """50.00 less 3 x 10.00 leaves 20.00 at 10.00 a day: two days."""
    org_id, _ = _org(container, "50.00", PAYG)
    container.orgs.add_admin(org_id, "billing@contoso.example", "Billing", ["billing_admin"])
    _charge_days(container, org_id, [2, 2, 2])
    advisor = _advisor(container)
    assert advisor.advice(org_id).advice.runway.days_until_empty == 2
    assert advisor.forecast_notices() == 1
    [message] = _forecasts(container, org_id)
    assert message.recipients == ("billing@contoso.example",)
    assert "run out in about 2 days" in message.subject
    assert "20.00 USD" in message.body_text
    # The next day it is still under a week, but one mail a week is enough.
    next_check = advisor.next_forecast_at()
    assert next_check is not None
    assert next_check > container.clock.now()
    container.clock.set(next_check)  # type: ignore[attr-defined]
    assert advisor.forecast_notices() == 0
    assert len(_forecasts(container, org_id)) == 1


@pytest.mark.usefixtures("ledger_checked")
def test_no_forecast_mail_with_auto_recharge_on(container: Container) -> None:
    org_id, method_id = _org(container, "50.00", PAYG)
    _charge_days(container, org_id, [2, 2, 2])
    container.credits.set_auto_recharge(
        org_id, AutoRechargeSettings(True, "5.00", "50.00", method_id)
    )
    advisor = _advisor(container)
    assert advisor.next_forecast_at() is None  # no organization could need the mail
    assert advisor.forecast_notices() == 0
    assert _forecasts(container, org_id) == []


@pytest.mark.usefixtures("ledger_checked")
def test_no_forecast_mail_while_the_balance_lasts_a_week(container: Container) -> None:
    org_id, _ = _org(container, "100.00", PAYG)
    _charge_days(container, org_id, [1, 1])  # 90.00 left at 5.00 a day: 18 days
    assert _advisor(container).forecast_notices() == 0
    assert _forecasts(container, org_id) == []


CALL_FILE = (
    "Start Time,Duration,Caller,Destination,Direction\n"
    f"2025-12-01T10:00:00Z,120,{ANN},{US_FIXED},outbound\n"
    f"2025-12-02T10:00:00Z,0:01:00,{ANN},{FR_FIXED},outbound\n"
    f"2025-12-05 11:00:00,300,{US_FIXED},{ANN_NUMBER},inbound\n"
    f"2026-01-03T10:00:00Z,120,+12125550111,{FR_FIXED},out\n"
    f"2026-01-03T11:00:00Z,abc,{ANN},{FR_FIXED},outbound\n"
)


def _rows(text: str) -> list[dict[str, str]]:
    return advice_routes.read_csv(text.encode())


def _snapshot(container: Container) -> dict[str, Any]:
    counted = (
        tables.ledger_entries,
        tables.calls,
        tables.pool_usage,
        tables.outbox,
        tables.credit_orders,
    )
    with container.store.unit_of_work(read_only=True) as uow:
        state: dict[str, Any] = {
            t.name: uow.conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in counted
        }
        state["lots"] = sorted(
            (r.id, r.remaining_micros) for r in uow.conn.execute(select(tables.lots))
        )
        state["balance"] = uow.conn.execute(
            select(tables.credit_accounts.c.balance_micros)
        ).scalar_one()
    return state


@pytest.mark.usefixtures("ledger_checked")
def test_sizing_from_a_call_file_rates_through_todays_licenses_and_writes_nothing(
    container: Container,
) -> None:
    org_id, _ = _org(container, "100.00", PLAN)
    container.directory.add_number(org_id, ANN_NUMBER, "user", ANN, actor="t")
    before = _snapshot(container)
    sized = _advisor(container).advise_from_cdrs(org_id, _rows(CALL_FILE))
    assert _snapshot(container) == before

    assert sized.calls == 4
    assert [(p.line, p.error.split(" ")[0]) for p in sized.rejected] == [(6, "duration")]
    assert sized.refused == {}
    assert sized.unknown_users == 1
    assert any("MCOEV, MCOPSTN1, MCOPSTNPP" in note for note in sized.notes)
    december, january = sized.months
    assert (december.month, december.calls, december.credit_spend) == ("2025-12", 3, D("1.00"))
    [(key, size, used)] = [(p.pool, p.size, p.used) for p in december.pools if p.used]
    assert (key.capability, key.country, size, used) == ("MCOPSTN1", "US", 3000, 2)
    assert (january.month, january.calls, january.credit_spend) == ("2026-01", 1, D("2.00"))
    advice = sized.advice.advice
    # 2025-12-01 to 2026-01-03: 34 days, spend on two of them (1.00 and 2.00).
    assert advice.basis_days == 34
    assert (advice.daily_spend_p50, advice.daily_spend_p95) == (D(0), D("1.00"))
    assert advice.daily_spend_mean == D(3) / 34
    assert advice.runway.balance == D("100.00")


@pytest.mark.usefixtures("ledger_checked")
def test_a_call_file_without_a_destination_column_is_refused(container: Container) -> None:
    org_id, _ = _org(container, "50.00", PLAN)
    with pytest.raises(InvalidRequest) as refused:
        _advisor(container).advise_from_cdrs(
            org_id, _rows("start,duration,user\n2026-01-01T09:00:00Z,60,x\n")
        )
    assert refused.value.code == "missing_column"


# -- HTTP and the command line (SQLite) ----------------------------------------------------------


@pytest.fixture
def advice_client(sqlite_container: Container) -> Iterator[TestClient[Litestar]]:
    """The advice routes alone, with the real guard and error handling."""
    app = Litestar(
        route_handlers=[advice_routes.router],
        guards=[authorize],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        state=State({"container": sqlite_container}),
    )
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {OPERATOR_KEY}"
        yield client


@pytest.mark.usefixtures("sqlite_ledger_checked")
def test_funding_advice_over_http(
    sqlite_container: Container, advice_client: TestClient[Litestar]
) -> None:
    org_id, _ = _org(sqlite_container, "1000.00", PAYG)
    _charge_days(sqlite_container, org_id, [1, 2] * 5)
    response = advice_client.get(f"/v1/orgs/{org_id}/funding-advice")
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("recommended_deposit", "recommended_trigger")} == {
        "recommended_deposit": "135.00",
        "recommended_trigger": "30.00",
    }
    assert body["recommended_recharge"] == "105.00"
    assert (body["daily_spend_p50"], body["daily_spend_p95"]) == ("5.00", "10.00")
    assert (body["days_until_empty"], body["basis_days"]) == (123, 10)
    assert body["expiring_unused"] == []

    sized = advice_client.post(
        f"/v1/orgs/{org_id}/funding-advice:from-cdrs",
        content=CALL_FILE.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert sized.status_code == 200, sized.text
    assert [m["month"] for m in sized.json()["months"]] == ["2025-12", "2026-01"]
    assert sized.json()["advice"]["basis_days"] == 34

    missing = advice_client.post(
        f"/v1/orgs/{org_id}/funding-advice:from-cdrs",
        content=b"start,duration\n2026-01-01T09:00:00Z,60\n",
    )
    assert missing.status_code == 400
    assert advice_client.get("/v1/orgs/nope/funding-advice").status_code == 404


@pytest.mark.usefixtures("sqlite_ledger_checked")
def test_commcredits_advise_prints_json_and_a_table(
    sqlite_container: Container, tmp_path: Path
) -> None:
    from commcredits.cli import advice as _registered  # noqa: F401
    from commcredits.cli.main import app

    org_id, _ = _org(sqlite_container, "1000.00", PAYG)
    url = str(sqlite_container.store.engine.url)
    runner = CliRunner()
    result = runner.invoke(app, ["advise", "--org", org_id, "--json", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert '"recommended_deposit": "50.00"' in result.output
    table = runner.invoke(app, ["advise", "--org", org_id, "--database-url", url])
    assert table.exit_code == 0, table.output
    assert "recommended trigger" in table.output
    calls = tmp_path / "calls.csv"
    calls.write_text(CALL_FILE)
    sized = runner.invoke(
        app, ["advise", "--org", org_id, "--from-cdrs", str(calls), "--database-url", url]
    )
    assert sized.exit_code == 0, sized.output
    assert "2025-12" in sized.output
    assert "month by month" in sized.output
