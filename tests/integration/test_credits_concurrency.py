"""Concurrent requests against one balance, on SQLite and on PostgreSQL (R-27, R-28)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

import pytest

from commcredits.adapters.payments import SandboxGateway
from commcredits.app import Container
from commcredits.domain.errors import RuleViolation
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization

pytestmark = pytest.mark.usefixtures("ledger_checked")

T = TypeVar("T")


def _together(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``work`` in ``count`` threads released at the same instant."""
    results: list[T | BaseException] = [RuntimeError("did not run")] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = work(index)
        except BaseException as exc:  # collected for the assertions
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _funded(container: Container, amount: str) -> tuple[str, str]:
    org = container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid"))
    card = container.credits.add_card(
        org.id, number="4242424242424242", exp_month=12, exp_year=2030, cvc="123", holder="Pat"
    )
    if amount:
        container.credits.place_order(org.id, NewOrder(amount, card.id))
    return org.id, card.id


def test_the_same_order_sent_eight_times_at_once_is_bought_and_charged_once(
    container: Container,
) -> None:
    org_id, card_id = _funded(container, "")
    results = _together(
        8,
        lambda _: container.credits.place_order(
            org_id, NewOrder("100.00", card_id), idempotency_key="buy-1", fingerprint="same"
        ),
    )
    orders = [r for r in results if not isinstance(r, BaseException)]
    assert len(orders) == 8, [r for r in results if isinstance(r, BaseException)]
    assert {order.id for order in orders} == {orders[0].id}
    gateway = container.gateway
    assert isinstance(gateway, SandboxGateway)
    assert gateway.charges_for(orders[0].id) == 1
    assert container.credits.view(org_id).balance == Decimal("100")
    assert len(container.credits.invoices(org_id)) == 1


@pytest.mark.parametrize("round_", range(3))
def test_of_two_debits_that_together_exceed_the_balance_one_is_refused(
    container: Container, round_: int
) -> None:
    org_id, _ = _funded(container, "100.00")
    results = _together(2, lambda _: container.credits.adjust(org_id, "-60.00", "race"))
    refused = [r for r in results if isinstance(r, RuleViolation)]
    done = [r for r in results if not isinstance(r, BaseException)]
    assert len(done) == 1
    assert len(refused) == 1
    assert refused[0].code == "insufficient_credits"
    assert container.credits.view(org_id).balance == Decimal("40")


def test_many_small_debits_at_once_never_overdraw(container: Container) -> None:
    org_id, _ = _funded(container, "50.00")
    results = _together(12, lambda _: container.credits.adjust(org_id, "-5.00", "burst"))
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, RuleViolation)]
    assert len(done) == 10
    assert len(refused) == 2
    assert container.credits.view(org_id).balance == Decimal("0")
