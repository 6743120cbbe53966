"""Repositories for the credit account, lots, ledger entries, orders, invoices and payment
methods. Amounts cross this boundary as Decimal and are stored as integer micro-units."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Connection, Row, and_, bindparam, func, insert, select, update

from commcredits.domain.credits import (
    CreditAccount,
    CreditOrder,
    EntryKind,
    Invoice,
    LedgerEntry,
    OrderKind,
    OrderStatus,
    PaymentMethod,
    PaymentMethodType,
)
from commcredits.domain.ledger import Lot, LotSource
from commcredits.domain.money import from_micros, to_micros
from commcredits.domain.recharge import AutoRecharge, RechargeStatus
from commcredits.store.database import DriverStatement
from commcredits.store.tables import (
    LOT_HAS_MONEY,
    credit_accounts,
    credit_orders,
    invoices,
    ledger_entries,
    lots,
    payment_methods,
)
from commcredits.store.types import as_utc


def _opt_micros(value: Decimal | None) -> int | None:
    return None if value is None else to_micros(value)


def _opt_amount(value: int | None) -> Decimal | None:
    return None if value is None else from_micros(value)


class PaymentMethodRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def add(self, method: PaymentMethod) -> None:
        self.conn.execute(
            insert(payment_methods).values(
                org_id=method.org_id,
                id=method.id,
                type=method.type,
                token=method.token,
                brand=method.brand,
                last4=method.last4,
                exp_month=method.exp_month,
                exp_year=method.exp_year,
                holder=method.holder,
                agreement_number=method.agreement_number,
                purchase_order=method.purchase_order,
                created_at=method.created_at,
            )
        )

    @staticmethod
    def _of(row: Row[Any]) -> PaymentMethod:
        return PaymentMethod(
            org_id=row.org_id,
            id=row.id,
            type=cast(PaymentMethodType, row.type),
            created_at=row.created_at,
            token=row.token,
            brand=row.brand,
            last4=row.last4,
            exp_month=row.exp_month,
            exp_year=row.exp_year,
            holder=row.holder,
            agreement_number=row.agreement_number,
            purchase_order=row.purchase_order,
            removed_at=row.removed_at,
        )

    def get(self, org_id: str, method_id: str) -> PaymentMethod | None:
        row = self.conn.execute(
            select(payment_methods).where(
                payment_methods.c.org_id == org_id, payment_methods.c.id == method_id
            )
        ).first()
        return self._of(row) if row else None

    def active(self, org_id: str) -> list[PaymentMethod]:
        rows = self.conn.execute(
            select(payment_methods)
            .where(payment_methods.c.org_id == org_id, payment_methods.c.removed_at.is_(None))
            .order_by(payment_methods.c.created_at, payment_methods.c.id)
        )
        return [self._of(row) for row in rows]

    def remove(self, org_id: str, method_id: str, at: datetime) -> None:
        self.conn.execute(
            update(payment_methods)
            .where(payment_methods.c.org_id == org_id, payment_methods.c.id == method_id)
            .values(removed_at=at)
        )


def _account(row: Row[Any]) -> CreditAccount:
    return CreditAccount(
        org_id=row.org_id,
        balance=from_micros(row.balance_micros),
        reserved=from_micros(row.reserved_micros),
        auto_recharge=AutoRecharge(
            enabled=bool(row.recharge_enabled),
            trigger_amount=_opt_amount(row.recharge_trigger_micros),
            recharge_amount=_opt_amount(row.recharge_amount_micros),
            payment_method_id=row.recharge_payment_method_id,
            status=cast(RechargeStatus, row.recharge_status),
            failures=row.recharge_failures,
            next_retry_at=row.recharge_next_retry_at,
        ),
        zero_notified=bool(row.zero_notified),
        next_expiry_at=row.next_expiry_at,
    )


def _lot(row: Row[Any]) -> Lot:
    return Lot(
        id=row.id,
        source=cast(LotSource, row.source),
        amount=from_micros(row.amount_micros),
        remaining=from_micros(row.remaining_micros),
        purchased_at=row.purchased_at,
        expires_at=row.expires_at,
    )


def _entry(row: Row[Any]) -> LedgerEntry:
    return LedgerEntry(
        org_id=row.org_id,
        seq=row.seq,
        id=row.id,
        at=row.at,
        kind=cast(EntryKind, row.kind),
        amount=from_micros(row.amount_micros),
        lot_id=row.lot_id,
        balance_after=from_micros(row.balance_after_micros),
        reference=row.reference,
        description=row.description,
    )


# Built once: every batch of call control reads and writes the account, its lots and its
# entries, and building a statement costs more than running it.
_ACCOUNT = select(credit_accounts).where(credit_accounts.c.org_id == bindparam("k_org"))
_SAVE_ACCOUNT = (
    update(credit_accounts)
    .where(credit_accounts.c.org_id == bindparam("k_org"))
    .values(
        balance_micros=bindparam("v_balance"),
        reserved_micros=bindparam("v_reserved"),
        next_expiry_at=bindparam("v_next_expiry", type_=credit_accounts.c.next_expiry_at.type),
        zero_notified=bindparam("v_zero_notified"),
        recharge_enabled=bindparam("v_enabled"),
        recharge_trigger_micros=bindparam("v_trigger"),
        recharge_amount_micros=bindparam("v_amount"),
        recharge_payment_method_id=bindparam("v_method"),
        recharge_status=bindparam("v_status"),
        recharge_failures=bindparam("v_failures"),
        recharge_next_retry_at=bindparam(
            "v_retry", type_=credit_accounts.c.recharge_next_retry_at.type
        ),
        updated_at=bindparam("v_updated", type_=credit_accounts.c.updated_at.type),
    )
)
_TAKE_ENTRY_SEQ = (
    update(credit_accounts)
    .where(credit_accounts.c.org_id == bindparam("k_org"))
    .values(entry_seq=credit_accounts.c.entry_seq + bindparam("k_count"))
    .returning(credit_accounts.c.entry_seq)
)
_SET_REMAINING = (
    update(lots)
    .where(lots.c.org_id == bindparam("k_org"), lots.c.id == bindparam("k_lot"))
    .values(remaining_micros=bindparam("v_remaining"))
)
_LOTS_WITH_MONEY = (
    select(lots)
    .where(lots.c.org_id == bindparam("k_org"), LOT_HAS_MONEY)
    .order_by(lots.c.purchased_at, lots.c.id)
)
_ADD_ENTRIES = DriverStatement(insert(ledger_entries), times=frozenset({"at"}))


class CreditRepository:
    """The account row, its lots and its ledger entries."""

    def __init__(self, conn: Connection):
        self.conn = conn

    # account
    def account(self, org_id: str) -> CreditAccount | None:
        row = self.conn.execute(_ACCOUNT, {"k_org": org_id}).first()
        return _account(row) if row else None

    def create_account(self, org_id: str, now: datetime) -> CreditAccount:
        self.conn.execute(
            insert(credit_accounts).values(
                org_id=org_id,
                balance_micros=0,
                reserved_micros=0,
                entry_seq=0,
                invoice_seq=0,
                zero_notified=False,
                recharge_enabled=False,
                recharge_status="off",
                recharge_failures=0,
                updated_at=now,
            )
        )
        account = self.account(org_id)
        assert account is not None
        return account

    def save_account(self, account: CreditAccount, now: datetime) -> None:
        settings = account.auto_recharge
        self.conn.execute(
            _SAVE_ACCOUNT,
            {
                "k_org": account.org_id,
                "v_balance": to_micros(account.balance),
                "v_reserved": to_micros(account.reserved),
                "v_next_expiry": account.next_expiry_at,
                "v_zero_notified": account.zero_notified,
                "v_enabled": settings.enabled,
                "v_trigger": _opt_micros(settings.trigger_amount),
                "v_amount": _opt_micros(settings.recharge_amount),
                "v_method": settings.payment_method_id,
                "v_status": settings.status,
                "v_failures": settings.failures,
                "v_retry": settings.next_retry_at,
                "v_updated": now,
            },
        )

    def next_entry_seq(self, org_id: str, count: int) -> int:
        """Reserve ``count`` entry sequence numbers; returns the first."""
        last = self.conn.execute(_TAKE_ENTRY_SEQ, {"k_org": org_id, "k_count": count}).scalar_one()
        return int(last) - count + 1

    def next_invoice_number(self, org_id: str) -> int:
        self.conn.execute(
            update(credit_accounts)
            .where(credit_accounts.c.org_id == org_id)
            .values(invoice_seq=credit_accounts.c.invoice_seq + 1)
        )
        return int(
            self.conn.execute(
                select(credit_accounts.c.invoice_seq).where(credit_accounts.c.org_id == org_id)
            ).scalar_one()
        )

    # lots
    def add_lot(self, org_id: str, lot: Lot, order_id: str | None) -> None:
        self.conn.execute(
            insert(lots).values(
                org_id=org_id,
                id=lot.id,
                source=lot.source,
                amount_micros=to_micros(lot.amount),
                remaining_micros=to_micros(lot.remaining),
                purchased_at=lot.purchased_at,
                expires_at=lot.expires_at,
                order_id=order_id,
            )
        )

    def has_lots(self, org_id: str) -> bool:
        """True once the organization has ever been credited (funded)."""
        query = select(lots.c.id).where(lots.c.org_id == org_id).limit(1)
        return self.conn.execute(query).first() is not None

    def set_remaining(self, org_id: str, lot_id: str, remaining: Decimal) -> None:
        self.set_remaining_many(org_id, [(lot_id, remaining)])

    def set_remaining_many(self, org_id: str, changes: list[tuple[str, Decimal]]) -> None:
        """Set what is left in several lots, ``(lot id, remaining)`` pairs, in one statement."""
        if changes:
            self.conn.execute(
                _SET_REMAINING,
                [
                    {"k_org": org_id, "k_lot": lot_id, "v_remaining": to_micros(remaining)}
                    for lot_id, remaining in changes
                ],
            )

    def lots_with_money(self, org_id: str) -> list[Lot]:
        rows = self.conn.execute(_LOTS_WITH_MONEY, {"k_org": org_id})
        return [_lot(row) for row in rows]

    def all_lots(self, org_id: str) -> list[Lot]:
        rows = self.conn.execute(
            select(lots).where(lots.c.org_id == org_id).order_by(lots.c.purchased_at, lots.c.id)
        )
        return [_lot(row) for row in rows]

    def lots_to_warn(self, now: datetime, days: int) -> list[tuple[str, Lot, int | None]]:
        """Lots with money left whose expiry is within ``days`` and not yet warned that close."""
        rows = self.conn.execute(
            select(lots).where(
                LOT_HAS_MONEY,
                lots.c.expires_at > now,
                lots.c.expires_at <= now + timedelta(days=days),
                (lots.c.warned_days.is_(None)) | (lots.c.warned_days > days),
            )
        )
        return [(row.org_id, _lot(row), row.warned_days) for row in rows]

    def next_warning_at(self, days: int) -> datetime | None:
        value: datetime | None = self.conn.execute(
            select(func.min(lots.c.expires_at)).where(
                LOT_HAS_MONEY,
                (lots.c.warned_days.is_(None)) | (lots.c.warned_days > days),
            )
        ).scalar_one_or_none()
        value = as_utc(value)
        return None if value is None else value - timedelta(days=days)

    def mark_warned(self, org_id: str, lot_id: str, days: int) -> None:
        self.conn.execute(
            update(lots)
            .where(lots.c.org_id == org_id, lots.c.id == lot_id)
            .values(warned_days=days)
        )

    def orgs_with_expired_lots(self, now: datetime) -> list[str]:
        rows = self.conn.execute(
            select(lots.c.org_id).where(LOT_HAS_MONEY, lots.c.expires_at <= now).distinct()
        )
        return [row.org_id for row in rows]

    def next_expiry(self, org_id: str | None = None) -> datetime | None:
        query = select(func.min(lots.c.expires_at)).where(LOT_HAS_MONEY)
        if org_id is not None:
            query = query.where(lots.c.org_id == org_id)
        value: datetime | None = self.conn.execute(query).scalar_one_or_none()
        return as_utc(value)

    # entries
    def add_entries(self, entries: list[LedgerEntry]) -> None:
        # The driver's own executemany: a batch of calls writes hundreds of entries at once.
        _ADD_ENTRIES.execute_many(
            self.conn,
            [
                {
                    "org_id": e.org_id,
                    "seq": e.seq,
                    "id": e.id,
                    "at": e.at,
                    "kind": e.kind,
                    "amount_micros": to_micros(e.amount),
                    "lot_id": e.lot_id,
                    "balance_after_micros": to_micros(e.balance_after),
                    "reference": e.reference,
                    "description": e.description,
                }
                for e in entries
            ],
        )

    def entries(
        self, org_id: str, *, limit: int = 100, before_seq: int | None = None
    ) -> list[LedgerEntry]:
        query = (
            select(ledger_entries)
            .where(ledger_entries.c.org_id == org_id)
            .order_by(ledger_entries.c.seq.desc())
            .limit(limit)
        )
        if before_seq is not None:
            query = query.where(ledger_entries.c.seq < before_seq)
        return [_entry(row) for row in self.conn.execute(query)]

    def all_entries(self, org_id: str) -> list[LedgerEntry]:
        rows = self.conn.execute(
            select(ledger_entries)
            .where(ledger_entries.c.org_id == org_id)
            .order_by(ledger_entries.c.seq)
        )
        return [_entry(row) for row in rows]

    def org_ids_with_accounts(self) -> list[str]:
        rows = self.conn.execute(
            select(credit_accounts.c.org_id).order_by(credit_accounts.c.org_id)
        )
        return [row.org_id for row in rows]

    def accounts_due_for_retry(self, now: datetime) -> list[str]:
        rows = self.conn.execute(
            select(credit_accounts.c.org_id).where(
                credit_accounts.c.recharge_status == "retrying",
                credit_accounts.c.recharge_next_retry_at <= now,
            )
        )
        return [row.org_id for row in rows]

    def next_retry_at(self) -> datetime | None:
        value: datetime | None = self.conn.execute(
            select(func.min(credit_accounts.c.recharge_next_retry_at)).where(
                credit_accounts.c.recharge_status == "retrying"
            )
        ).scalar_one_or_none()
        return as_utc(value)


def _order(row: Row[Any]) -> CreditOrder:
    return CreditOrder(
        org_id=row.org_id,
        id=row.id,
        kind=cast(OrderKind, row.kind),
        status=cast(OrderStatus, row.status),
        amount=from_micros(row.amount_micros),
        currency=row.currency,
        payment_method_id=row.payment_method_id,
        purchase_order=row.purchase_order,
        auto_recharge=row.auto_recharge,
        idempotency_key=row.idempotency_key,
        fingerprint=row.fingerprint,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        charge_id=row.charge_id,
        failure_code=row.failure_code,
        failure_message=row.failure_message,
        lot_id=row.lot_id,
        invoice_id=row.invoice_id,
        created_at=row.created_at,
        settled_at=row.settled_at,
    )


class OrderRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def add(self, order: CreditOrder) -> None:
        self.conn.execute(
            insert(credit_orders).values(
                org_id=order.org_id,
                id=order.id,
                kind=order.kind,
                status=order.status,
                amount_micros=to_micros(order.amount),
                currency=order.currency,
                payment_method_id=order.payment_method_id,
                purchase_order=order.purchase_order,
                auto_recharge=order.auto_recharge,
                idempotency_key=order.idempotency_key,
                fingerprint=order.fingerprint,
                attempts=order.attempts,
                next_attempt_at=order.next_attempt_at,
                created_at=order.created_at,
            )
        )

    def get(self, org_id: str, order_id: str) -> CreditOrder | None:
        row = self.conn.execute(
            select(credit_orders).where(
                credit_orders.c.org_id == org_id, credit_orders.c.id == order_id
            )
        ).first()
        return _order(row) if row else None

    def by_idempotency_key(self, org_id: str, key: str) -> CreditOrder | None:
        row = self.conn.execute(
            select(credit_orders).where(
                credit_orders.c.org_id == org_id, credit_orders.c.idempotency_key == key
            )
        ).first()
        return _order(row) if row else None

    def for_org(
        self, org_id: str, *, kind: str | None = None, limit: int = 100
    ) -> list[CreditOrder]:
        query = (
            select(credit_orders)
            .where(credit_orders.c.org_id == org_id)
            .order_by(credit_orders.c.created_at.desc(), credit_orders.c.id.desc())
            .limit(limit)
        )
        if kind:
            query = query.where(credit_orders.c.kind == kind)
        return [_order(row) for row in self.conn.execute(query)]

    def pending_due(self, now: datetime, limit: int = 100) -> list[CreditOrder]:
        rows = self.conn.execute(
            select(credit_orders)
            .where(credit_orders.c.status == "pending", credit_orders.c.next_attempt_at <= now)
            .order_by(credit_orders.c.next_attempt_at, credit_orders.c.id)
            .limit(limit)
        )
        return [_order(row) for row in rows]

    def next_pending_at(self) -> datetime | None:
        value: datetime | None = self.conn.execute(
            select(func.min(credit_orders.c.next_attempt_at)).where(
                credit_orders.c.status == "pending"
            )
        ).scalar_one_or_none()
        return as_utc(value)

    def has_pending_recharge(self, org_id: str) -> bool:
        return (
            self.conn.execute(
                select(credit_orders.c.id).where(
                    and_(
                        credit_orders.c.org_id == org_id,
                        credit_orders.c.kind == "recharge",
                        credit_orders.c.status == "pending",
                    )
                )
            ).first()
            is not None
        )

    def postpone(
        self, org_id: str, order_id: str, attempts: int, next_attempt_at: datetime
    ) -> None:
        self.conn.execute(
            update(credit_orders)
            .where(credit_orders.c.org_id == org_id, credit_orders.c.id == order_id)
            .values(attempts=attempts, next_attempt_at=next_attempt_at)
        )

    def settle(self, order: CreditOrder) -> None:
        self.conn.execute(
            update(credit_orders)
            .where(credit_orders.c.org_id == order.org_id, credit_orders.c.id == order.id)
            .values(
                status=order.status,
                attempts=order.attempts,
                next_attempt_at=None,
                charge_id=order.charge_id,
                failure_code=order.failure_code,
                failure_message=order.failure_message,
                lot_id=order.lot_id,
                invoice_id=order.invoice_id,
                settled_at=order.settled_at,
            )
        )

    def all_for_org(self, org_id: str) -> list[CreditOrder]:
        rows = self.conn.execute(select(credit_orders).where(credit_orders.c.org_id == org_id))
        return [_order(row) for row in rows]


def _invoice(row: Row[Any]) -> Invoice:
    return Invoice(
        org_id=row.org_id,
        id=row.id,
        number=row.number,
        kind=row.kind,
        order_id=row.order_id,
        issued_at=row.issued_at,
        amount=from_micros(row.amount_micros),
        currency=row.currency,
        payment_method=row.payment_method,
        purchase_order=row.purchase_order,
        status=row.status,
        lines=list(row.lines),
    )


class InvoiceRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def add(self, invoice: Invoice) -> None:
        self.conn.execute(
            insert(invoices).values(
                org_id=invoice.org_id,
                id=invoice.id,
                number=invoice.number,
                kind=invoice.kind,
                order_id=invoice.order_id,
                issued_at=invoice.issued_at,
                amount_micros=to_micros(invoice.amount),
                currency=invoice.currency,
                payment_method=invoice.payment_method,
                purchase_order=invoice.purchase_order,
                status=invoice.status,
                lines=invoice.lines,
            )
        )

    def get(self, org_id: str, invoice_id: str) -> Invoice | None:
        row = self.conn.execute(
            select(invoices).where(invoices.c.org_id == org_id, invoices.c.id == invoice_id)
        ).first()
        return _invoice(row) if row else None

    def for_org(self, org_id: str, *, limit: int = 100) -> list[Invoice]:
        rows = self.conn.execute(
            select(invoices)
            .where(invoices.c.org_id == org_id)
            .order_by(invoices.c.issued_at.desc(), invoices.c.id.desc())
            .limit(limit)
        )
        return [_invoice(row) for row in rows]
