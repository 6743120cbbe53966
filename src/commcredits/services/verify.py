"""``commcredits ledger verify``: recompute every balance and lot from the ledger entries.

The account rows and lots are projections kept in step inside each transaction; this check
rebuilds them from the append-only entries and reports every disagreement. Tests run it after
every test that moves money.

It reads each table once, in organization order (one ordered scan per table, never a query per
organization), and works in integer micro-units, so an operator with a hundred thousand
organizations and millions of entries checks them all in seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, select

from commcredits.domain.money import from_micros, plain
from commcredits.store.database import Store
from commcredits.store.tables import credit_accounts, credit_orders, invoices, ledger_entries, lots

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


def _money(micros: int) -> str:
    return plain(from_micros(micros))


class _Rows:
    """One table's rows in organization order, handed out an organization at a time."""

    def __init__(self, rows: Iterable[Sequence[Any]]) -> None:
        self._rows: Iterator[Sequence[Any]] = iter(rows)
        self._head: Sequence[Any] | None = next(self._rows, None)

    def take(self, org_id: str) -> list[Sequence[Any]]:
        """The rows of ``org_id``; rows of organizations before it (none with an account, so
        none checked) are passed over."""
        taken: list[Sequence[Any]] = []
        while self._head is not None and self._head[0] < org_id:
            self._head = next(self._rows, None)
        while self._head is not None and self._head[0] == org_id:
            taken.append(self._head)
            self._head = next(self._rows, None)
        return taken

    def groups(self) -> Iterator[list[Sequence[Any]]]:
        """Every organization's rows, one list per organization."""
        while self._head is not None:
            yield self.take(self._head[0])


def _ordered(
    conn: Connection, query: Select[Any], org_column: Any, org_id: str | None, *then: Any
) -> _Rows:
    """``query`` for one organization or all of them, ordered by organization id in code point
    order (what Python's ``<`` compares; PostgreSQL's default collation may order otherwise),
    streamed rather than loaded."""
    key: ColumnElement[Any] = org_column
    if conn.dialect.name == "postgresql":
        key = org_column.collate("C")
    if org_id is not None:
        query = query.where(org_column == org_id)
    result = conn.execution_options(stream_results=True, yield_per=10_000).execute(
        query.order_by(key, *then)
    )
    return _Rows(result)


def verify_ledger(
    store: Store, org_id: str | None = None
) -> tuple[list[Mismatch], list[OrgTotals]]:
    """Check one organization, or every organization with a credit account."""
    problems: list[Mismatch] = []
    totals: list[OrgTotals] = []
    a, lo, e, o, i = credit_accounts.c, lots.c, ledger_entries.c, credit_orders.c, invoices.c
    with store.unit_of_work(read_only=True) as uow:
        conn = uow.conn
        accounts = _ordered(
            conn, select(a.org_id, a.balance_micros, a.reserved_micros), a.org_id, org_id
        )
        all_lots = _ordered(
            conn,
            select(lo.org_id, lo.id, lo.source, lo.amount_micros, lo.remaining_micros),
            lo.org_id,
            org_id,
        )
        entries = _ordered(
            conn,
            select(
                e.org_id, e.seq, e.id, e.kind, e.amount_micros, e.balance_after_micros, e.lot_id
            ),
            e.org_id,
            org_id,
            e.seq,
        )
        orders = _ordered(
            conn,
            select(o.org_id, o.id, o.status, o.kind, o.amount_micros, o.lot_id, o.invoice_id),
            o.org_id,
            org_id,
        )
        bills = _ordered(conn, select(i.org_id, i.id, i.amount_micros), i.org_id, org_id)
        for [account] in accounts.groups():
            one = account[0]
            found, total = _check(
                account, all_lots.take(one), entries.take(one), orders.take(one), bills.take(one)
            )
            problems += found
            totals.append(total)
    if org_id is not None and not totals:  # no credit account: nothing to check, nothing held
        totals.append(OrgTotals(org_id, ZERO, ZERO, ZERO, ZERO))
    return problems, totals


def _check(
    account: Sequence[Any],
    lot_rows: list[Sequence[Any]],
    entry_rows: list[Sequence[Any]],
    order_rows: list[Sequence[Any]],
    invoice_rows: list[Sequence[Any]],
) -> tuple[list[Mismatch], OrgTotals]:
    org_id, balance, reserved = account[0], int(account[1]), int(account[2])
    problems: list[Mismatch] = []

    def problem(what: str) -> None:
        problems.append(Mismatch(org_id, what))

    # lot id -> (source, amount, remaining)
    lot_by_id = {row[1]: (row[2], int(row[3]), int(row[4])) for row in lot_rows}
    running = 0
    per_lot: dict[str, int] = {}
    credited = spent = forfeited = 0
    for expected_seq, (_, seq, entry_id, kind, amount, after, lot_id) in enumerate(
        entry_rows, start=1
    ):
        if seq != expected_seq:
            problem(f"entry {entry_id} has sequence {seq}, expected {expected_seq}")
        running += amount
        if after != running:
            problem(
                f"entry {entry_id} says balance {_money(after)}, entries sum to {_money(running)}"
            )
        if running < 0:
            problem(f"balance negative ({_money(running)}) after entry {entry_id}")
        if lot_id is None or lot_id not in lot_by_id:
            problem(f"entry {entry_id} names no known lot ({lot_id})")
            continue
        per_lot[lot_id] = per_lot.get(lot_id, 0) + amount
        if amount > 0:
            credited += amount
        elif kind == "expiry":
            forfeited -= amount
        else:
            spent -= amount

    lot_total = 0
    for lot_id, (_, amount, remaining) in lot_by_id.items():
        lot_total += remaining
        if not 0 <= remaining <= amount:
            problem(f"lot {lot_id} has {_money(remaining)} left of {_money(amount)}")
        from_entries = per_lot.get(lot_id, 0)
        if from_entries != remaining:
            problem(
                f"lot {lot_id} has {_money(remaining)} left,"
                f" its entries sum to {_money(from_entries)}"
            )
    if balance != running:
        problem(f"account balance {_money(balance)}, entries sum to {_money(running)}")
    if balance != lot_total:
        problem(f"account balance {_money(balance)}, lots hold {_money(lot_total)}")
    if not 0 <= reserved <= balance:
        problem(f"reserved {_money(reserved)} outside 0..{_money(balance)}")
    if credited != spent + forfeited + balance:
        problem(
            f"in {_money(credited)} != out {_money(spent)} + forfeited {_money(forfeited)}"
            f" + balance {_money(balance)}"
        )

    invoice_amounts = {row[1]: int(row[2]) for row in invoice_rows}
    paid_lots: set[str] = set()
    for _, order_id, status, kind, amount, lot_id, invoice_id in order_rows:
        if status == "paid":
            paid_lots.add(lot_id or "")
            bought = lot_by_id.get(lot_id or "")
            if bought is None or bought[1] != amount or bought[0] != kind:
                problem(f"paid order {order_id} has no matching lot")
            if invoice_amounts.get(invoice_id or "") != amount:
                problem(f"paid order {order_id} has no matching invoice")
        elif lot_id or invoice_id:
            problem(f"{status} order {order_id} has a lot or an invoice")
    for lot_id, (source, _, _) in lot_by_id.items():
        if source in ("deposit", "recharge") and lot_id not in paid_lots:
            problem(f"{source} lot {lot_id} has no paid order")

    return problems, OrgTotals(
        org_id,
        from_micros(credited),
        from_micros(spent),
        from_micros(forfeited),
        from_micros(balance),
    )
