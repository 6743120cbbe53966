"""``ledger verify`` finds every way the projections can disagree with the ledger (R-21, R-27,
R-28), on both databases, and checks many organizations in one pass."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from commcredits.app import Container
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization
from commcredits.services.verify import OrgTotals, verify_ledger


def _org(container: Container, name: str) -> str:
    org = container.orgs.create(NewOrganization(name, "US", "USD", "prepaid"))
    agreement = container.credits.add_agreement(org.id, f"EA-{name}")
    container.credits.place_order(org.id, NewOrder("100.00", agreement.id))
    container.credits.place_order(org.id, NewOrder("50.00", agreement.id))
    container.credits.adjust(org.id, "-30.00", "a correction")
    return org.id


def _tamper(container: Container, statement: str, **values: object) -> None:
    with container.store.engine.begin() as conn:
        conn.execute(text(statement), values)


def test_a_clean_ledger_verifies_with_each_organizations_totals(container: Container) -> None:
    first, second = _org(container, "First"), _org(container, "Second")
    container.orgs.create(NewOrganization("No account yet", "US", "USD", "prepaid"))

    problems, totals = verify_ledger(container.store)

    assert problems == []
    by_org = {t.org_id: t for t in totals}
    assert set(by_org) >= {first, second}
    assert by_org[first] == OrgTotals(
        first, Decimal("150"), Decimal("30"), Decimal("0"), Decimal("120")
    )
    # One organization alone gives the same answer.
    assert verify_ledger(container.store, second) == ([], [by_org[second]])


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            "UPDATE credit_accounts SET balance_micros = balance_micros + 1 WHERE org_id = :org",
            ["account balance 120.000001, entries sum to 120"],
        ),
        (
            "UPDATE ledger_entries SET balance_after_micros = balance_after_micros + 5"
            " WHERE org_id = :org AND seq = 2",
            ["says balance 150.000005, entries sum to 150"],
        ),
        (
            "UPDATE ledger_entries SET seq = 7 WHERE org_id = :org AND seq = 3",
            ["has sequence 7, expected 3"],
        ),
        (
            "UPDATE lots SET remaining_micros = remaining_micros - 1000000"
            " WHERE org_id = :org AND amount_micros = 50000000",
            ["left, its entries sum to 50", "lots hold 119"],
        ),
        (
            "UPDATE credit_accounts SET reserved_micros = 0, balance_micros = 0"
            " WHERE org_id = :org",
            ["account balance 0, entries sum to 120"],
        ),
        (
            "DELETE FROM invoices WHERE org_id = :org AND amount_micros = 100000000",
            ["has no matching invoice"],
        ),
        (
            "UPDATE credit_orders SET status = 'failed', lot_id = NULL, invoice_id = NULL"
            " WHERE org_id = :org AND amount_micros = 100000000",
            ["deposit lot", "has no paid order"],
        ),
    ],
)
def test_every_kind_of_disagreement_is_reported_for_its_organization_only(
    container: Container, statement: str, expected: list[str]
) -> None:
    healthy, broken = _org(container, "Healthy"), _org(container, "Broken")
    _tamper(container, statement, org=broken)

    problems, _ = verify_ledger(container.store)

    assert problems, "the tampering went unnoticed"
    assert {p.org_id for p in problems} == {broken}
    shown = "\n".join(str(p) for p in problems)
    for fragment in expected:
        assert fragment in shown
    assert verify_ledger(container.store, healthy)[0] == []
