"""Request and response bodies of the Credits endpoints (API.md, "Credits").

Amounts travel as decimal strings with exactly the currency's minor-unit decimals; a JSON
number where an amount belongs is refused (400 invalid_type): it may already have lost digits.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from commcredits.api.schemas import Request
from commcredits.domain.credits import CreditOrder, Invoice, LedgerEntry, PaymentMethod
from commcredits.domain.money import Money
from commcredits.domain.recharge import AutoRecharge
from commcredits.services.credits import Adjustment, CreditsView
from commcredits.store.outbox import OutboxMessage

Amount = Annotated[str, Meta(max_length=40, description='decimal string, e.g. "50.00"')]
Short = Annotated[str, Meta(max_length=200)]


def fmt(amount: Decimal | None, currency: str) -> str | None:
    return None if amount is None else Money(amount, currency).format()


class AddCard(Request, tag_field="type", tag="card"):
    number: Annotated[str, Meta(max_length=40)]
    exp_month: int
    exp_year: int
    cvc: Annotated[str, Meta(max_length=8)]
    holder: Short = ""


class AddAgreement(Request, tag_field="type", tag="enterprise_agreement"):
    agreement_number: Annotated[str, Meta(max_length=64)]
    purchase_order: Annotated[str, Meta(max_length=64)] | None = None


class PaymentMethodOut(Struct):
    id: str
    type: str
    created_at: datetime
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    holder: str | None = None
    agreement_number: str | None = None
    purchase_order: str | None = None

    @classmethod
    def of(cls, method: PaymentMethod) -> PaymentMethodOut:
        return cls(
            id=method.id,
            type=method.type,
            created_at=method.created_at,
            brand=method.brand,
            last4=method.last4,
            exp_month=method.exp_month,
            exp_year=method.exp_year,
            holder=method.holder,
            agreement_number=method.agreement_number,
            purchase_order=method.purchase_order,
        )


class AutoRechargeIn(Request):
    enabled: bool
    trigger_amount: Amount | None = None
    recharge_amount: Amount | None = None
    payment_method: Short | None = None


class PlaceOrder(Request):
    amount: Amount
    payment_method: Short
    purchase_order: Annotated[str, Meta(max_length=64)] | None = None
    auto_recharge: AutoRechargeIn | None = None


class OrderOut(Struct):
    id: str
    kind: str
    status: str
    amount: str
    currency: str
    payment_method: str
    purchase_order: str | None
    invoice_id: str | None
    lot_id: str | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    settled_at: datetime | None

    @classmethod
    def of(cls, order: CreditOrder) -> OrderOut:
        return cls(
            id=order.id,
            kind=order.kind,
            status=order.status,
            amount=Money(order.amount, order.currency).format(),
            currency=order.currency,
            payment_method=order.payment_method_id,
            purchase_order=order.purchase_order,
            invoice_id=order.invoice_id,
            lot_id=order.lot_id,
            failure_code=order.failure_code,
            failure_message=order.failure_message,
            created_at=order.created_at,
            settled_at=order.settled_at,
        )


class AutoRechargeOut(Struct):
    enabled: bool
    trigger_amount: str | None
    recharge_amount: str | None
    payment_method: str | None
    status: str
    failures: int
    next_retry_at: datetime | None

    @classmethod
    def of(cls, settings: AutoRecharge, currency: str) -> AutoRechargeOut:
        return cls(
            enabled=settings.enabled,
            trigger_amount=fmt(settings.trigger_amount, currency),
            recharge_amount=fmt(settings.recharge_amount, currency),
            payment_method=settings.payment_method_id,
            status=settings.status,
            failures=settings.failures,
            next_retry_at=settings.next_retry_at,
        )


class LotOut(Struct):
    id: str
    source: str
    amount: str
    remaining: str
    purchased_at: datetime
    expires_at: datetime
    status: str


class CreditsOut(Struct):
    currency: str
    balance: str
    reserved: str
    available: str
    auto_recharge: AutoRechargeOut
    lots: list[LotOut]

    @classmethod
    def of(cls, view: CreditsView) -> CreditsOut:
        currency = view.org.currency
        return cls(
            currency=currency,
            balance=Money(view.balance, currency).format(),
            reserved=Money(view.reserved, currency).format(),
            available=Money(view.available, currency).format(),
            auto_recharge=AutoRechargeOut.of(view.account.auto_recharge, currency),
            lots=[
                LotOut(
                    id=lot.id,
                    source=lot.source,
                    amount=Money(lot.amount, currency).format(),
                    remaining=Money(lot.remaining, currency).format(),
                    purchased_at=lot.purchased_at,
                    expires_at=lot.expires_at,
                    status=lot.status(view.at),
                )
                for lot in view.lots
            ],
        )


class Adjust(Request):
    amount: Amount
    reason: Annotated[str, Meta(max_length=300)]


class EntryOut(Struct):
    id: str
    seq: int
    """The entry's place in the organization's ledger; ``?before=seq`` pages back."""
    at: datetime
    kind: str
    amount: str
    lot_id: str | None
    reference: str | None
    balance_after: str
    description: str | None

    @classmethod
    def of(cls, entry: LedgerEntry, currency: str) -> EntryOut:
        return cls(
            id=entry.id,
            seq=entry.seq,
            at=entry.at,
            kind=entry.kind,
            amount=Money(entry.amount, currency).format(),
            lot_id=entry.lot_id,
            reference=entry.reference,
            balance_after=Money(entry.balance_after, currency).format(),
            description=entry.description,
        )


class AdjustmentOut(Struct):
    """The adjustment as one ledger entry; ``entries`` has one row per lot it touched."""

    id: str
    at: datetime
    kind: Literal["adjustment"]
    amount: str
    currency: str
    lot_id: str | None
    reference: str | None
    balance_after: str
    reason: str
    entries: list[EntryOut]

    @classmethod
    def of(cls, adjustment: Adjustment, currency: str) -> AdjustmentOut:
        first = adjustment.entries[0]
        lots = {entry.lot_id for entry in adjustment.entries}
        return cls(
            id=first.id,
            at=first.at,
            kind="adjustment",
            amount=Money(adjustment.amount, currency).format(),
            currency=currency,
            lot_id=first.lot_id if len(lots) == 1 else None,
            reference=first.reference,
            balance_after=Money(adjustment.balance_after, currency).format(),
            reason=adjustment.reason,
            entries=[EntryOut.of(entry, currency) for entry in adjustment.entries],
        )


class InvoiceOut(Struct):
    id: str
    number: str
    kind: str
    issued_at: datetime
    amount: str
    currency: str
    payment_method: str | None
    purchase_order: str | None
    status: str
    order_id: str | None
    lines: list[dict[str, Any]]

    @classmethod
    def of(cls, invoice: Invoice) -> InvoiceOut:
        return cls(
            id=invoice.id,
            number=invoice.number,
            kind=invoice.kind,
            issued_at=invoice.issued_at,
            amount=Money(invoice.amount, invoice.currency).format(),
            currency=invoice.currency,
            payment_method=invoice.payment_method,
            purchase_order=invoice.purchase_order,
            status=invoice.status,
            order_id=invoice.order_id,
            lines=invoice.lines,
        )


class NotificationOut(Struct):
    id: str
    kind: str
    recipients: list[str]
    subject: str
    body: str
    created_at: datetime
    sent_at: datetime | None
    status: str
    attempts: int

    @classmethod
    def of(cls, message: OutboxMessage) -> NotificationOut:
        return cls(
            id=message.id,
            kind=message.kind,
            recipients=list(message.recipients),
            subject=message.subject,
            body=message.body_text,
            created_at=message.created_at,
            sent_at=message.sent_at,
            status=message.status,
            attempts=message.attempts,
        )
