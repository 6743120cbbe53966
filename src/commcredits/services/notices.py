"""The billing mails of R-26, written to the outbox inside the transaction of their event.

They go to the organization's admins whose roles include global_admin or billing_admin.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from commcredits.domain.ledger import Lot
from commcredits.domain.money import Money
from commcredits.domain.organizations import Organization
from commcredits.domain.roles import BILLING_ADMIN_ROLES
from commcredits.services import mail
from commcredits.store.database import UnitOfWork
from commcredits.store.orgs import AdminRepository


def _recipients(uow: UnitOfWork, org: Organization) -> list[str]:
    admins = AdminRepository(uow.conn).with_any_role(org.id, sorted(BILLING_ADMIN_ROLES))
    return [admin.email for admin in admins]


def _money(org: Organization, amount: Decimal) -> str:
    return str(Money(amount, org.currency))


def _send(
    uow: UnitOfWork, org: Organization, kind: str, subject: str, body: str, now: datetime
) -> None:
    mail.enqueue(
        uow,
        org_id=org.id,
        kind=kind,
        recipients=_recipients(uow, org),
        subject=f"{subject} ({org.name})",
        body=body,
        now=now,
    )


def recharge_succeeded(
    uow: UnitOfWork,
    org: Organization,
    amount: Decimal,
    balance: Decimal,
    method: str,
    now: datetime,
) -> None:
    _send(
        uow,
        org,
        "recharge_succeeded",
        "Communications Credits recharged",
        f"Your Communications Credits balance was recharged with {_money(org, amount)},"
        f" charged to {method}.\nThe balance is now {_money(org, balance)}.\n",
        now,
    )


def recharge_failed(
    uow: UnitOfWork,
    org: Organization,
    amount: Decimal,
    method: str,
    reason: str,
    next_retry_at: datetime | None,
    now: datetime,
) -> None:
    then = (
        f"We will try again at {next_retry_at:%Y-%m-%d %H:%M} UTC."
        if next_retry_at
        else "We will not try again until the payment method or the auto-recharge settings change."
    )
    _send(
        uow,
        org,
        "recharge_failed",
        "Communications Credits recharge failed",
        f"The automatic recharge of {_money(org, amount)} charged to {method} failed:"
        f" {reason.rstrip('.')}.\n"
        f"{then}\nUpdate the payment method to keep calls that need credits working.\n",
        now,
    )


def balance_zero(uow: UnitOfWork, org: Organization, now: datetime) -> None:
    _send(
        uow,
        org,
        "balance_zero",
        "Communications Credits balance is zero",
        "Your Communications Credits balance has reached zero. Toll-free numbers stop answering,"
        " and international calls, calls beyond the included minutes and meeting dial-out beyond"
        " the pool are refused until you add funds.\n",
        now,
    )


def lots_expiring(
    uow: UnitOfWork, org: Organization, expiring: Sequence[Lot], days: int, now: datetime
) -> None:
    lines = "\n".join(
        f"- {_money(org, lot.remaining)} left of {_money(org, lot.amount)} bought"
        f" {lot.purchased_at:%Y-%m-%d}, expires {lot.expires_at:%Y-%m-%d %H:%M} UTC"
        for lot in expiring
    )
    total = sum((lot.remaining for lot in expiring), Decimal(0))
    _send(
        uow,
        org,
        "lots_expiring",
        f"Communications Credits expire within {days} days",
        f"{_money(org, total)} of Communications Credits will expire unused within {days} days:\n"
        f"{lines}\nCredits expire 12 months after purchase; what is left then is forfeited.\n",
        now,
    )


def dialout_pool(
    uow: UnitOfWork,
    org: Organization,
    percent: int,
    used: int,
    size: int,
    month: str,
    now: datetime,
) -> None:
    """R-35: the conferencing dial-out pool reached 80% or 100% this month."""
    then = (
        "Further dial-out to Zone A is charged per minute from Communications Credits."
        if percent >= 100
        else "Beyond the pool, dial-out is charged per minute from Communications Credits."
    )
    _send(
        uow,
        org,
        f"dialout_pool_{percent}",
        f"Meeting dial-out minutes {percent}% used",
        f"{used} of the {size} meeting dial-out minutes for {month} have been used.\n{then}\n",
        now,
    )
