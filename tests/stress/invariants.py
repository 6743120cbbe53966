"""The money invariants, read straight from the database, cheap enough to run after every commit.

:class:`LedgerWatch` keeps, per organization, how far it has read the append-only ledger and the
running totals, so each check reads only the account rows, one aggregate over the lots, one
over the reservations of live calls, and the entries written since the last look:

* the balance is never negative and 0 <= reserved <= balance;
* the balance equals the sum of what the lots have left; no lot is negative or above its amount;
* entries are numbered 1, 2, 3, ... with no gap, and each ``balance_after`` is the previous one
  plus the entry's amount (every entry balanced);
* money in = money out + balance + forfeited (R-21: expired money is recorded, never dropped);
* the entries that charge one call (or message) are written together, once: a second group of
  usage entries for the same reference is a double charge;
* the money reserved on the account is never more than the live calls of the organization hold.

:func:`deep_check` is the slower whole-database pass (run every few hundred operations and at
the end): ``ledger verify``, every lot drawn on only before it expired (R-21), and every call's
recorded charge equal to the usage entries that name it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select, text

from commcredits.domain.money import from_micros
from commcredits.services.verify import verify_ledger
from commcredits.store import tables
from commcredits.store.database import Store
from commcredits.store.types import as_utc

ZERO = Decimal(0)

# Plain SQL, parsed once: these run after every commit, so they must cost little.
SIGNATURE = text(
    "SELECT (SELECT COALESCE(SUM(balance_micros), 0) FROM credit_accounts),"
    " (SELECT COALESCE(SUM(reserved_micros), 0) FROM credit_accounts),"
    " (SELECT COALESCE(SUM(entry_seq), 0) FROM credit_accounts),"
    " (SELECT COALESCE(SUM(remaining_micros), 0) FROM lots WHERE remaining_micros > 0),"
    " (SELECT COALESCE(SUM(reserved_micros), 0) FROM calls WHERE status = 'active')"
)
ACCOUNTS = text("SELECT org_id, balance_micros, reserved_micros, entry_seq FROM credit_accounts")
# Only the lots with money left (the partial index ``ix_lots_live_expires_at``): spent and
# expired lots pile up over a long run, and reading them all after every commit made the
# checks grow with the history. A lot cannot go negative or above its amount unseen: the
# schema's check constraint refuses it, and the whole-table pass reads every lot.
LOTS = text(
    "WITH live AS MATERIALIZED (SELECT org_id, remaining_micros, amount_micros FROM lots"
    " WHERE remaining_micros > 0)"
    " SELECT org_id, SUM(remaining_micros), MIN(remaining_micros),"
    " MAX(remaining_micros - amount_micros) FROM live GROUP BY org_id"
)
HELD = text(
    "SELECT org_id, SUM(reserved_micros) FROM calls WHERE status = 'active' GROUP BY org_id"
)
NEW_ENTRIES = text(
    "SELECT seq, kind, amount_micros, balance_after_micros, reference FROM ledger_entries"
    " WHERE org_id = :org_id AND seq > :seq ORDER BY seq"
)


@dataclass
class _OrgLedger:
    seq: int = 0
    balance: Decimal = ZERO
    credited: Decimal = ZERO
    spent: Decimal = ZERO
    forfeited: Decimal = ZERO
    # reference -> seq of the last usage entry naming it (charges of one call are contiguous)
    charged: dict[str, int] = field(default_factory=dict)


class LedgerWatch:
    """Incremental invariant checks over every organization with a credit account."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.orgs: dict[str, _OrgLedger] = {}
        self.signature: tuple[object, ...] | None = None

    def totals(self, org_id: str) -> _OrgLedger:
        return self.orgs.setdefault(org_id, _OrgLedger())

    def check(self) -> list[str]:
        """Every invariant of the module docstring; returns what is wrong (empty: all hold)."""
        problems: list[str] = []
        with self.store.unit_of_work(read_only=True) as uow:
            conn = uow.conn
            signature = tuple(conn.execute(SIGNATURE).one())
            if signature == self.signature:
                return []  # no money, lot, entry or reservation changed since the last look
            self.signature = signature
            accounts = conn.execute(ACCOUNTS).all()
            lots_by_org = {row[0]: tuple(row[1:]) for row in conn.execute(LOTS)}
            held = {row[0]: int(row[1] or 0) for row in conn.execute(HELD)}
            for org_id, balance, reserved, entry_seq in accounts:
                problems += self._check_account(
                    conn, org_id, balance, reserved, entry_seq, lots_by_org, held
                )
        return problems

    def _check_account(
        self,
        conn: object,
        org_id: str,
        balance: int,
        reserved: int,
        entry_seq: int,
        lots_by_org: dict[str, tuple[int | None, int | None, int | None]],
        held: dict[str, int],
    ) -> list[str]:
        problems: list[str] = []

        def problem(what: str) -> None:
            problems.append(f"{org_id}: {what}")

        if balance < 0:
            problem(f"balance negative: {from_micros(balance)}")
        if not 0 <= reserved <= balance:
            problem(f"reserved {from_micros(reserved)} outside 0..{from_micros(balance)}")
        if reserved > held.get(org_id, 0):
            problem(
                f"reserved {from_micros(reserved)} but live calls hold only"
                f" {from_micros(held.get(org_id, 0))}"
            )
        lot_sum, lot_min, lot_over = lots_by_org.get(org_id, (0, 0, 0))
        if int(lot_sum or 0) != balance:
            problem(
                f"balance {from_micros(balance)} but lots hold {from_micros(int(lot_sum or 0))}"
            )
        if lot_min is not None and lot_min < 0:
            problem(f"a lot is negative ({from_micros(lot_min)})")
        if lot_over is not None and lot_over > 0:
            problem("a lot has more left than it was bought with")
        state = self.totals(org_id)
        if entry_seq != state.seq:
            problems += self._read_entries(conn, org_id, state)
        if from_micros(balance) != state.balance:
            problem(f"account says {from_micros(balance)}, entries sum to {state.balance}")
        if state.credited != state.spent + state.forfeited + state.balance:
            problem(
                f"in {state.credited} != out {state.spent} + forfeited {state.forfeited}"
                f" + balance {state.balance}"
            )
        return problems

    def _read_entries(self, conn: object, org_id: str, state: _OrgLedger) -> list[str]:
        rows = conn.execute(  # type: ignore[attr-defined]
            NEW_ENTRIES, {"org_id": org_id, "seq": state.seq}
        ).all()
        problems: list[str] = []
        for seq, kind, amount_micros, after_micros, reference in rows:
            amount = from_micros(amount_micros)
            if seq != state.seq + 1:
                problems.append(f"{org_id}: entry {seq} follows {state.seq}")
            state.seq = seq
            state.balance += amount
            if from_micros(after_micros) != state.balance:
                problems.append(
                    f"{org_id}: entry {seq} says {from_micros(after_micros)},"
                    f" running balance {state.balance}"
                )
            if amount > 0:
                state.credited += amount
            elif kind == "expiry":
                state.forfeited -= amount
            else:
                state.spent -= amount
            if kind == "usage" and reference:
                last = state.charged.get(reference)
                if last is not None and last != seq - 1:
                    problems.append(f"{org_id}: {reference} charged again at entry {seq}")
                state.charged[reference] = seq
        return problems


def deep_check(store: Store, org_ids: Iterable[str] | None = None) -> list[str]:
    """``ledger verify`` plus the checks that read whole tables (see the module docstring)."""
    problems = [str(p) for p in verify_ledger(store)[0]]
    with store.unit_of_work(read_only=True) as uow:
        conn = uow.conn
        expiring = {
            (org, lot): as_utc(at)
            for org, lot, at in conn.execute(
                select(tables.lots.c.org_id, tables.lots.c.id, tables.lots.c.expires_at)
            )
        }
        usage: dict[tuple[str, str], Decimal] = {}
        e = tables.ledger_entries
        for org_id, seq, kind, at, amount, lot_id, reference in conn.execute(
            select(
                e.c.org_id, e.c.seq, e.c.kind, e.c.at, e.c.amount_micros, e.c.lot_id, e.c.reference
            )
        ):
            expires = expiring.get((org_id, lot_id))
            moment = as_utc(at)
            if amount < 0 and expires is not None and moment is not None:
                if kind == "expiry" and moment < expires:
                    problems.append(f"{org_id}: entry {seq} forfeits lot {lot_id} early")
                if kind != "expiry" and moment >= expires:
                    problems.append(f"{org_id}: entry {seq} draws on expired lot {lot_id}")
            if kind == "usage" and reference:
                key = (org_id, reference)
                usage[key] = usage.get(key, ZERO) - from_micros(amount)
        c = tables.calls
        for org_id, call_id, funding, charge in conn.execute(
            select(c.c.org_id, c.c.call_id, c.c.funding, c.c.charge_micros).where(
                c.c.status == "ended"
            )
        ):
            drawn = usage.pop((org_id, call_id), ZERO)
            expected = ZERO if funding == "overage" else from_micros(charge)
            if drawn != expected:
                problems.append(
                    f"{org_id}: call {call_id} records {from_micros(charge)} ({funding}),"
                    f" its usage entries draw {drawn}"
                )
        m = tables.sms_messages
        for org_id, sms_id, funding, charge in conn.execute(
            select(m.c.org_id, m.c.sms_id, m.c.funding, m.c.charge_micros)
        ):
            drawn = usage.pop((org_id, sms_id), ZERO)
            expected = from_micros(charge) if funding == "credits" else ZERO
            if drawn != expected:
                problems.append(
                    f"{org_id}: message {sms_id} records {from_micros(charge)} ({funding}),"
                    f" its usage entries draw {drawn}"
                )
        for (org_id, reference), drawn in usage.items():
            problems.append(f"{org_id}: usage entries for {reference} ({drawn}) name no call")
    wanted = set(org_ids) if org_ids is not None else None
    return [p for p in problems if wanted is None or p.split(":", 1)[0] in wanted]
