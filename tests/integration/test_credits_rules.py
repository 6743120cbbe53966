"""The credits capability at the service level: who may buy, what a deposit may be, payment
methods, adjustments and concurrent debits (R-01..R-05, R-20, R-25, R-28).

Lots and expiry are in ``test_credits_rules_lots.py``, auto-recharge in
``test_credits_rules_recharge.py``, payments, invoices and idempotency in
``test_credits_rules_payments.py``; the helpers they share live here.
Every test runs on SQLite and on PostgreSQL and ends with a clean ``ledger verify``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path

import pytest

from commcredits.adapters.clock import SimulatedClock
from commcredits.adapters.payments import (
    CardToken,
    ChargeResult,
    GatewayTimeout,
    PaymentGateway,
    SandboxGateway,
)
from commcredits.app import Container, build
from commcredits.domain.credits import CreditOrder, LedgerEntry, PaymentMethod
from commcredits.domain.errors import Conflict, NotFound, RuleViolation
from commcredits.domain.organizations import Billing, Organization
from commcredits.services.credits import AutoRechargeSettings, NewOrder
from commcredits.services.orgs import NewOrganization, OrganizationChanges
from commcredits.store.outbox import OutboxMessage
from tests.conftest import CollectingTransport, make_settings

pytestmark = pytest.mark.usefixtures("ledger_checked")

START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
OK_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
EXPIRED_CARD = "4000000000000069"
NO_FUNDS_CARD = "4000000000009995"
TIMEOUT_ONCE_CARD = "4000000000000119"


# -- helpers shared by the test_credits_rules_* modules -------------------------------------------


def new_org(
    container: Container,
    *,
    name: str = "Contoso",
    country: str = "US",
    currency: str = "USD",
    billing: Billing = "prepaid",
) -> Organization:
    return container.orgs.create(
        NewOrganization(name=name, country=country, currency=currency, billing=billing)
    )


def add_card(
    container: Container,
    org_id: str,
    number: str = OK_CARD,
    *,
    exp_month: int = 12,
    exp_year: int = 2030,
) -> PaymentMethod:
    return container.credits.add_card(
        org_id, number=number, exp_month=exp_month, exp_year=exp_year, cvc="123", holder="Ada"
    )


def auto(trigger: str, amount: str, method_id: str | None = None) -> AutoRechargeSettings:
    return AutoRechargeSettings(
        enabled=True, trigger_amount=trigger, recharge_amount=amount, payment_method_id=method_id
    )


def deposit(
    container: Container,
    org_id: str,
    amount: str,
    method_id: str,
    *,
    auto_recharge: AutoRechargeSettings | None = None,
    purchase_order: str | None = None,
) -> CreditOrder:
    return container.credits.place_order(
        org_id,
        NewOrder(
            amount=amount,
            payment_method_id=method_id,
            purchase_order=purchase_order,
            auto_recharge=auto_recharge,
        ),
    )


def funded_org(
    container: Container,
    amount: str = "100.00",
    *,
    auto_recharge: AutoRechargeSettings | None = None,
) -> tuple[Organization, PaymentMethod]:
    """A prepaid US organization with a Visa card and one paid deposit of ``amount``."""
    org = new_org(container)
    card = add_card(container, org.id)
    order = deposit(container, org.id, amount, card.id, auto_recharge=auto_recharge)
    assert order.status == "paid"
    return org, card


def spend(container: Container, org_id: str, amount: str) -> list[LedgerEntry]:
    """A debit of ``amount``, as usage would make it (a negative adjustment)."""
    return container.credits.adjust(org_id, f"-{amount}", "usage").entries


def balance(container: Container, org_id: str) -> Decimal:
    return container.credits.view(org_id).balance


def entries(container: Container, org_id: str) -> list[LedgerEntry]:
    """Every ledger entry, oldest first."""
    return list(reversed(container.credits.transactions(org_id, limit=1000)))


def sandbox(container: Container) -> SandboxGateway:
    assert isinstance(container.gateway, SandboxGateway)
    return container.gateway


def set_clock_without_jobs(container: Container, when: datetime) -> None:
    """Move the simulated time and run nothing, as if no job runner were up."""
    assert isinstance(container.clock, SimulatedClock)
    container.clock.set(when)


def notices(container: Container, org_id: str, kind: str) -> list[OutboxMessage]:
    """The org's billing mails of one kind, oldest first."""
    return list(reversed(container.mailer.list_for_org(org_id, kind=kind)))


def sent(mail: CollectingTransport, kind: str) -> list[EmailMessage]:
    return [message for message in mail.sent if message["X-Commcredits-Kind"] == kind]


class SilentGateway:
    """The sandbox behind a line that can go quiet: while ``answering`` is off every charge
    reaches the sandbox (so money may move) and then times out, the worst case for R-27."""

    def __init__(self) -> None:
        self.sandbox = SandboxGateway()
        self.answering = True

    def tokenize_card(
        self, number: str, exp_month: int, exp_year: int, cvc: str, holder: str
    ) -> CardToken:
        return self.sandbox.tokenize_card(number, exp_month, exp_year, cvc, holder)

    def charge(
        self,
        *,
        idempotency_key: str,
        token: str,
        amount: Decimal,
        currency: str,
        description: str,
        now: datetime,
    ) -> ChargeResult:
        result = self.sandbox.charge(
            idempotency_key=idempotency_key,
            token=token,
            amount=amount,
            currency=currency,
            description=description,
            now=now,
        )
        if not self.answering:
            raise GatewayTimeout("no answer from the processor")
        return result


@contextmanager
def container_with_gateway(
    gateway: PaymentGateway, database_url: str, tmp_path: Path, mail: CollectingTransport
) -> Iterator[Container]:
    """A second container on the test's database (and simulated clock) with its own gateway.
    Use only its jobs: the default container's jobs would charge through another gateway."""
    built = build(make_settings(database_url, tmp_path), transport=mail, gateway=gateway)
    try:
        yield built
    finally:
        built.close()


# -- who may buy credits -------------------------------------------------------


def test_a_postpaid_organization_cannot_buy_credits_and_nothing_is_charged(
    container: Container,
) -> None:
    org = new_org(container, billing="postpaid")
    card = add_card(container, org.id)
    for wanted in (None, auto("20.00", "50.00")):
        with pytest.raises(Conflict) as refused:
            deposit(container, org.id, "100.00", card.id, auto_recharge=wanted)
        #
        assert refused.value.code == "credits_not_available_for_postpaid"
    assert sandbox(container).charges() == []
    assert sandbox(container).succeeded_total() == Decimal(0)
    assert container.credits.orders(org.id) == []
    assert container.credits.invoices(org.id) == []
    assert balance(container, org.id) == Decimal(0)


def test_organizations_billed_in_russia_korea_or_taiwan_cannot_buy_credits(
    container: Container,
) -> None:
    for country, currency in (("RU", "RUB"), ("KR", "KRW"), ("TW", "TWD")):
        org = new_org(container, name=f"Org {country}", country=country, currency=currency)
        card = add_card(container, org.id)
        with pytest.raises(Conflict) as refused:
            deposit(container, org.id, "10000", card.id)
        #
        assert refused.value.code == "credits_not_available_in_country"
        assert container.credits.orders(org.id) == []
    assert sandbox(container).charges() == []


def test_a_postpaid_organization_cannot_turn_auto_recharge_on_but_may_keep_it_off(
    container: Container,
) -> None:
    org = new_org(container, billing="postpaid")
    card = add_card(container, org.id)
    with pytest.raises(Conflict) as refused:
        container.credits.set_auto_recharge(org.id, auto("20.00", "50.00", card.id))
    #
    assert refused.value.code == "auto_recharge_not_allowed_for_postpaid"
    assert container.credits.view(org.id).account.auto_recharge.enabled is False
    settings = container.credits.set_auto_recharge(org.id, AutoRechargeSettings(enabled=False))
    assert (settings.enabled, settings.status) == (False, "off")


def test_switching_to_postpaid_turns_auto_recharge_off_and_the_leftover_balance_stays_spendable(
    container: Container,
) -> None:
    org, card = funded_org(container, "100.00", auto_recharge=auto("30.00", "50.00"))
    before = container.credits.view(org.id).account.auto_recharge
    assert (before.enabled, before.status, before.payment_method_id) == (True, "ok", card.id)

    container.orgs.update(org.id, OrganizationChanges(billing="postpaid"))

    # off, so the balance no longer refills itself once post-usage billing applies.
    after = container.credits.view(org.id).account.auto_recharge
    assert (after.enabled, after.status) == (False, "off")
    assert spend(container, org.id, "80.00")[-1].balance_after == Decimal("20.00")
    assert container.credits.orders(org.id, kind="recharge") == []
    # the prepaid balance is still consumed first, to the last cent.
    assert spend(container, org.id, "20.00")[-1].balance_after == Decimal("0.00")
    with pytest.raises(RuleViolation) as refused:
        spend(container, org.id, "0.01")
    assert refused.value.code == "insufficient_credits"
    assert container.credits.orders(org.id, kind="recharge") == []
    assert sandbox(container).succeeded_total() == Decimal("100.00")
    with pytest.raises(Conflict) as turned_on:
        container.credits.set_auto_recharge(org.id, auto("30.00", "50.00", card.id))
    assert turned_on.value.code == "auto_recharge_not_allowed_for_postpaid"
    assert container.orgs.get(org.id).billing == "postpaid"


# -- the deposit -----------------------------------------------------------------------------


def test_a_deposit_below_fifty_is_refused_and_exactly_fifty_is_accepted(
    container: Container,
) -> None:
    org = new_org(container)
    card = add_card(container, org.id)
    with pytest.raises(RuleViolation) as refused:
        deposit(container, org.id, "49.99", card.id)
    #
    assert (refused.value.code, refused.value.field) == ("amount_below_minimum", "amount")
    assert container.credits.orders(org.id) == []
    assert sandbox(container).charges() == []

    order = deposit(container, org.id, "50.00", card.id)
    assert (order.status, order.amount, order.currency) == ("paid", Decimal("50.00"), "USD")
    assert balance(container, org.id) == Decimal("50.00")
    assert sandbox(container).succeeded_total() == Decimal("50.00")


def test_a_deposit_that_is_not_a_positive_amount_in_cents_is_refused(
    container: Container,
) -> None:
    org = new_org(container)
    card = add_card(container, org.id)
    for amount, code in (
        ("0", "invalid_amount"),
        ("0.00", "invalid_amount"),
        ("-50.00", "invalid_amount"),
        ("fifty", "invalid_amount"),
        ("1e3", "invalid_amount"),
        ("50.001", "too_many_decimals"),
        ("100.999", "too_many_decimals"),
    ):
        with pytest.raises(RuleViolation) as refused:
            deposit(container, org.id, amount, card.id)
        #
        assert (amount, refused.value.code, refused.value.field) == (amount, code, "amount")
    assert container.credits.orders(org.id) == []
    assert sandbox(container).charges() == []


def test_a_yen_organization_deposits_whole_yen_and_its_invoice_shows_no_decimals(
    container: Container,
) -> None:
    org = new_org(container, name="Kabushiki", country="JP", currency="JPY")
    card = add_card(container, org.id)
    for amount, code in (("5000.5", "too_many_decimals"), ("49", "amount_below_minimum")):
        with pytest.raises(RuleViolation) as refused:
            deposit(container, org.id, amount, card.id)
        assert refused.value.code == code
    with pytest.raises(RuleViolation) as refused:
        container.credits.set_auto_recharge(org.id, auto("1000.5", "3000", card.id))
    assert (refused.value.code, refused.value.field) == ("invalid_auto_recharge", "trigger_amount")

    order = deposit(container, org.id, "5000", card.id)

    # 50.00 in the org's currency is 50 yen; JPY has no minor unit.
    assert (order.status, order.amount, order.currency) == ("paid", Decimal(5000), "JPY")
    assert balance(container, org.id) == Decimal(5000)
    [charge] = sandbox(container).charges()
    assert (charge.amount, charge.currency) == (Decimal(5000), "JPY")
    invoice = container.credits.invoice(org.id, order.invoice_id or "")
    assert (invoice.amount, invoice.currency) == (Decimal(5000), "JPY")
    assert invoice.lines == [
        {"description": "Communications Credits deposit", "quantity": 1, "amount": "5000"}
    ]


def test_the_minimum_deposit_is_a_setting(
    container: Container, database_url: str, tmp_path: Path, mail: CollectingTransport
) -> None:
    strict = build(
        make_settings(database_url, tmp_path, minimum_deposit=Decimal("100.00")), transport=mail
    )
    try:
        org = new_org(strict)
        card = add_card(strict, org.id)
        with pytest.raises(RuleViolation) as refused:
            deposit(strict, org.id, "99.99", card.id)
        # "our default, configurable"
        assert refused.value.code == "amount_below_minimum"
        assert deposit(strict, org.id, "100.00", card.id).status == "paid"
        assert balance(strict, org.id) == Decimal("100.00")
    finally:
        strict.close()


# -- payment methods -------------------------------------------------------------------------


def test_a_card_number_failing_the_luhn_check_is_refused(container: Container) -> None:
    org = new_org(container)
    with pytest.raises(RuleViolation) as refused:
        add_card(container, org.id, "4242424242424241")
    # the Luhn check catches a mistyped digit before the gateway is asked.
    assert (refused.value.code, refused.value.field) == ("invalid_card_number", "number")
    assert container.credits.payment_methods(org.id) == []


def test_a_card_already_expired_by_the_service_clock_is_refused_when_added(
    container: Container,
) -> None:
    org = new_org(container)
    with pytest.raises(RuleViolation) as refused:
        add_card(container, org.id, exp_month=12, exp_year=2025)
    # judged by the service clock (2026-01-15), not the machine's.
    assert refused.value.code == "card_expired"
    # A card is good through the last day of its expiry month (the clock is 2026-01-15).
    card = add_card(container, org.id, exp_month=1, exp_year=2026)
    assert [m.id for m in container.credits.payment_methods(org.id)] == [card.id]


def test_a_card_is_kept_as_a_token_with_brand_last_four_and_expiry_only(
    container: Container,
) -> None:
    org = new_org(container)
    card = add_card(container, org.id, exp_month=7, exp_year=2029)
    assert (card.type, card.brand, card.last4, card.exp_month, card.exp_year) == (
        "card",
        "visa",
        "4242",
        7,
        2029,
    )
    [stored] = container.credits.payment_methods(org.id)
    assert stored == card
    # the card number is never stored.
    assert OK_CARD not in repr(stored)
    assert stored.describe() == "Visa ending 4242"


def test_another_organizations_payment_method_is_unknown_here(container: Container) -> None:
    owner = new_org(container, name="Owner")
    card = add_card(container, owner.id)
    other = new_org(container, name="Other")

    with pytest.raises(RuleViolation) as refused:
        deposit(container, other.id, "100.00", card.id)
    # every lookup is scoped by organization; a foreign id is as unknown as a made-up one.
    assert (refused.value.code, refused.value.field) == ("unknown_payment_method", "payment_method")
    with pytest.raises(RuleViolation) as refused:
        container.credits.set_auto_recharge(other.id, auto("20.00", "50.00", card.id))
    assert refused.value.code == "unknown_payment_method"
    with pytest.raises(NotFound) as missing:
        container.credits.remove_payment_method(other.id, card.id)
    assert missing.value.code == "payment_method_not_found"

    assert container.credits.orders(other.id) == []
    assert sandbox(container).charges() == []
    assert [m.id for m in container.credits.payment_methods(owner.id)] == [card.id]


def test_the_payment_method_auto_recharge_charges_cannot_be_removed_until_it_changes(
    container: Container,
) -> None:
    org, card = funded_org(container, auto_recharge=auto("20.00", "50.00"))
    with pytest.raises(Conflict) as refused:
        container.credits.remove_payment_method(org.id, card.id)
    # auto-recharge must always have a payment method to charge.
    assert refused.value.code == "payment_method_in_use"
    assert [m.id for m in container.credits.payment_methods(org.id)] == [card.id]

    spare = add_card(container, org.id, "5555555555554444")
    container.credits.set_auto_recharge(org.id, auto("20.00", "50.00", spare.id))
    container.credits.remove_payment_method(org.id, card.id)

    assert [m.id for m in container.credits.payment_methods(org.id)] == [spare.id]
    with pytest.raises(RuleViolation) as unknown:
        deposit(container, org.id, "100.00", card.id)
    assert unknown.value.code == "unknown_payment_method"
    with pytest.raises(Conflict) as refused:
        container.credits.remove_payment_method(org.id, spare.id)
    assert refused.value.code == "payment_method_in_use"
    container.credits.set_auto_recharge(org.id, AutoRechargeSettings(enabled=False))
    container.credits.remove_payment_method(org.id, spare.id)
    assert container.credits.payment_methods(org.id) == []


# -- adjustments -----------------------------------------------------------------------------------


def test_a_positive_adjustment_is_a_new_lot_that_expires_twelve_months_later(
    container: Container,
) -> None:
    org = new_org(container)
    adjustment = container.credits.adjust(org.id, "25.50", "goodwill after an outage")

    [lot] = container.credits.view(org.id).lots
    assert (lot.source, lot.amount, lot.remaining) == (
        "adjustment",
        Decimal("25.50"),
        Decimal("25.50"),
    )
    # the same 12 months as a purchase, to the minute.
    assert (lot.purchased_at, lot.expires_at) == (START, datetime(2027, 1, 15, 9, 0, tzinfo=UTC))
    [entry] = adjustment.entries
    assert (entry.kind, entry.amount, entry.lot_id, entry.balance_after) == (
        "adjustment",
        Decimal("25.50"),
        lot.id,
        Decimal("25.50"),
    )
    assert entry.description == "goodwill after an outage"
    assert adjustment.balance_after == Decimal("25.50")
    assert container.credits.orders(org.id) == []
    assert container.credits.invoices(org.id) == []


def test_a_negative_adjustment_larger_than_the_balance_is_refused_and_changes_nothing(
    container: Container,
) -> None:
    org, _ = funded_org(container, "100.00")
    before_entries = entries(container, org.id)
    before_lots = container.credits.view(org.id).lots

    with pytest.raises(RuleViolation) as refused:
        container.credits.adjust(org.id, "-100.01", "too much")

    # the balance never goes below zero, and a refused debit takes nothing.
    assert refused.value.code == "insufficient_credits"
    assert entries(container, org.id) == before_entries
    assert container.credits.view(org.id).lots == before_lots
    assert balance(container, org.id) == Decimal("100.00")
    assert container.credits.adjust(org.id, "-100.00", "all of it").balance_after == Decimal(0)


def test_an_adjustment_needs_a_non_zero_amount_and_a_reason(container: Container) -> None:
    org, _ = funded_org(container, "100.00")
    for amount, reason, code in (
        ("0.00", "nothing", "invalid_amount"),
        ("5.00", "   ", "invalid_reason"),
        ("-0.001", "a tenth of a cent", "too_many_decimals"),
    ):
        with pytest.raises(RuleViolation) as refused:
            container.credits.adjust(org.id, amount, reason)
        # adjustments are exact amounts in the currency's minor unit, like deposits.
        assert (amount, refused.value.code) == (amount, code)
    assert len(entries(container, org.id)) == 1


# -- concurrency -----------------------------------------------------------------------------------


def test_two_simultaneous_debits_of_sixty_from_a_hundred_let_exactly_one_through(
    container: Container,
) -> None:
    org, _ = funded_org(container, "100.00")
    # a debit is refused whole rather than taking the balance below zero.
    for round_number in range(4):
        if round_number:
            container.credits.adjust(org.id, "60.00", "top up for the next round")
        assert balance(container, org.id) == Decimal("100.00")
        start = threading.Barrier(2)
        outcomes: list[str] = []

        def debit(start: threading.Barrier = start, outcomes: list[str] = outcomes) -> None:
            start.wait()
            try:
                container.credits.adjust(org.id, "-60.00", "concurrent usage")
            except RuleViolation as exc:
                outcomes.append(exc.code)
            else:
                outcomes.append("ok")

        threads = [threading.Thread(target=debit) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        # R-28 under the per-organization lock: sized while the lock is held.
        assert sorted(outcomes) == ["insufficient_credits", "ok"]
        assert balance(container, org.id) == Decimal("40.00")
        assert container.credits.view(org.id).account.balance == Decimal("40.00")
