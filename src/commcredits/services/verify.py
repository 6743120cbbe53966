"""``commcredits ledger verify``: recompute every balance and lot from the ledger entries.

The account rows and lots are projections kept in step inside each transaction; this check
rebuilds them from the append-only entries and reports every disagreement. Tests run it after
every test that moves money.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from commcredits.domain.money import plain
from commcredits.store.credits import CreditRepository, InvoiceRepository, OrderRepository
from commcredits.store.database import Store

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Mismatch:
    org_id: str
    what: str

    def __str__(self) -> str:
        return f"{self.org_id}: {self.what}"


@dataclass(frozen=True, slots=True)
class OrgTotals:
    """Money in = money out + balance + forfeited, for one organization."""

    org_id: str
    credited: Decimal
    spent: Decimal
    forfeited: Decimal
    balance: Decimal


def verify_org(store: Store, org_id: str) -> tuple[list[Mismatch], OrgTotals]:
    problems: list[Mismatch] = []

    def problem(what: str) -> None:
        problems.append(Mismatch(org_id, what))

    with store.unit_of_work(read_only=True) as uow:
        repo = CreditRepository(uow.conn)
        account = repo.account(org_id)
        lots = {lot.id: lot for lot in repo.all_lots(org_id)}
        entries = repo.all_entries(org_id)
        orders = OrderRepository(uow.conn).all_for_org(org_id)
        invoices = {i.id: i for i in InvoiceRepository(uow.conn).for_org(org_id, limit=10**9)}
    if account is None:
        return problems, OrgTotals(org_id, ZERO, ZERO, ZERO, ZERO)

    running = ZERO
    per_lot: dict[str, Decimal] = {}
    credited = spent = forfeited = ZERO
    for expected_seq, entry in enumerate(entries, start=1):
        if entry.seq != expected_seq:
            problem(f"entry {entry.id} has sequence {entry.seq}, expected {expected_seq}")
        running += entry.amount
        if entry.balance_after != running:
            problem(
                f"entry {entry.id} says balance {plain(entry.balance_after)},"
                f" entries sum to {plain(running)}"
            )
        if running < 0:
            problem(f"balance negative ({plain(running)}) after entry {entry.id}")
        if entry.lot_id is None or entry.lot_id not in lots:
            problem(f"entry {entry.id} names no known lot ({entry.lot_id})")
            continue
        per_lot[entry.lot_id] = per_lot.get(entry.lot_id, ZERO) + entry.amount
        if entry.amount > 0:
            credited += entry.amount
        elif entry.kind == "expiry":
            forfeited -= entry.amount
        else:
            spent -= entry.amount

    for lot in lots.values():
        if not ZERO <= lot.remaining <= lot.amount:
            problem(f"lot {lot.id} has {plain(lot.remaining)} left of {plain(lot.amount)}")
        from_entries = per_lot.get(lot.id, ZERO)
        if from_entries != lot.remaining:
            problem(
                f"lot {lot.id} has {plain(lot.remaining)} left,"
                f" its entries sum to {plain(from_entries)}"
            )
    lot_total = sum((lot.remaining for lot in lots.values()), ZERO)
    if account.balance != running:
        problem(f"account balance {plain(account.balance)}, entries sum to {plain(running)}")
    if account.balance != lot_total:
        problem(f"account balance {plain(account.balance)}, lots hold {plain(lot_total)}")
    if not ZERO <= account.reserved <= account.balance:
        problem(f"reserved {plain(account.reserved)} outside 0..{plain(account.balance)}")
    if credited != spent + forfeited + account.balance:
        problem(
            f"in {plain(credited)} != out {plain(spent)} + forfeited {plain(forfeited)}"
            f" + balance {plain(account.balance)}"
        )

    for order in orders:
        if order.status == "paid":
            bought = lots.get(order.lot_id or "")
            if bought is None or bought.amount != order.amount or bought.source != order.kind:
                problem(f"paid order {order.id} has no matching lot")
            invoice = invoices.get(order.invoice_id or "")
            if invoice is None or invoice.amount != order.amount:
                problem(f"paid order {order.id} has no matching invoice")
        elif order.lot_id or order.invoice_id:
            problem(f"{order.status} order {order.id} has a lot or an invoice")
    paid_lots = {o.lot_id for o in orders if o.status == "paid"}
    for lot in lots.values():
        if lot.source in ("deposit", "recharge") and lot.id not in paid_lots:
            problem(f"{lot.source} lot {lot.id} has no paid order")

    return problems, OrgTotals(org_id, credited, spent, forfeited, account.balance)


def verify_ledger(
    store: Store, org_id: str | None = None
) -> tuple[list[Mismatch], list[OrgTotals]]:
    """Check one organization, or every organization with a credit account."""
    with store.unit_of_work(read_only=True) as uow:
        org_ids = [org_id] if org_id else CreditRepository(uow.conn).org_ids_with_accounts()
    problems: list[Mismatch] = []
    totals: list[OrgTotals] = []
    for one in org_ids:
        found, total = verify_org(store, one)
        problems += found
        totals.append(total)
    return problems, totals
