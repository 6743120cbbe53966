"""Postpaid overage (R-03, R-04): usage nothing else pays for is allowed when overage is on,
and billed after the month on one overage invoice, a line per capability and country."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from commcredits.app import Container
from commcredits.services.calls import CallRequest
from commcredits.services.orgs import NewOrganization

pytestmark = pytest.mark.usefixtures("ledger_checked")


def _postpaid(container: Container, *, overage: bool) -> str:
    container.rating.ensure_loaded()
    org = container.orgs.create(
        NewOrganization("Fabrikam", "US", "USD", "postpaid", overage_enabled=overage)
    ).id
    for sku in ("MCOEV", "MCOPSTN1"):
        container.directory.set_subscription(org, sku, 5, actor="t")
    container.directory.create_user(org, "lee@fabrikam.com", "Lee", "US", actor="t")
    # with overage on, MCOPSTNPP can be assigned without funded credits.
    licenses = ["MCOEV", "MCOPSTN1", *(["MCOPSTNPP"] if overage else [])]
    container.directory.change_licenses(org, "lee@fabrikam.com", licenses, [], actor="t")
    return org


def _call(container: Container, org: str, call_id: str, to: str, seconds: int) -> str | None:
    decided = container.calls.authorize(
        org, CallRequest(call_id, "user_out", "lee@fabrikam.com", "+14255550100", to)
    )
    if decided.decision == "allow":
        container.calls.end(org, call_id, seconds)
    return decided.funding if decided.decision == "allow" else decided.reason


def test_overage_calls_are_invoiced_after_the_month_with_a_line_per_country(
    container: Container,
) -> None:
    org = _postpaid(container, overage=True)
    assert _call(container, org, "o1", "+442071234567", 120) == "overage"  # GB 0.024/min
    assert _call(container, org, "o2", "+33123456789", 60) == "overage"  # FR 0.025/min
    assert _call(container, org, "o3", "+442071234567", 60) == "overage"
    assert container.credits.view(org).balance == 0  # nothing leaves the credit balance
    assert [i.kind for i in container.credits.invoices(org)] == []
    container.jobs.advance_clock(datetime(2026, 2, 1, 0, 0, 1, tzinfo=UTC))
    [invoice] = container.credits.invoices(org)
    assert (invoice.kind, invoice.number, invoice.status) == ("overage", "OV-2026-01", "due")
    # Each call rounded once: GB 2 min 0.048 -> 0.05 and 1 min 0.024 -> 0.02; FR 0.025 -> 0.03.
    assert invoice.amount == Decimal("0.10")
    lines = {(line["capability"], line["country"]): line for line in invoice.lines}
    assert (lines[("MCOPSTNPP", "GB")]["quantity"], lines[("MCOPSTNPP", "GB")]["amount"]) == (
        2,
        "0.07",
    )
    assert lines[("MCOPSTNPP", "FR")]["amount"] == "0.03"
    container.jobs.run_due()
    assert len(container.credits.invoices(org)) == 1  # invoiced once


def test_with_overage_off_a_call_nothing_pays_for_is_refused(container: Container) -> None:
    org = _postpaid(container, overage=False)
    # A domestic-only plan pays nothing abroad, and there are no credits or overage.
    assert _call(container, org, "n1", "+442071234567", 60) == "no_license"
    assert _call(container, org, "n2", "+12025550123", 60) == "pool"
