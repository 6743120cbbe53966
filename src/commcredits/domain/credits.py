"""The credit account and what surrounds it: payment methods, orders, entries, invoices.

Amounts are Decimal in the organization's currency. The rules that move money are in
:mod:`commcredits.domain.ledger` (lots, FIFO) and :mod:`commcredits.domain.recharge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal

from commcredits.domain.errors import Conflict
from commcredits.domain.recharge import AutoRecharge

PaymentMethodType = Literal["card", "enterprise_agreement"]
OrderKind = Literal["deposit", "recharge"]
OrderStatus = Literal["pending", "paid", "failed"]
EntryKind = Literal["deposit", "recharge", "usage", "refund", "expiry", "adjustment"]

CREDITS_NOT_OFFERED_IN: Final = frozenset({"RU", "KR", "TW"})
"""R-05: billing countries where credits are not offered (a catalogue setting)."""

EXPIRY_WARNINGS_DAYS: Final = (30, 7)
"""Our addition to R-26: warn this many days before a lot with money left expires."""


@dataclass(frozen=True, slots=True)
class PaymentMethod:
    org_id: str
    id: str
    type: PaymentMethodType
    created_at: datetime
    token: str | None = None
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    holder: str | None = None
    agreement_number: str | None = None
    purchase_order: str | None = None
    removed_at: datetime | None = None

    def describe(self) -> str:
        """How an invoice or a mail names it: "Visa ending 4242", "Enterprise agreement EA-1"."""
        if self.type == "card":
            return f"{(self.brand or 'card').title()} ending {self.last4}"
        return f"Enterprise agreement {self.agreement_number}"


@dataclass(frozen=True, slots=True)
class CreditAccount:
    """The organization's one balance (R-10: MCOPSTNPP gates access to it)."""

    org_id: str
    balance: Decimal
    reserved: Decimal
    auto_recharge: AutoRecharge
    zero_notified: bool
    next_expiry_at: datetime | None

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved


@dataclass(frozen=True, slots=True)
class CreditOrder:
    org_id: str
    id: str
    kind: OrderKind
    status: OrderStatus
    amount: Decimal
    currency: str
    payment_method_id: str
    purchase_order: str | None
    auto_recharge: dict[str, Any] | None
    idempotency_key: str | None
    fingerprint: str | None
    attempts: int
    next_attempt_at: datetime | None
    charge_id: str | None
    failure_code: str | None
    failure_message: str | None
    lot_id: str | None
    invoice_id: str | None
    created_at: datetime
    settled_at: datetime | None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    org_id: str
    seq: int
    id: str
    at: datetime
    kind: EntryKind
    amount: Decimal
    lot_id: str | None
    balance_after: Decimal
    reference: str | None
    description: str | None


@dataclass(frozen=True, slots=True)
class Invoice:
    org_id: str
    id: str
    number: str
    kind: Literal["credits", "overage"]
    order_id: str | None
    issued_at: datetime
    amount: Decimal
    currency: str
    payment_method: str | None
    purchase_order: str | None
    status: str
    lines: list[dict[str, Any]]


def check_credits_offered(country: str, billing: str) -> None:
    """R-02 and R-05: who may buy credits at all."""
    if billing == "postpaid":
        raise Conflict(
            "postpaid organizations pay for usage after the fact and cannot buy credits",
            code="credits_not_available_for_postpaid",
        )
    if country in CREDITS_NOT_OFFERED_IN:
        raise Conflict(
            f"Communications Credits are not offered to organizations billed in {country}",
            code="credits_not_available_in_country",
        )
