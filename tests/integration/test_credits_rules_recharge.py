"""Auto-recharge at the service level (R-23), with its invoices (R-24) and mails (R-26).
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from commcredits.app import Container
from commcredits.domain.errors import RuleViolation
from commcredits.services.credits import AutoRechargeSettings
from tests.conftest import CollectingTransport
from tests.integration.test_credits_rules import (
    DECLINED_CARD,
    START,
    SilentGateway,
    add_card,
    auto,
    balance,
    container_with_gateway,
    deposit,
    entries,
    funded_org,
    new_org,
    notices,
    sandbox,
    sent,
    spend,
)

pytestmark = pytest.mark.usefixtures("ledger_checked")

BILLING = "billing@contoso.example"


def test_a_debit_leaving_the_balance_below_the_trigger_charges_exactly_one_recharge(
    container: Container, mail: CollectingTransport
) -> None:
    org, card = funded_org(container, "100.00", auto_recharge=auto("30.00", "50.00"))
    container.orgs.add_admin(org.id, BILLING, "Billing", ["billing_admin"])

    spend(container, org.id, "70.00")  # exactly at the trigger is not below it
    assert container.credits.orders(org.id, kind="recharge") == []
    spend(container, org.id, "5.00")

    # one recharge of the recharge amount, charged to the stored card.
    [recharge] = container.credits.orders(org.id, kind="recharge")
    assert (recharge.status, recharge.amount, recharge.payment_method_id) == (
        "paid",
        Decimal("50.00"),
        card.id,
    )
    assert sandbox(container).charges_for(recharge.id) == 1
    assert sandbox(container).succeeded_total() == Decimal("150.00")
    # its own lot.
    lots = container.credits.view(org.id).lots
    assert [(lot.source, lot.amount) for lot in lots] == [
        ("deposit", Decimal("100.00")),
        ("recharge", Decimal("50.00")),
    ]
    assert recharge.lot_id == lots[1].id
    assert [(e.kind, e.amount, e.balance_after) for e in entries(container, org.id)] == [
        ("deposit", Decimal("100.00"), Decimal("100.00")),
        ("adjustment", Decimal("-70.00"), Decimal("30.00")),
        ("adjustment", Decimal("-5.00"), Decimal("25.00")),
        ("recharge", Decimal("50.00"), Decimal("75.00")),
    ]
    # an invoice for the processed recharge, naming the card.
    invoice = container.credits.invoice(org.id, recharge.invoice_id or "")
    assert (invoice.order_id, invoice.amount, invoice.payment_method, invoice.purchase_order) == (
        recharge.id,
        Decimal("50.00"),
        "Visa ending 4242",
        None,
    )
    assert invoice.lines == [
        {"description": "Communications Credits auto-recharge", "quantity": 1, "amount": "50.00"}
    ]
    assert len(container.credits.invoices(org.id)) == 2
    # one mail to the billing admin.
    container.jobs.run_due()
    [message] = sent(mail, "recharge_succeeded")
    assert message["To"] == BILLING
    assert message.get_content() == (
        "Your Communications Credits balance was recharged with 50.00 USD, charged to Visa"
        " ending 4242.\nThe balance is now 75.00 USD.\n"
    )
    assert container.credits.view(org.id).account.auto_recharge.status == "ok"

    spend(container, org.id, "40.00")  # 35.00 left: above the trigger
    assert len(container.credits.orders(org.id, kind="recharge")) == 1


def test_a_debit_while_a_recharge_is_pending_starts_no_second_recharge(
    container: Container, database_url: str, tmp_path: Path, mail: CollectingTransport
) -> None:
    quiet = SilentGateway()
    with container_with_gateway(quiet, database_url, tmp_path, mail) as service:
        org, _ = funded_org(service, "100.00", auto_recharge=auto("30.00", "50.00"))
        quiet.answering = False

        spend(service, org.id, "75.00")
        [pending] = service.credits.orders(org.id, kind="recharge")
        assert pending.status == "pending"
        assert service.credits.view(org.id).account.auto_recharge.status == "pending"
        spend(service, org.id, "10.00")

        # at most one recharge in flight per organization.
        assert [o.id for o in service.credits.orders(org.id, kind="recharge")] == [pending.id]
        assert balance(service, org.id) == Decimal("15.00")

        quiet.answering = True
        service.jobs.advance_clock(START + timedelta(minutes=5))

        [paid] = service.credits.orders(org.id, kind="recharge")
        assert (paid.id, paid.status) == (pending.id, "paid")
        assert quiet.sandbox.charges_for(pending.id) == 1
        assert balance(service, org.id) == Decimal("65.00")
        assert service.credits.view(org.id).account.auto_recharge.status == "ok"


def test_a_recharge_leaving_the_balance_below_the_trigger_is_followed_by_another_at_the_next_debit(
    container: Container,
) -> None:
    org, _ = funded_org(container, "100.00", auto_recharge=auto("80.00", "20.00"))

    spend(container, org.id, "90.00")
    # One debit, one recharge: 10.00 + 20.00 is still below the trigger of 80.00.
    assert len(container.credits.orders(org.id, kind="recharge")) == 1
    assert balance(container, org.id) == Decimal("30.00")

    spend(container, org.id, "5.00")

    # R-23 (our choice): the next debit triggers the next recharge.
    recharges = container.credits.orders(org.id, kind="recharge")
    assert [(o.status, o.amount) for o in recharges] == [("paid", Decimal("20.00"))] * 2
    assert balance(container, org.id) == Decimal("45.00")
    assert len(container.credits.invoices(org.id)) == 3


def test_a_declined_recharge_is_retried_after_one_six_and_twenty_four_hours_then_stops(
    container: Container, mail: CollectingTransport
) -> None:
    org, card = funded_org(container, "100.00")
    container.orgs.add_admin(org.id, BILLING, "Billing", ["billing_admin"])
    declined = add_card(container, org.id, DECLINED_CARD)
    container.credits.set_auto_recharge(org.id, auto("30.00", "50.00", declined.id))

    spend(container, org.id, "80.00")

    [first] = container.credits.orders(org.id, kind="recharge")
    assert (first.status, first.failure_code, first.lot_id, first.invoice_id) == (
        "failed",
        "card_declined",
        None,
        None,
    )
    settings = container.credits.view(org.id).account.auto_recharge
    assert (settings.status, settings.failures, settings.next_retry_at) == (
        "retrying",
        1,
        START + timedelta(hours=1),
    )
    # the billing admin is told why, and when the next try is.
    [failed_mail] = notices(container, org.id, "recharge_failed")
    assert failed_mail.subject == "Communications Credits recharge failed (Contoso)"
    assert failed_mail.recipients == (BILLING,)
    assert failed_mail.body_text.splitlines()[0] == (
        "The automatic recharge of 50.00 USD charged to Visa ending 0002 failed:"
        " The card was declined."
    )
    assert "\nWe will try again at 2026-01-15 10:00 UTC.\n" in failed_mail.body_text
    spend(container, org.id, "1.00")  # backing off: no new recharge before the hour is over
    container.jobs.advance_clock(START + timedelta(minutes=59))
    assert len(container.credits.orders(org.id, kind="recharge")) == 1

    for retry_at, status in (
        (START + timedelta(hours=1), "retrying"),
        (START + timedelta(hours=1 + 6), "retrying"),
        (START + timedelta(hours=1 + 6 + 24), "failing"),
    ):
        container.jobs.advance_clock(retry_at)
        assert container.credits.view(org.id).account.auto_recharge.status == status

    recharges = list(reversed(container.credits.orders(org.id, kind="recharge")))
    assert [o.created_at for o in recharges] == [
        START,
        START + timedelta(hours=1),
        START + timedelta(hours=7),
        START + timedelta(hours=31),
    ]
    assert {(o.status, o.failure_code) for o in recharges} == {("failed", "card_declined")}
    settings = container.credits.view(org.id).account.auto_recharge
    assert (settings.failures, settings.next_retry_at) == (4, None)
    assert notices(container, org.id, "recharge_failed")[-1].body_text.splitlines()[1] == (
        "We will not try again until the payment method or the auto-recharge settings change."
    )
    assert len(sent(mail, "recharge_failed")) == 4

    # Failing: neither time nor debits charge the declined card again.
    container.jobs.advance_clock(START + timedelta(days=5))
    spend(container, org.id, "1.00")
    assert len(container.credits.orders(org.id, kind="recharge")) == 4
    assert sandbox(container).succeeded_total() == Decimal("100.00")
    assert balance(container, org.id) == Decimal("18.00")

    # New settings forget the failures; the next debit recharges with the good card.
    settings = container.credits.set_auto_recharge(org.id, auto("30.00", "50.00", card.id))
    assert (settings.status, settings.failures) == ("ok", 0)
    spend(container, org.id, "1.00")
    latest = container.credits.orders(org.id, kind="recharge")[0]
    assert (latest.status, latest.payment_method_id) == ("paid", card.id)
    assert balance(container, org.id) == Decimal("67.00")


def test_a_retry_that_finds_the_balance_lifted_by_a_deposit_charges_nothing(
    container: Container,
) -> None:
    org, card = funded_org(container, "100.00")
    declined = add_card(container, org.id, DECLINED_CARD)
    container.credits.set_auto_recharge(org.id, auto("30.00", "50.00", declined.id))
    spend(container, org.id, "80.00")
    deposit(container, org.id, "100.00", card.id)

    container.jobs.advance_clock(START + timedelta(hours=2))

    # the retry finds the balance above the trigger and charges nothing.
    assert len(container.credits.orders(org.id, kind="recharge")) == 1
    settings = container.credits.view(org.id).account.auto_recharge
    assert (settings.status, settings.failures, settings.next_retry_at) == ("ok", 0, None)
    assert balance(container, org.id) == Decimal("120.00")


def test_a_card_that_expires_in_february_recharges_in_january_and_fails_as_expired_in_march(
    container: Container,
) -> None:
    org = new_org(container)
    card = add_card(container, org.id, exp_month=2, exp_year=2026)
    deposit(container, org.id, "100.00", card.id, auto_recharge=auto("30.00", "50.00"))

    spend(container, org.id, "80.00")
    [january] = container.credits.orders(org.id, kind="recharge")
    assert january.status == "paid"
    assert balance(container, org.id) == Decimal("70.00")

    container.jobs.advance_clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    spend(container, org.id, "50.00")

    # R-26's example: a recharge fails because the stored card has expired.
    march = container.credits.orders(org.id, kind="recharge")[0]
    assert (march.status, march.failure_code) == ("failed", "expired_card")
    assert balance(container, org.id) == Decimal("20.00")
    assert container.credits.view(org.id).account.auto_recharge.status == "retrying"
    [failed_mail] = notices(container, org.id, "recharge_failed")
    assert "failed: The card has expired." in failed_mail.body_text


def test_auto_recharge_needs_a_positive_trigger_and_a_recharge_of_at_least_ten(
    container: Container,
) -> None:
    org = new_org(container)
    card = add_card(container, org.id)
    for trigger, amount, field in (
        ("0.00", "50.00", "trigger_amount"),
        ("-5.00", "50.00", "trigger_amount"),
        (None, "50.00", "trigger_amount"),
        ("20.001", "50.00", "trigger_amount"),
        ("20.00", "9.99", "recharge_amount"),
        ("20.00", None, "recharge_amount"),
        ("20.00", "10.005", "recharge_amount"),
    ):
        wanted = AutoRechargeSettings(
            enabled=True, trigger_amount=trigger, recharge_amount=amount, payment_method_id=card.id
        )
        with pytest.raises(RuleViolation) as refused:
            container.credits.set_auto_recharge(org.id, wanted)
        # R-23 (our choice): trigger > 0, recharge amount >= 10.00.
        assert (trigger, amount, refused.value.code, refused.value.field) == (
            trigger,
            amount,
            "invalid_auto_recharge",
            field,
        )
        with pytest.raises(RuleViolation) as refused:
            deposit(container, org.id, "100.00", card.id, auto_recharge=wanted)
        assert refused.value.code == "invalid_auto_recharge"
    assert container.credits.orders(org.id) == []
    assert sandbox(container).charges() == []
    assert container.credits.view(org.id).account.auto_recharge.enabled is False


def test_a_recharge_of_exactly_ten_with_a_trigger_of_one_cent_is_accepted(
    container: Container,
) -> None:
    org, card = funded_org(container, "50.00")
    settings = container.credits.set_auto_recharge(org.id, auto("0.01", "10.00", card.id))
    assert (settings.enabled, settings.trigger_amount, settings.recharge_amount) == (
        True,
        Decimal("0.01"),
        Decimal("10.00"),
    )
    spend(container, org.id, "50.00")
    # the boundaries of our choice are allowed; R-26: zero was reached before the refill.
    assert balance(container, org.id) == Decimal("10.00")
    assert len(notices(container, org.id, "balance_zero")) == 1
