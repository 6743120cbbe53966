"""The admin console in a real browser: sign-in, checkout, products, licenses, reports, roles
and CSRF, against a live server. Each main page is also saved to docs/screenshots/."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
from playwright.sync_api import expect

from commcredits.services.calls import CdrRecord
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization
from tests.browser.conftest import LiveServer, screenshot

PASSWORD = "correct horse battery"
_numbers = itertools.count(1)


def _org(
    server: LiveServer,
    *,
    roles: tuple[str, ...] = ("global_admin",),
    funded: bool = False,
    billing: str = "prepaid",
) -> tuple[str, str]:
    """A fresh organization with one admin who has a password; returns (org id, e-mail)."""
    container = server.container
    n = next(_numbers)
    org = container.orgs.create(NewOrganization(f"Contoso {n}", "US", "USD", billing))  # type: ignore[arg-type]
    email = f"admin{n}@contoso.example"
    container.orgs.add_admin(org.id, email, f"Pat Admin {n}", list(roles))
    container.signin.set_password(org.id, email, PASSWORD)
    if funded:
        method = container.credits.add_agreement(org.id, f"EA-{n}")
        container.credits.place_order(org.id, NewOrder("100.00", method.id))
    return org.id, email


def _sign_in(page: Any, server: LiveServer, email: str, *, shot: str | None = None) -> None:
    page.goto(f"{server.url}/console/signin")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    if shot:
        screenshot(page, shot)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def _balance(server: LiveServer, org_id: str) -> Decimal:
    return server.container.credits.view(org_id).balance


def test_an_admin_signs_in_and_lands_on_their_credits(page: Any, live_server: LiveServer) -> None:
    org_id, email = _org(live_server)

    _sign_in(page, live_server, email, shot="signin")

    assert page.url.endswith(f"/console/orgs/{org_id}/billing/products/credits")
    expect(page.get_by_role("heading", name="Communications Credits")).to_be_visible()


def test_a_wrong_password_is_refused_on_the_page(page: Any, live_server: LiveServer) -> None:
    _, email = _org(live_server)
    page.goto(f"{live_server.url}/console/signin")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in", exact=True).click()

    expect(page.get_by_role("alert")).to_contain_text("wrong")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def test_buying_credits_with_a_card_shows_the_new_lot(page: Any, live_server: LiveServer) -> None:
    """R-20, R-21, R-27: a paid deposit becomes a lot that expires 12 months later."""
    org_id, email = _org(live_server)
    _sign_in(page, live_server, email)
    page.get_by_role("link", name="Communications Credits").first.click()
    expect(page.get_by_role("heading", name="Communications Credits")).to_be_visible()

    page.get_by_label("Amount (USD)").fill("120.00")
    page.get_by_label("Add a card").check()
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2030")
    page.get_by_label("Security code").fill("123")
    page.get_by_label("Name on the card").fill("Pat Admin")
    screenshot(page, "purchase")
    page.get_by_role("button", name="Place order").click()

    expect(page.get_by_role("status")).to_contain_text("Your order is paid")
    expect(page.get_by_test_id("balance")).to_have_text("120.00 USD")
    lots = page.get_by_role("region", name="Purchases (lots)")
    expect(lots.get_by_role("row").nth(1)).to_contain_text("2026-01-15")
    expect(lots.get_by_role("row").nth(1)).to_contain_text("2027-01-15")
    expect(lots.get_by_role("row").nth(1)).to_contain_text("120.00 USD")
    assert _balance(live_server, org_id) == Decimal("120.00")
    screenshot(page, "products")


def test_a_declined_card_shows_the_reason_and_adds_nothing(
    page: Any, live_server: LiveServer
) -> None:
    """R-27: a failed payment adds nothing, and the admin is told why beside the field."""
    org_id, email = _org(live_server)
    _sign_in(page, live_server, email)
    page.goto(f"{live_server.url}/console/orgs/{org_id}/billing/purchase/credits")

    page.get_by_label("Amount (USD)").fill("80.00")
    page.get_by_label("Add a card").check()
    page.get_by_label("Card number").fill("4000000000000002")
    page.get_by_label("Expiry month").fill("11")
    page.get_by_label("Expiry year").fill("2031")
    page.get_by_label("Security code").fill("321")
    page.get_by_label("Name on the card").fill("Pat Admin")
    page.get_by_role("button", name="Place order").click()

    expect(page.locator("#payment-error")).to_contain_text("declined")
    expect(page.locator("#payment-error")).to_contain_text("no credits added")
    assert _balance(live_server, org_id) == Decimal(0)
    assert live_server.container.credits.view(org_id).lots == []


def test_a_deposit_below_the_minimum_is_explained_beside_the_amount(
    page: Any, live_server: LiveServer
) -> None:
    org_id, email = _org(live_server, funded=True)
    _sign_in(page, live_server, email)
    page.goto(f"{live_server.url}/console/orgs/{org_id}/billing/purchase/credits")

    page.get_by_label("Amount (USD)").fill("20")
    page.get_by_role("button", name="Place order").click()

    expect(page.locator("#amount-error")).to_contain_text("smallest deposit is 50.00 USD")
    expect(page.get_by_label("Amount (USD)")).to_have_attribute("aria-invalid", "true")
    assert _balance(live_server, org_id) == Decimal("100.00")


def test_a_postpaid_organization_is_told_why_it_cannot_buy(
    page: Any, live_server: LiveServer
) -> None:
    """R-02 in plain words, and no order form."""
    org_id, email = _org(live_server, billing="postpaid")
    _sign_in(page, live_server, email)
    page.goto(f"{live_server.url}/console/orgs/{org_id}/billing/purchase/credits")

    expect(page.get_by_role("alert")).to_contain_text("pays for calls after it makes them")
    expect(page.get_by_role("button", name="Place order")).to_have_count(0)


def test_turning_on_auto_recharge(page: Any, live_server: LiveServer) -> None:
    """R-23: trigger and recharge amounts saved with the chosen card."""
    org_id, email = _org(live_server)
    live_server.container.credits.add_card(
        org_id, number="4242424242424242", exp_month=12, exp_year=2030, cvc="123", holder="Pat"
    )
    _sign_in(page, live_server, email)
    expect(page.get_by_test_id("auto-recharge-state")).to_have_text("Off.")

    page.get_by_text("Edit auto-recharge").click()
    page.get_by_role("switch", name="Auto-recharge").check()
    page.get_by_label("Recharge with (USD)").fill("50.00")
    page.get_by_label("When the balance falls below (USD)").fill("20.00")
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status")).to_contain_text("Auto-recharge settings saved")
    expect(page.get_by_test_id("auto-recharge-state")).to_contain_text("50.00 USD")
    expect(page.get_by_test_id("auto-recharge-state")).to_contain_text("20.00 USD")
    settings = live_server.container.credits.view(org_id).account.auto_recharge
    assert (settings.enabled, settings.trigger_amount, settings.recharge_amount) == (
        True,
        Decimal("20.00"),
        Decimal("50.00"),
    )

    page.get_by_role("button", name="Turn off auto-recharge").click()
    expect(page.get_by_test_id("auto-recharge-state")).to_have_text("Off.")


def test_credits_license_needs_a_prerequisite(page: Any, live_server: LiveServer) -> None:
    """R-11: MCOPSTNPP alone is refused naming what is missing; with Audio Conferencing it
    is saved."""
    org_id, email = _org(live_server, funded=True)
    directory = live_server.container.directory
    directory.set_subscription(org_id, "MCOMEETADV", 5, actor="setup")
    user = directory.create_user(org_id, "ann@contoso.example", "Ann Lee", "US", actor="setup")
    _sign_in(page, live_server, email)
    page.get_by_role("link", name="Active users").click()
    page.get_by_role("link", name="Ann Lee").click()

    page.locator("input[name=license][value=MCOPSTNPP]").check()
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("alert")).to_contain_text("MCOMEETADV")
    assert directory.get_user(org_id, user.id).licenses == frozenset()
    screenshot(page, "user-licenses-refused")

    page.locator("input[name=license][value=MCOMEETADV]").check()
    page.locator("input[name=license][value=MCOPSTNPP]").check()
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status")).to_contain_text("Licenses saved")
    assert directory.get_user(org_id, user.id).licenses == {"MCOMEETADV", "MCOPSTNPP"}


def test_bulk_assignment_reports_each_user(page: Any, live_server: LiveServer) -> None:
    """R-14: one action for many users; one refusal does not stop the others."""
    org_id, email = _org(live_server, funded=True)
    directory = live_server.container.directory
    directory.set_subscription(org_id, "MCOMEETADV", 1, actor="setup")
    for name in ("Ann", "Bob"):
        directory.create_user(org_id, f"{name.lower()}@contoso.example", name, "US", actor="s")
    _sign_in(page, live_server, email)
    page.goto(f"{live_server.url}/console/orgs/{org_id}/users")

    page.get_by_label("Select all users on this page").check()
    page.get_by_label("License to change").select_option("MCOMEETADV")
    screenshot(page, "users")
    page.get_by_role("button", name="Apply").click()

    expect(page.get_by_role("status")).to_contain_text("1 of 2 users changed")
    expect(page.get_by_role("status")).to_contain_text("bob@contoso.example")


def _calls(server: LiveServer, org_id: str) -> None:
    directory = server.container.directory
    directory.set_subscription(org_id, "MCOEV", 5, actor="setup")
    directory.set_subscription(org_id, "MCOPSTN1", 5, actor="setup")
    directory.create_user(org_id, "ann@contoso.example", "Ann Lee", "US", actor="setup")
    directory.change_licenses(
        org_id, "ann@contoso.example", ["MCOEV", "MCOPSTN1", "MCOPSTNPP"], [], actor="setup"
    )
    day = datetime(2026, 1, 14, 10, tzinfo=UTC)
    records = [
        CdrRecord(
            f"{org_id}-c1",
            "user_out",
            "ann@contoso.example",
            "+12125550100",
            "+12125550199",
            day,
            125,
        ),
        CdrRecord(
            f"{org_id}-c2",
            "user_out",
            "ann@contoso.example",
            "+12125550100",
            "+33142685300",
            day.replace(hour=11),
            61,
        ),
    ]
    results = server.container.calls.import_cdrs(org_id, records)
    assert [r.status for r in results] == ["charged", "charged"]


def test_a_seven_day_pstn_report_downloads_as_excel(
    page: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    """R-50, R-52: the range picker, the table, and the same rows in the Excel file."""
    org_id, email = _org(live_server, funded=True)
    _calls(live_server, org_id)
    _sign_in(page, live_server, email)
    page.get_by_role("link", name="PSTN usage").click()

    page.get_by_label("7 days").check()
    page.get_by_role("button", name="Run report").click()
    expect(page.get_by_test_id("report-range")).to_contain_text("2026-01-09 to 2026-01-15")
    expect(page.locator("table.report tbody tr")).to_have_count(2)
    screenshot(page, "report-pstn")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export to Excel").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".xlsx")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    sheet = openpyxl.load_workbook(saved, read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("UsageId", "Call ID", "Conference ID")
    assert sorted(row[1] for row in rows[1:]) == [f"{org_id}-c1", f"{org_id}-c2"]


def test_a_reports_reader_cannot_reach_the_purchase_page(
    page: Any, live_server: LiveServer
) -> None:
    org_id, email = _org(live_server, roles=("reports_reader",), funded=True)
    _sign_in(page, live_server, email)
    expect(page.get_by_role("navigation", name="Console").get_by_text("Billing")).to_have_count(0)

    response = page.goto(f"{live_server.url}/console/orgs/{org_id}/billing/purchase/credits")

    assert response is not None
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_role("button", name="Place order")).to_have_count(0)


def test_a_form_posted_without_its_csrf_token_is_refused(
    page: Any, live_server: LiveServer
) -> None:
    org_id, email = _org(live_server, funded=True)
    _sign_in(page, live_server, email)
    page.goto(f"{live_server.url}/console/orgs/{org_id}/billing/purchase/credits")
    page.get_by_label("Amount (USD)").fill("75.00")
    page.locator("form.checkout input[name=csrf_token]").evaluate("node => node.remove()")

    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Place order").click()

    assert answer.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text("did not come from this console")
    assert _balance(live_server, org_id) == Decimal("100.00")


def test_the_operator_sees_every_organization(page: Any, live_server: LiveServer) -> None:
    org_id, _ = _org(live_server, funded=True)
    page.goto(f"{live_server.url}/console/signin")
    page.get_by_text("Operator sign-in").click()
    page.get_by_label("Operator key").fill("test-operator-key")
    page.get_by_role("button", name="Sign in as operator").click()

    expect(page.get_by_role("heading", name="Organizations")).to_be_visible()
    screenshot(page, "organizations")
    page.locator(f"a[href='/console/orgs/{org_id}']").click()
    expect(page.get_by_test_id("balance")).to_have_text("100.00 USD")


def test_notifications_and_audit_log_pages(page: Any, live_server: LiveServer) -> None:
    org_id, email = _org(live_server, funded=True)
    live_server.container.directory.create_user(
        org_id, "cy@contoso.example", "Cy", "US", actor="setup"
    )
    _sign_in(page, live_server, email)

    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("cell", name="cy@contoso.example")).to_be_visible()
    screenshot(page, "audit")
    page.get_by_role("link", name="Notifications").click()
    expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
    screenshot(page, "notifications")


def test_console_pages_send_security_headers(page: Any, live_server: LiveServer) -> None:
    response = page.goto(f"{live_server.url}/console/signin")
    assert response is not None
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
