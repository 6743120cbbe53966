"""Postpaid overage (R-04): usage nothing else paid for is billed after the month ends, on one
``overage`` invoice per organization and month, with a line per capability and country."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select, update

from commcredits.adapters.clock import Clock
from commcredits.domain.credits import Invoice
from commcredits.domain.ids import new_id
from commcredits.domain.money import Money, from_micros
from commcredits.domain.pools import month_of
from commcredits.services.orgs import locked_org
from commcredits.store import tables
from commcredits.store.credits import InvoiceRepository
from commcredits.store.database import Store, retrying
from commcredits.store.types import as_utc


def _next_month_start(at: datetime) -> datetime:
    first = at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )


def _unbilled_calls() -> Any:
    c = tables.calls.c
    # ``status || ''``: the status index holds every call and would win SQLite's plan; the
    # partial index over unbilled overage is the one to use.
    return and_(tables.CALL_OVERAGE_UNBILLED, c.charge_micros > 0, c.status.concat("") == "ended")


def _unbilled_sms() -> Any:
    m = tables.sms_messages.c
    return and_(tables.SMS_OVERAGE_UNBILLED, m.charge_micros > 0)


class OverageInvoicing:
    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock

    def next_due(self) -> datetime | None:
        """The start of the month after the oldest usage not yet invoiced."""
        with self.store.unit_of_work(read_only=True) as uow:
            oldest = [
                as_utc(
                    uow.conn.execute(
                        select(func.min(tables.calls.c.start_time)).where(_unbilled_calls())
                    ).scalar_one_or_none()
                ),
                as_utc(
                    uow.conn.execute(
                        select(func.min(tables.sms_messages.c.sent_at)).where(_unbilled_sms())
                    ).scalar_one_or_none()
                ),
            ]
        found = [t for t in oldest if t is not None]
        return _next_month_start(min(found)) if found else None

    def run(self) -> int:
        """Invoice every finished month's overage; returns the invoices written."""
        now = self.clock.now()
        this_month = month_of(now)
        with self.store.unit_of_work(read_only=True) as uow:
            rows: list[tuple[str, datetime]] = [
                (row[0], row[1])
                for row in uow.conn.execute(
                    select(tables.calls.c.org_id, tables.calls.c.start_time).where(
                        _unbilled_calls()
                    )
                )
            ]
            rows += [
                (row[0], row[1])
                for row in uow.conn.execute(
                    select(tables.sms_messages.c.org_id, tables.sms_messages.c.sent_at).where(
                        _unbilled_sms()
                    )
                )
            ]
        due = sorted({(org, month_of(as_utc(at) or now)) for org, at in rows})
        written = 0
        for org_id, month in due:
            if month < this_month and self._invoice(org_id, month, now):
                written += 1
        return written

    @retrying()
    def _invoice(self, org_id: str, month: str, now: datetime) -> bool:
        start = datetime.strptime(month + "-01", "%Y-%m-%d").replace(tzinfo=UTC)
        end = _next_month_start(start)
        c, m = tables.calls.c, tables.sms_messages.c
        with self.store.unit_of_work() as uow:
            org = locked_org(uow, org_id)
            in_month_calls = and_(
                c.org_id == org_id, c.start_time >= start, c.start_time < end, _unbilled_calls()
            )
            in_month_sms = and_(
                m.org_id == org_id, m.sent_at >= start, m.sent_at < end, _unbilled_sms()
            )
            lines: dict[tuple[str, str], dict[str, Any]] = defaultdict(
                lambda: {"count": 0, "seconds": 0, "micros": 0}
            )
            for row in uow.conn.execute(
                select(c.capability, c.external_country, c.duration_seconds, c.charge_micros).where(
                    in_month_calls
                )
            ):
                line = lines[(row.capability or "MCOPSTNPP", row.external_country or "ZZ")]
                line["count"] += 1
                line["seconds"] += row.duration_seconds or 0
                line["micros"] += row.charge_micros
            for sms in uow.conn.execute(
                select(m.capability, m.to_country, m.charge_micros).where(in_month_sms)
            ):
                line = lines[(f"{sms.capability or 'MCOPSTNPP'} SMS", sms.to_country or "ZZ")]
                line["count"] += 1
                line["micros"] += sms.charge_micros
            if not lines:
                return False
            total = sum((from_micros(v["micros"]) for v in lines.values()), Decimal(0))
            # Usage that reaches us after its month was invoiced (a CDR sent late, a call that
            # ran past midnight) goes on a supplementary invoice: OV-<month>-2, -3, ...
            earlier = uow.conn.execute(
                select(func.count())
                .select_from(tables.invoices)
                .where(
                    tables.invoices.c.org_id == org_id,
                    tables.invoices.c.kind == "overage",
                    tables.invoices.c.number.like(f"OV-{month}%"),
                )
            ).scalar_one()
            invoice = Invoice(
                org_id=org_id,
                id=new_id("inv"),
                number=f"OV-{month}" if earlier == 0 else f"OV-{month}-{earlier + 1}",
                kind="overage",
                order_id=None,
                issued_at=now,
                amount=total,
                currency=org.currency,
                payment_method=None,
                purchase_order=None,
                status="due",
                lines=[
                    {
                        "description": f"{capability} usage, {country}, {month}",
                        "capability": capability,
                        "country": country,
                        "quantity": v["count"],
                        "minutes": -(-v["seconds"] // 60),
                        "amount": Money(from_micros(v["micros"]), org.currency).format(),
                    }
                    for (capability, country), v in sorted(lines.items())
                ],
            )
            InvoiceRepository(uow.conn).add(invoice)
            uow.conn.execute(
                update(tables.calls).where(in_month_calls).values(invoice_id=invoice.id)
            )
            uow.conn.execute(
                update(tables.sms_messages).where(in_month_sms).values(invoice_id=invoice.id)
            )
            uow.commit()
        return True
