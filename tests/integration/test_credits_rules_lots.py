"""Lots at the service level: 12-month expiry and forfeits (R-21), FIFO (R-22), and the mails
about the balance and expiring lots (R-26). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from commcredits.app import Container
from commcredits.domain.errors import RuleViolation
from commcredits.services.credits import AutoRechargeSettings
from commcredits.services.verify import verify_ledger
from tests.conftest import CollectingTransport
from tests.integration.test_credits_rules import (
    START,
    add_card,
    balance,
    deposit,
    entries,
    funded_org,
    new_org,
    notices,
    sent,
    set_clock_without_jobs,
    spend,
)

pytestmark = pytest.mark.usefixtures("ledger_checked")

ONE_YEAR_LATER = datetime(2027, 1, 15, 9, 0, tzinfo=UTC)


# -- expiry ----------------------------------------------------------------------------------


def test_a_lot_expires_twelve_months_after_purchase_on_the_same_day_and_time(
    container: Container,
) -> None:
    org, _ = funded_org(container, "100.00")
    [lot] = container.credits.view(org.id).lots
    assert (lot.purchased_at, lot.expires_at) == (START, ONE_YEAR_LATER)

    set_clock_without_jobs(container, ONE_YEAR_LATER - timedelta(minutes=1))
    view = container.credits.view(org.id)
    assert (view.balance, view.lots[0].status(view.at)) == (Decimal("100.00"), "active")
    spend(container, org.id, "1.00")  # the last minute still counts

    set_clock_without_jobs(container, ONE_YEAR_LATER)
    view = container.credits.view(org.id)
    # expired from that moment, before any sweep has run.
    assert (view.balance, view.available, view.lots[0].status(view.at)) == (
        Decimal(0),
        Decimal(0),
        "expired",
    )
    with pytest.raises(RuleViolation) as refused:
        spend(container, org.id, "0.01")
    assert refused.value.code == "insufficient_credits"


def test_a_lot_bought_on_29_february_expires_on_28_february_of_the_next_year(
    container: Container,
) -> None:
    org = new_org(container)
    card = add_card(container, org.id, exp_year=2030)
    bought = datetime(2028, 2, 29, 12, 30, tzinfo=UTC)
    set_clock_without_jobs(container, bought)
    deposit(container, org.id, "50.00", card.id)
    [lot] = container.credits.view(org.id).lots
    # never more than twelve months of life.
    assert (lot.purchased_at, lot.expires_at) == (bought, datetime(2029, 2, 28, 12, 30, tzinfo=UTC))


def test_an_expired_lot_is_never_spent_even_before_the_expiry_job_has_run(
    container: Container,
) -> None:
    org, card = funded_org(container, "100.00")
    set_clock_without_jobs(container, START + timedelta(days=45))
    deposit(container, org.id, "60.00", card.id)
    older, newer = container.credits.view(org.id).lots

    set_clock_without_jobs(container, ONE_YEAR_LATER)  # no job runs: the sweep has not happened
    assert balance(container, org.id) == Decimal("60.00")
    with pytest.raises(RuleViolation) as refused:
        spend(container, org.id, "60.01")
    assert refused.value.code == "insufficient_credits"

    written = spend(container, org.id, "50.00")

    # the debit's own session forfeits the expired lot first, then spends the live one.
    assert [(e.kind, e.amount, e.lot_id) for e in written] == [
        ("expiry", Decimal("-100.00"), older.id),
        ("adjustment", Decimal("-50.00"), newer.id),
    ]
    remaining = {lot.id: lot.remaining for lot in container.credits.view(org.id).lots}
    assert remaining == {older.id: Decimal(0), newer.id: Decimal("10.00")}
    assert balance(container, org.id) == Decimal("10.00")


def test_the_expiry_sweep_records_what_was_left_as_an_expiry_entry(
    container: Container,
) -> None:
    org, _ = funded_org(container, "100.00")
    spend(container, org.id, "30.25")
    [lot] = container.credits.view(org.id).lots

    container.jobs.advance_clock(ONE_YEAR_LATER)

    last = entries(container, org.id)[-1]
    # forfeited and recorded as such, never silently dropped.
    assert (last.kind, last.amount, last.lot_id, last.balance_after, last.at) == (
        "expiry",
        Decimal("-69.75"),
        lot.id,
        Decimal(0),
        ONE_YEAR_LATER,
    )
    [expired] = container.credits.view(org.id).lots
    assert (expired.remaining, expired.status(ONE_YEAR_LATER)) == (Decimal(0), "expired")
    _, [totals] = verify_ledger(container.store, org.id)
    assert (totals.credited, totals.spent, totals.forfeited, totals.balance) == (
        Decimal("100.00"),
        Decimal("30.25"),
        Decimal("69.75"),
        Decimal(0),
    )
    # forfeiting the last credits is the balance reaching zero.
    assert len(notices(container, org.id, "balance_zero")) == 1


def test_a_used_up_lot_expires_without_any_entry(container: Container) -> None:
    org, _ = funded_org(container, "100.00")
    spend(container, org.id, "100.00")

    container.jobs.advance_clock(ONE_YEAR_LATER + timedelta(days=1))

    # nothing was left to forfeit, so nothing is recorded; R-26: nor announced.
    assert [(e.kind, e.amount) for e in entries(container, org.id)] == [
        ("deposit", Decimal("100.00")),
        ("adjustment", Decimal("-100.00")),
    ]
    [lot] = container.credits.view(org.id).lots
    assert lot.status(container.clock.now()) == "expired"
    assert notices(container, org.id, "lots_expiring") == []


def test_the_balance_zero_mail_is_sent_when_an_expiry_is_swept_by_a_settings_change(
    container: Container,
) -> None:
    org, _ = funded_org(container, "100.00")
    set_clock_without_jobs(container, ONE_YEAR_LATER)
    container.credits.set_auto_recharge(org.id, AutoRechargeSettings(enabled=False))
    container.jobs.run_due()
    assert [(e.kind, e.amount) for e in entries(container, org.id)][-1] == (
        "expiry",
        Decimal("-100.00"),
    )
    # the balance reached zero, as surely as when the expiry job forfeits the lot.
    assert len(notices(container, org.id, "balance_zero")) == 1


# -- FIFO ------------------------------------------------------------------------------------


def test_debits_spend_the_oldest_lot_first_with_one_entry_per_lot_touched(
    container: Container,
) -> None:
    org = new_org(container)
    card = add_card(container, org.id)
    for day, amount in enumerate(("50.00", "60.00", "70.00")):
        set_clock_without_jobs(container, START + timedelta(days=day))
        deposit(container, org.id, amount, card.id)
    container.credits.adjust(org.id, "5.00", "a newer adjustment lot")
    first, second, third, fourth = (lot.id for lot in container.credits.view(org.id).lots)

    assert [(e.amount, e.lot_id) for e in spend(container, org.id, "20.00")] == [
        (Decimal("-20.00"), first)
    ]
    written = spend(container, org.id, "100.00")

    # 30 left in the first lot, all 60 of the second, 10 of the third.
    assert [(e.kind, e.amount, e.lot_id, e.balance_after) for e in written] == [
        ("adjustment", Decimal("-30.00"), first, Decimal("135.00")),
        ("adjustment", Decimal("-60.00"), second, Decimal("75.00")),
        ("adjustment", Decimal("-10.00"), third, Decimal("65.00")),
    ]
    remaining = [lot.remaining for lot in container.credits.view(org.id).lots]
    assert remaining == [Decimal(0), Decimal(0), Decimal("60.00"), Decimal("5.00")]
    assert [e.lot_id for e in spend(container, org.id, "65.00")] == [third, fourth]
    assert balance(container, org.id) == Decimal(0)


# -- billing mails ---------------------------------------------------------------------------


def test_the_balance_zero_mail_is_sent_once_each_time_the_balance_reaches_zero(
    container: Container, mail: CollectingTransport
) -> None:
    org, card = funded_org(container, "100.00")
    container.orgs.add_admin(org.id, "billing@contoso.example", "Billing", ["billing_admin"])

    spend(container, org.id, "60.00")
    assert notices(container, org.id, "balance_zero") == []
    spend(container, org.id, "40.00")
    assert len(notices(container, org.id, "balance_zero")) == 1
    with pytest.raises(RuleViolation):
        spend(container, org.id, "0.01")  # already at zero: no second mail for the same zero

    deposit(container, org.id, "50.00", card.id)
    spend(container, org.id, "20.00")
    assert len(notices(container, org.id, "balance_zero")) == 1
    spend(container, org.id, "30.00")

    # reach zero, top up, reach zero again: two mails.
    zero_mails = notices(container, org.id, "balance_zero")
    assert len(zero_mails) == 2
    assert zero_mails[0].recipients == ("billing@contoso.example",)
    container.jobs.run_due()
    assert len(sent(mail, "balance_zero")) == 2
    assert sent(mail, "balance_zero")[0]["Subject"] == (
        "Communications Credits balance is zero (Contoso)"
    )


def test_lots_with_money_left_are_announced_thirty_and_seven_days_before_they_expire(
    container: Container, mail: CollectingTransport
) -> None:
    org, card = funded_org(container, "50.00")
    container.orgs.add_admin(org.id, "billing@contoso.example", "Billing", ["billing_admin"])
    spend(container, org.id, "50.00")  # the first lot is used up: nothing to warn about
    bought = START + timedelta(days=5)
    set_clock_without_jobs(container, bought)
    deposit(container, org.id, "100.00", card.id)
    spend(container, org.id, "0.50")

    container.jobs.advance_clock(bought + timedelta(days=365 - 1))

    # R-26 (our addition): 30 and 7 days before, for the lot with money left only.
    warnings = notices(container, org.id, "lots_expiring")
    expires = datetime(2027, 1, 20, 9, 0, tzinfo=UTC)
    assert [w.created_at for w in warnings] == [
        expires - timedelta(days=30),
        expires - timedelta(days=7),
    ]
    assert [w.subject for w in warnings] == [
        "Communications Credits expire within 30 days (Contoso)",
        "Communications Credits expire within 7 days (Contoso)",
    ]
    for warning in warnings:
        assert warning.body_text.startswith(
            "99.50 USD of Communications Credits will expire unused within"
        )
        assert (
            "- 99.50 USD left of 100.00 USD bought 2026-01-20, expires 2027-01-20 09:00 UTC"
            in warning.body_text
        )
        assert "2026-01-15" not in warning.body_text
    assert len(sent(mail, "lots_expiring")) == 2


def test_billing_mails_go_only_to_global_and_billing_admins(
    container: Container, mail: CollectingTransport
) -> None:
    org, _ = funded_org(container, "100.00")
    for address, roles in (
        ("global@contoso.example", ["global_admin"]),
        ("billing@contoso.example", ["billing_admin"]),
        ("teams@contoso.example", ["teams_admin"]),
        ("reader@contoso.example", ["reports_reader"]),
        ("both@contoso.example", ["teams_admin", "billing_admin"]),
    ):
        container.orgs.add_admin(org.id, address, address.split("@")[0].title(), roles)
    other = new_org(container, name="Fabrikam")
    container.orgs.add_admin(other.id, "global@fabrikam.example", "Global", ["global_admin"])

    spend(container, org.id, "100.00")
    container.jobs.run_due()

    # admins with billing-relevant roles, of this organization only.
    expected = {"global@contoso.example", "billing@contoso.example", "both@contoso.example"}
    [message] = notices(container, org.id, "balance_zero")
    assert set(message.recipients) == expected
    [email] = sent(mail, "balance_zero")
    assert {address.strip() for address in email["To"].split(",")} == expected


def test_a_mail_with_no_billing_admin_to_receive_it_is_kept_as_a_record(
    container: Container, mail: CollectingTransport
) -> None:
    org, _ = funded_org(container, "100.00")
    container.orgs.add_admin(org.id, "teams@contoso.example", "Teams", ["teams_admin"])
    spend(container, org.id, "100.00")
    container.jobs.run_due()
    [message] = notices(container, org.id, "balance_zero")
    # the event is still on record, though nobody with a billing role is told.
    assert (message.recipients, message.status) == ((), "no_recipients")
    assert sent(mail, "balance_zero") == []
