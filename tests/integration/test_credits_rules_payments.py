"""Paying for credits at the service level: failed and unanswered payments, idempotency (R-27),
invoices (R-24) and enterprise agreements (R-25). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import itertools
import threading
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from commcredits.app import Container
from commcredits.domain.credits import CreditOrder
from commcredits.domain.errors import Conflict, RuleViolation
from commcredits.services.credits import NewOrder
from commcredits.store.credits import OrderRepository
from tests.conftest import CollectingTransport
from tests.integration.test_credits_rules import (
    DECLINED_CARD,
    EXPIRED_CARD,
    NO_FUNDS_CARD,
    OK_CARD,
    START,
    TIMEOUT_ONCE_CARD,
    SilentGateway,
    add_card,
    auto,
    balance,
    container_with_gateway,
    deposit,
    entries,
    new_org,
    sandbox,
)

pytestmark = pytest.mark.usefixtures("ledger_checked")


def assert_nothing_bought(container: Container, org_id: str) -> None:
    view = container.credits.view(org_id)
    assert (view.balance, view.lots) == (Decimal(0), [])
    assert entries(container, org_id) == []
    assert container.credits.invoices(org_id) == []


# -- a failed payment adds nothing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "failure_code"),
    [
        (DECLINED_CARD, "card_declined"),
        (NO_FUNDS_CARD, "insufficient_funds"),
        (EXPIRED_CARD, "expired_card"),
    ],
)
def test_a_refused_card_leaves_a_failed_order_with_its_reason_and_nothing_else(
    container: Container, number: str, failure_code: str
) -> None:
    org = new_org(container)
    card = add_card(container, org.id, number)

    order = deposit(container, org.id, "100.00", card.id, auto_recharge=auto("20.00", "50.00"))

    # a failed payment adds nothing: no lot, no entry, no invoice (R-24 is for paid ones).
    assert (order.status, order.failure_code, order.lot_id, order.invoice_id) == (
        "failed",
        failure_code,
        None,
        None,
    )
    assert order.failure_message
    assert container.credits.get_order(org.id, order.id) == order  # as returned, so stored
    assert_nothing_bought(container, org.id)
    # The auto-recharge that came with a failed purchase is not turned on either.
    assert container.credits.view(org.id).account.auto_recharge.enabled is False
    assert sandbox(container).succeeded_total() == Decimal(0)


def test_a_repeated_order_with_the_same_key_and_request_returns_the_first_and_charges_once(
    container: Container,
) -> None:
    org = new_org(container)
    card = add_card(container, org.id)
    new = NewOrder(amount="100.00", payment_method_id=card.id)

    first = container.credits.place_order(org.id, new, idempotency_key="k-1", fingerprint="f-1")
    again = container.credits.place_order(org.id, new, idempotency_key="k-1", fingerprint="f-1")

    assert again == first == container.credits.get_order(org.id, first.id)
    assert (first.status, first.next_attempt_at) == ("paid", None)
    # never charged twice; the repeat did not even reach the gateway.
    assert sandbox(container).charges_for(first.id) == 1
    assert sandbox(container).attempts_for(first.id) == 1
    assert [o.id for o in container.credits.orders(org.id)] == [first.id]
    assert len(container.credits.view(org.id).lots) == 1
    assert balance(container, org.id) == Decimal("100.00")


def test_a_repeated_declined_order_stays_declined_without_a_second_attempt(
    container: Container,
) -> None:
    org = new_org(container)
    card = add_card(container, org.id, DECLINED_CARD)
    new = NewOrder(amount="100.00", payment_method_id=card.id)
    first = container.credits.place_order(org.id, new, idempotency_key="k-1", fingerprint="f-1")
    again = container.credits.place_order(org.id, new, idempotency_key="k-1", fingerprint="f-1")
    # the repeat is answered from the stored order; the card is not tried again.
    assert (again.id, again.status, again.failure_code) == (first.id, "failed", "card_declined")
    assert sandbox(container).attempts_for(first.id) == 1
    assert_nothing_bought(container, org.id)


def test_the_same_key_with_a_different_request_is_refused(container: Container) -> None:
    org = new_org(container)
    card = add_card(container, org.id)
    first = container.credits.place_order(
        org.id, NewOrder("100.00", card.id), idempotency_key="k-1", fingerprint="f-1"
    )
    with pytest.raises(Conflict) as refused:
        container.credits.place_order(
            org.id, NewOrder("200.00", card.id), idempotency_key="k-1", fingerprint="f-2"
        )
    # a key names one request; a different one under it is refused, not charged.
    assert refused.value.code == "idempotency_key_reused"
    assert [o.id for o in container.credits.orders(org.id)] == [first.id]
    assert sandbox(container).succeeded_total() == Decimal("100.00")
    assert balance(container, org.id) == Decimal("100.00")


def test_one_key_in_two_organizations_is_two_orders(container: Container) -> None:
    orders = []
    for name in ("Contoso", "Fabrikam"):
        org = new_org(container, name=name)
        card = add_card(container, org.id)
        orders.append(
            container.credits.place_order(
                org.id, NewOrder("100.00", card.id), idempotency_key="k-1", fingerprint="f-1"
            )
        )
    # keys are scoped by organization, like every financial row.
    assert orders[0].id != orders[1].id
    assert sandbox(container).succeeded_total() == Decimal("200.00")


def test_two_simultaneous_orders_with_one_key_charge_once_and_answer_with_the_same_order(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(container)
    card = add_card(container, org.id)
    # Hold both requests right after their key look-up, so both look before either writes.
    # SQLite lets only one write transaction in at a time: there the wait times out harmlessly.
    both_looked = threading.Barrier(2, timeout=0.5)
    look_ups = itertools.count()
    look_up = OrderRepository.by_idempotency_key

    def look_up_then_wait(self: OrderRepository, org_id: str, key: str) -> CreditOrder | None:
        found = look_up(self, org_id, key)
        if next(look_ups) < 2:  # only the two first look-ups meet; a retry goes straight on
            with contextlib.suppress(threading.BrokenBarrierError):
                both_looked.wait()
        return found

    monkeypatch.setattr(OrderRepository, "by_idempotency_key", look_up_then_wait)
    start = threading.Barrier(2)
    answers: list[CreditOrder | Exception] = []

    def place() -> None:
        start.wait()
        try:
            answers.append(
                container.credits.place_order(
                    org.id, NewOrder("100.00", card.id), idempotency_key="k-1", fingerprint="f-1"
                )
            )
        except Exception as exc:
            answers.append(exc)

    threads = [threading.Thread(target=place) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # no order is ever charged twice, and a repeat is answered like the first.
    assert [type(answer).__name__ for answer in answers] == ["CreditOrder", "CreditOrder"]
    assert len({answer.id for answer in answers if isinstance(answer, CreditOrder)}) == 1
    [order] = container.credits.orders(org.id)
    assert order.status == "paid"
    assert sandbox(container).charges_for(order.id) == 1
    assert balance(container, org.id) == Decimal("100.00")


# -- payments whose outcome is not known at once ---------------------------------------------


def test_a_card_that_times_out_once_is_charged_exactly_once_and_the_order_ends_paid(
    container: Container,
) -> None:
    org = new_org(container)
    card = add_card(container, org.id, TIMEOUT_ONCE_CARD)

    order = deposit(container, org.id, "100.00", card.id)

    # the time-out is retried with the same key, so the card is charged once.
    assert order.status == "paid"
    assert sandbox(container).attempts_for(order.id) == 2
    assert sandbox(container).charges_for(order.id) == 1
    assert sandbox(container).succeeded_total() == Decimal("100.00")
    assert len(container.credits.view(org.id).lots) == 1
    assert len(container.credits.invoices(org.id)) == 1
    assert balance(container, org.id) == Decimal("100.00")


def test_an_unanswered_payment_leaves_the_order_pending_until_the_job_settles_it(
    container: Container, database_url: str, tmp_path: Path, mail: CollectingTransport
) -> None:
    quiet = SilentGateway()
    quiet.answering = False
    with container_with_gateway(quiet, database_url, tmp_path, mail) as service:
        org = new_org(service)
        card = add_card(service, org.id)
        new = NewOrder("100.00", card.id, auto_recharge=auto("20.00", "50.00"))

        order = service.credits.place_order(org.id, new, idempotency_key="k-1", fingerprint="f-1")

        # funds are usable only once the payment is known to have succeeded.
        assert (order.status, order.lot_id, order.invoice_id) == ("pending", None, None)
        assert order.next_attempt_at == START + timedelta(minutes=5)
        assert_nothing_bought(service, org.id)
        assert service.credits.view(org.id).account.auto_recharge.enabled is False
        # A client's retry of the same request neither duplicates nor double-charges.
        again = service.credits.place_order(org.id, new, idempotency_key="k-1", fingerprint="f-1")
        assert (again.id, again.status) == (order.id, "pending")
        service.jobs.advance_clock(START + timedelta(minutes=5))
        assert service.credits.get_order(org.id, order.id).status == "pending"
        assert_nothing_bought(service, org.id)

        quiet.answering = True
        service.jobs.advance_clock(START + timedelta(minutes=30))

        settled = service.credits.get_order(org.id, order.id)
        assert settled.status == "paid"
        assert quiet.sandbox.charges_for(order.id) == 1
        assert quiet.sandbox.succeeded_total() == Decimal("100.00")
        assert balance(service, org.id) == Decimal("100.00")
        [lot] = service.credits.view(org.id).lots
        assert (settled.lot_id, lot.purchased_at) == (lot.id, settled.settled_at)
        [invoice] = service.credits.invoices(org.id)
        assert invoice.order_id == order.id
        assert service.credits.view(org.id).account.auto_recharge.enabled is True


def test_an_unanswered_payment_is_still_settled_after_its_card_was_removed(
    container: Container, database_url: str, tmp_path: Path, mail: CollectingTransport
) -> None:
    quiet = SilentGateway()
    quiet.answering = False
    with container_with_gateway(quiet, database_url, tmp_path, mail) as service:
        org = new_org(service)
        card = add_card(service, org.id)
        order = deposit(service, org.id, "100.00", card.id)
        assert order.status == "pending"
        service.credits.remove_payment_method(org.id, card.id)

        quiet.answering = True
        service.jobs.advance_clock(START + timedelta(minutes=30))

        # the money moved at the processor under the order's key, so the order is paid.
        assert quiet.sandbox.charges_for(order.id) == 1
        settled = service.credits.get_order(org.id, order.id)
        assert (settled.status, settled.failure_code) == ("paid", None)
        assert balance(service, org.id) == Decimal("100.00")


# -- invoices and enterprise agreements ------------------------------------------------


def test_each_deposit_has_its_own_invoice_with_payment_method_and_purchase_order(
    container: Container,
) -> None:
    org = new_org(container)
    card = add_card(container, org.id)
    first = deposit(container, org.id, "100.00", card.id, purchase_order="PO-4711")
    container.jobs.advance_clock(START + timedelta(days=1))
    second = deposit(container, org.id, "75.50", card.id)

    # one invoice per deposit, numbered in sequence.
    invoices = list(reversed(container.credits.invoices(org.id)))
    assert [
        (i.number, i.order_id, i.issued_at, i.amount, i.currency, i.kind, i.status)
        for i in invoices
    ] == [
        ("CC-2026-000001", first.id, START, Decimal("100.00"), "USD", "credits", "paid"),
        (
            "CC-2026-000002",
            second.id,
            START + timedelta(days=1),
            Decimal("75.50"),
            "USD",
            "credits",
            "paid",
        ),
    ]
    assert [(i.payment_method, i.purchase_order) for i in invoices] == [
        ("Visa ending 4242", "PO-4711"),
        ("Visa ending 4242", None),
    ]
    assert [first.invoice_id, second.invoice_id] == [i.id for i in invoices]
    assert invoices[1].lines == [
        {"description": "Communications Credits deposit", "quantity": 1, "amount": "75.50"}
    ]


def test_an_enterprise_agreement_purchase_is_accepted_at_once_and_invoiced_with_its_po(
    container: Container,
) -> None:
    org = new_org(container)
    main = container.credits.add_agreement(org.id, "EA-778812", purchase_order="PO-DEFAULT")
    container.credits.add_agreement(org.id, "EA-990001")
    with pytest.raises(Conflict) as refused:
        container.credits.add_agreement(org.id, " EA-778812 ")
    assert refused.value.code == "payment_method_exists"

    chosen = deposit(container, org.id, "250.00", main.id, purchase_order="PO-2026-0042")
    default = deposit(container, org.id, "50.00", main.id)

    # accepted by the agreement, not charged to any card.
    assert (chosen.status, default.status) == ("paid", "paid")
    assert sandbox(container).charges() == []
    assert balance(container, org.id) == Decimal("300.00")
    # the agreement number and the purchase-order number on the invoice.
    chosen_invoice = container.credits.invoice(org.id, chosen.invoice_id or "")
    assert (
        chosen_invoice.payment_method,
        chosen_invoice.purchase_order,
        chosen_invoice.amount,
    ) == ("Enterprise agreement EA-778812", "PO-2026-0042", Decimal("250.00"))
    default_invoice = container.credits.invoice(org.id, default.invoice_id or "")
    assert (default_invoice.payment_method, default_invoice.purchase_order) == (
        "Enterprise agreement EA-778812",
        "PO-DEFAULT",
    )
    assert [m.agreement_number for m in container.credits.payment_methods(org.id)] == [
        "EA-778812",
        "EA-990001",
    ]


def test_a_purchase_order_number_longer_than_sixty_four_characters_is_refused(
    container: Container,
) -> None:
    org = new_org(container)
    card = add_card(container, org.id, OK_CARD)
    with pytest.raises(RuleViolation) as refused:
        # a purchase-order number is a short reference printed on the invoice.
        deposit(container, org.id, "100.00", card.id, purchase_order="P" * 65)
    assert (refused.value.code, refused.value.field) == ("invalid_purchase_order", "purchase_order")
    assert container.credits.orders(org.id) == []
    assert sandbox(container).charges() == []


def test_an_agreements_default_purchase_order_is_held_to_sixty_four_characters_too(
    container: Container,
) -> None:
    org = new_org(container)
    with pytest.raises(RuleViolation) as refused:
        # the same purchase-order number rule whether given per order or per agreement.
        container.credits.add_agreement(org.id, "EA-778812", purchase_order="P" * 65)
    assert (refused.value.code, refused.value.field) == ("invalid_purchase_order", "purchase_order")
    assert container.credits.payment_methods(org.id) == []


def test_a_card_holder_name_longer_than_the_store_holds_is_refused_as_a_rule(
    container: Container,
) -> None:
    org = new_org(container)
    with pytest.raises(RuleViolation) as refused:
        container.credits.add_card(
            org.id, number=OK_CARD, exp_month=12, exp_year=2030, cvc="123", holder="H" * 201
        )
    assert refused.value.field == "holder"
    assert container.credits.payment_methods(org.id) == []
