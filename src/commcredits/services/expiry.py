"""The expiry sweep (R-21): what is left in lots whose 12 months are over is forfeited, with an
``expiry`` ledger entry per lot, in a few set-based statements rather than lot by lot.

The result is the one :class:`~commcredits.services.account.AccountSession` gives when it
finds expired lots on opening: per organization, one entry per expired lot with money left,
oldest purchase first (R-22's order), numbered after the organization's last entry, with the
running balance; the lots emptied; the balance lowered, money reserved for running calls cut to
what is left, and the next expiry moved on. What follows money going out is then done per
organization, and only where it can do something (R-23, R-26): the balance-zero mail when the
sweep took a positive balance to zero, and the recharge an enabled auto-recharge may start.

Organizations are swept in groups (``orgs_per_transaction``), each group in one transaction, so
that live calls waiting on the database wait for one group, not for the whole sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from sqlalchemy import ColumnElement, and_, case, func, insert, literal, select, update

from commcredits.adapters.clock import Clock
from commcredits.domain.credits import CreditOrder
from commcredits.services import notices
from commcredits.services.account import AccountSession
from commcredits.services.credits import Credits
from commcredits.store.database import Store, UnitOfWork, retrying
from commcredits.store.tables import (
    LOT_HAS_MONEY,
    credit_accounts,
    ledger_entries,
    lots,
    organizations,
)
from commcredits.store.types import UTCDateTime

ORGS_PER_TRANSACTION: Final = 5_000


@dataclass(frozen=True, slots=True)
class _Swept:
    org_id: str
    balance_before: int
    forfeited: int
    zero_notified: bool
    recharge_enabled: bool

    @property
    def follow_up(self) -> bool:
        """Whether anything may follow the forfeit: a zero-balance mail or a recharge."""
        reached_zero = self.balance_before > 0 and self.balance_before == self.forfeited
        return self.recharge_enabled or (reached_zero and not self.zero_notified)


class LotExpiry:
    """Forfeits expired lots of every organization (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        credits: Credits,
        *,
        orgs_per_transaction: int = ORGS_PER_TRANSACTION,
    ):
        self.store = store
        self.clock = clock
        self.credits = credits
        self.orgs_per_transaction = orgs_per_transaction

    def sweep(self) -> int:
        """Forfeit every expired lot with money left; returns how many organizations had one."""
        now = self.clock.now()
        with self.store.unit_of_work(read_only=True) as uow:
            org_ids = [
                row[0]
                for row in uow.conn.execute(
                    select(lots.c.org_id).where(_expired(now)).distinct().order_by(lots.c.org_id)
                )
            ]
        orders: list[CreditOrder] = []
        step = self.orgs_per_transaction
        for first in range(0, len(org_ids), step):
            group = org_ids[first : first + step]
            orders += self._sweep(group[0], group[-1], now)
        for order in orders:
            self.credits.pay_if_started(order)
        return len(org_ids)

    @retrying()
    def _sweep(self, low: str, high: str, now: datetime) -> list[CreditOrder]:
        """Sweep the organizations whose ids lie from ``low`` to ``high``, in one transaction."""
        in_group = and_(lots.c.org_id >= low, lots.c.org_id <= high)
        with self.store.unit_of_work() as uow:
            if uow.dialect == "postgresql":
                # Money of an organization moves under its row's lock (see UnitOfWork.lock_org);
                # taken in id order, so two sweeps can never wait on each other crosswise.
                uow.conn.execute(
                    select(organizations.c.id)
                    .where(organizations.c.id >= low, organizations.c.id <= high)
                    .order_by(organizations.c.id)
                    .with_for_update()
                )
            swept = self._forfeit(uow, in_group, now)
            orders = [
                order
                for row in swept
                if row.follow_up and (order := self._follow_up(uow, row, now)) is not None
            ]
            uow.commit()
        return orders

    def _forfeit(
        self, uow: UnitOfWork, in_group: ColumnElement[bool], now: datetime
    ) -> list[_Swept]:
        conn = uow.conn
        expired = and_(in_group, _expired(now))
        is_expired = lots.c.expires_at <= now
        # Per organization of the group with an expired lot: what is forfeited, how many lots,
        # and the next expiry once they are gone, in one pass over the group's lots with money.
        summary = (
            select(
                lots.c.org_id,
                func.sum(case((is_expired, lots.c.remaining_micros), else_=0)).label("forfeited"),
                func.sum(case((is_expired, 1), else_=0)).label("count"),
                func.min(case((is_expired, None), else_=lots.c.expires_at)).label("next_expiry"),
            )
            .where(in_group, LOT_HAS_MONEY)
            .group_by(lots.c.org_id)
            .having(func.sum(case((is_expired, 1), else_=0)) > 0)
            .subquery()
        )
        swept = [
            _Swept(row.org_id, row.balance, row.forfeited, bool(row.zero), bool(row.recharge))
            for row in conn.execute(
                select(
                    credit_accounts.c.org_id,
                    credit_accounts.c.balance_micros.label("balance"),
                    summary.c.forfeited,
                    credit_accounts.c.zero_notified.label("zero"),
                    credit_accounts.c.recharge_enabled.label("recharge"),
                ).join(summary, summary.c.org_id == credit_accounts.c.org_id)
            )
        ]
        if not swept:
            return []
        # One entry per lot, oldest purchase first, numbered after the account's last entry.
        # An expiry entry's id carries its lot's: a lot is forfeited at most once. (purchased_at,
        # id) is unique, so a ROWS frame is the default RANGE frame, without its peer search.
        by_org = lots.c.org_id
        fifo = (lots.c.purchased_at, lots.c.id)
        entries = (
            select(
                lots.c.org_id,
                (
                    credit_accounts.c.entry_seq
                    + func.row_number().over(partition_by=by_org, order_by=fifo)
                ).label("seq"),
                literal("txn_").concat(func.substr(lots.c.id, 5)).label("id"),
                literal(now, UTCDateTime()).label("at"),
                literal("expiry").label("kind"),
                (-lots.c.remaining_micros).label("amount_micros"),
                lots.c.id.label("lot_id"),
                (
                    credit_accounts.c.balance_micros
                    - func.sum(lots.c.remaining_micros).over(
                        partition_by=by_org, order_by=fifo, rows=(None, 0)
                    )
                ).label("balance_after_micros"),
                lots.c.id.label("reference"),
                literal("lot expired").label("description"),
            )
            .join(credit_accounts, credit_accounts.c.org_id == lots.c.org_id)
            .where(expired)
        )
        conn.execute(
            insert(ledger_entries).from_select(
                [
                    "org_id",
                    "seq",
                    "id",
                    "at",
                    "kind",
                    "amount_micros",
                    "lot_id",
                    "balance_after_micros",
                    "reference",
                    "description",
                ],
                entries,
            )
        )
        left = credit_accounts.c.balance_micros - summary.c.forfeited
        conn.execute(
            update(credit_accounts)
            .where(credit_accounts.c.org_id == summary.c.org_id)
            .values(
                balance_micros=left,
                # Money reserved for calls in progress cannot outlive the lots it stood on.
                reserved_micros=case(
                    (credit_accounts.c.reserved_micros > left, left),
                    else_=credit_accounts.c.reserved_micros,
                ),
                entry_seq=credit_accounts.c.entry_seq + summary.c.count,
                next_expiry_at=summary.c.next_expiry,
                updated_at=now,
            )
        )
        conn.execute(update(lots).where(expired).values(remaining_micros=0))
        return swept

    def _follow_up(self, uow: UnitOfWork, swept: _Swept, now: datetime) -> CreditOrder | None:
        """What follows money going out (``Credits.after_debit``), for a balance the sweep took
        from ``swept.balance_before``: the zero-balance mail (R-26), a recharge (R-23)."""
        session = AccountSession(uow, swept.org_id, now)  # nothing left to sweep
        reached_zero = swept.balance_before > 0 and session.balance == 0
        if reached_zero and not session.account.zero_notified:
            notices.balance_zero(uow, session.org, now)
            session.account = replace(session.account, zero_notified=True)
        order = self.credits.maybe_start_recharge(uow, session)
        session.close()
        return order


def _expired(now: datetime) -> ColumnElement[bool]:
    """Lots expired at ``now`` with money left (R-21: from ``expires_at`` on)."""
    return and_(LOT_HAS_MONEY, lots.c.expires_at <= now)
