"""One organization's credit account inside one unit of work, under the organization's lock.

Every movement of credits goes through an :class:`AccountSession`: it takes the lock, sweeps
lots that expired since the last look (R-21: expired lots are never drawn on, even before the
expiry job runs), applies credits and FIFO debits with the pure ledger functions, and writes
lots, entries and the account row together when closed. Because sizing happens while the lock
is held, two concurrent debits can never both spend the same money.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from commcredits.domain.credits import CreditAccount, EntryKind, LedgerEntry
from commcredits.domain.errors import NotFound, RuleViolation
from commcredits.domain.ids import new_id
from commcredits.domain.ledger import Allocation, Lot, LotSource, allocate_fifo, new_lot
from commcredits.domain.money import Money
from commcredits.domain.organizations import Organization
from commcredits.store.credits import CreditRepository
from commcredits.store.database import UnitOfWork
from commcredits.store.orgs import OrganizationRepository

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class _PendingEntry:
    kind: EntryKind
    amount: Decimal
    lot_id: str | None
    reference: str | None
    description: str | None


class AccountSession:
    """The account of one organization, locked for the rest of the transaction."""

    def __init__(self, uow: UnitOfWork, org_id: str, now: datetime):
        # On SQLite the write transaction is the lock, and reading the row says whether the
        # organization exists; PostgreSQL locks the row first (see UnitOfWork.lock_org).
        if uow.dialect == "postgresql" and not uow.lock_org(org_id):
            raise NotFound("no such organization", code="organization_not_found")
        org = OrganizationRepository(uow.conn).get(org_id)
        if org is None:
            raise NotFound("no such organization", code="organization_not_found")
        self.org: Organization = org
        self.uow = uow
        self.now = now
        self.repo = CreditRepository(uow.conn)
        self._account: CreditAccount = self.repo.account(org_id) or self.repo.create_account(
            org_id, now
        )
        # Money moves many times per batch of calls: kept as plain numbers, and folded into
        # the (immutable) account row only when someone reads or saves it.
        self._balance = self._account.balance
        self._reserved = self._account.reserved
        self._opening_balance = self._balance
        self._lots: dict[str, Lot] | None = None
        self._changed_lots: set[str] = set()
        self._new_lots: dict[str, str | None] = {}
        self._entries: list[_PendingEntry] = []
        self.debited = False
        self.forfeited = ZERO
        if self.account.next_expiry_at is not None and self.account.next_expiry_at <= now:
            self.sweep_expired()

    @property
    def account(self) -> CreditAccount:
        account = self._account
        if account.balance != self._balance or account.reserved != self._reserved:
            # Built directly rather than through ``replace``: read after nearly every debit.
            account = self._account = CreditAccount(
                org_id=account.org_id,
                balance=self._balance,
                reserved=self._reserved,
                auto_recharge=account.auto_recharge,
                zero_notified=account.zero_notified,
                next_expiry_at=account.next_expiry_at,
            )
        return account

    @account.setter
    def account(self, account: CreditAccount) -> None:
        self._account = account
        self._balance = account.balance
        self._reserved = account.reserved

    def snapshot(self) -> tuple[object, ...]:
        """The in-memory state, so a failed step of a batch can be undone (see restore)."""
        return (
            self.account,
            None if self._lots is None else dict(self._lots),
            set(self._changed_lots),
            dict(self._new_lots),
            list(self._entries),
            self.debited,
            self.forfeited,
        )

    def restore(self, state: tuple[object, ...]) -> None:
        (account, lots, changed, new, entries, debited, forfeited) = state
        self.account = account  # type: ignore[assignment]
        self._lots = lots  # type: ignore[assignment]
        self._changed_lots = changed  # type: ignore[assignment]
        self._new_lots = new  # type: ignore[assignment]
        self._entries = entries  # type: ignore[assignment]
        self.debited = debited  # type: ignore[assignment]
        self.forfeited = forfeited  # type: ignore[assignment]

    @property
    def lots(self) -> dict[str, Lot]:
        """Lots with money left (loaded on first use)."""
        if self._lots is None:
            self._lots = {lot.id: lot for lot in self.repo.lots_with_money(self.org.id)}
        return self._lots

    @property
    def balance(self) -> Decimal:
        return self._balance

    @property
    def available(self) -> Decimal:
        return self._balance - self._reserved

    def _move(self, amount: Decimal) -> None:
        self._balance += amount

    def sweep_expired(self) -> Decimal:
        """Forfeit what is left in lots whose 12 months are over, with an ``expiry`` entry each."""
        forfeited = ZERO
        for lot in sorted(self.lots.values(), key=lambda lot: (lot.purchased_at, lot.id)):
            if lot.is_expired(self.now) and lot.remaining > 0:
                self._entries.append(
                    _PendingEntry("expiry", -lot.remaining, lot.id, lot.id, "lot expired")
                )
                self._move(-lot.remaining)
                forfeited += lot.remaining
                self.lots[lot.id] = replace(lot, remaining=ZERO)
                self._changed_lots.add(lot.id)
        if forfeited:
            self.debited = True
            self.forfeited += forfeited
            if self._reserved > self._balance:
                # Money reserved for calls in progress cannot outlive the lots it stood on.
                self._reserved = self._balance
        return forfeited

    def credit(
        self,
        source: LotSource,
        amount: Decimal,
        *,
        kind: EntryKind,
        reference: str | None,
        description: str | None = None,
        order_id: str | None = None,
    ) -> Lot:
        """Add a lot of ``amount`` bought now (R-21: expires 12 months later)."""
        if amount <= 0:
            raise ValueError("a credit must be positive")
        lot = new_lot(new_id("lot"), source, amount, self.now)
        self.lots[lot.id] = lot
        self._new_lots[lot.id] = order_id
        self._entries.append(_PendingEntry(kind, amount, lot.id, reference, description))
        self._move(amount)
        self.account = replace(self.account, zero_notified=False)
        return lot

    def debit(
        self,
        amount: Decimal,
        *,
        kind: EntryKind,
        reference: str | None,
        description: str | None = None,
    ) -> tuple[Allocation, ...]:
        """Spend ``amount`` from the oldest unexpired lots first (R-22); refused whole when it is
        more than the available balance (R-28: the balance never goes below zero)."""
        if amount <= 0:
            raise ValueError("a debit must be positive")
        if amount > self.available:
            currency = self.org.currency
            raise RuleViolation(
                f"{Money(amount, currency).format()} is more than the available balance of"
                f" {Money(self.available, currency).format()} {currency}",
                code="insufficient_credits",
                field="amount",
            )
        result = allocate_fifo(self.lots.values(), amount, self.now)
        # The account row and the lots move together; a shortfall here means they disagree.
        assert result.shortfall == 0, "account balance and lots disagree"
        for allocation in result.allocations:
            lot = self.lots[allocation.lot_id]
            self.lots[lot.id] = replace(lot, remaining=lot.remaining - allocation.amount)
            self._changed_lots.add(lot.id)
            self._entries.append(
                _PendingEntry(kind, -allocation.amount, lot.id, reference, description)
            )
        self._move(-amount)
        self.debited = True
        return result.allocations

    def reserve(self, amount: Decimal) -> None:
        """Set money aside for a call in progress: it stays in the balance but is no longer
        available, so concurrent calls can never together spend more than there is."""
        if amount < 0 or amount > self.available:
            raise RuleViolation("not enough credits to reserve", code="insufficient_credits")
        self._reserved += amount

    def release(self, amount: Decimal) -> None:
        """Give back what a call set aside and did not use (never more than is reserved)."""
        amount = min(max(amount, ZERO), self._reserved)
        self._reserved -= amount

    @property
    def reached_zero(self) -> bool:
        """True when this session's debits took a positive balance to exactly zero."""
        return self.debited and self.balance == 0 and self._opening_balance > 0

    def close(self) -> list[LedgerEntry]:
        """Write lots, entries and the account row; returns the entries written."""
        written: list[LedgerEntry] = []
        if self._entries:
            seq = self.repo.next_entry_seq(self.org.id, len(self._entries))
            running = self._opening_balance
            for offset, pending in enumerate(self._entries):
                running += pending.amount
                written.append(
                    LedgerEntry(
                        org_id=self.org.id,
                        seq=seq + offset,
                        id=new_id("txn"),
                        at=self.now,
                        kind=pending.kind,
                        amount=pending.amount,
                        lot_id=pending.lot_id,
                        balance_after=running,
                        reference=pending.reference,
                        description=pending.description,
                    )
                )
            assert running == self.account.balance
        for lot_id, order_id in self._new_lots.items():
            self.repo.add_lot(self.org.id, self.lots[lot_id], order_id)
        self.repo.set_remaining_many(
            self.org.id,
            [
                (lot_id, self.lots[lot_id].remaining)
                for lot_id in self._changed_lots - self._new_lots.keys()
            ],
        )
        self.repo.add_entries(written)
        live = [lot.expires_at for lot in self.lots.values() if lot.remaining > 0]
        self.account = replace(self.account, next_expiry_at=min(live) if live else None)
        self.repo.save_account(self.account, self.now)
        self._entries.clear()
        self._new_lots.clear()
        self._changed_lots.clear()
        self._opening_balance = self.account.balance
        return written
