"""The demo's summary, read back from what the service reports, never counted on the side.

Calls and what credits paid come from the PSTN usage report (R-50), pool minutes from the
minute pools report (R-54), recharges from the orders, expiries from the ledger, mails from
the notifications, the balance from ``GET /credits``; the ledger check is ``ledger verify``'s.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from commcredits.demo.api import DemoApi
from commcredits.demo.scenario import month_starts

ZERO = Decimal(0)


@dataclass
class MonthFigures:
    month: str
    """``YYYY-MM``."""
    calls: int = 0
    call_minutes: int = 0
    pool_minutes: int = 0
    charged: Decimal = ZERO
    """What the month's calls drew from credits (capability MCOPSTNPP, R-50a)."""
    recharges: int = 0
    recharged: Decimal = ZERO
    recharges_declined: int = 0
    expiries: int = 0
    expired: Decimal = ZERO
    mails_sent: int = 0

    def add(self, other: MonthFigures) -> None:
        self.calls += other.calls
        self.call_minutes += other.call_minutes
        self.pool_minutes += other.pool_minutes
        self.charged += other.charged
        self.recharges += other.recharges
        self.recharged += other.recharged
        self.recharges_declined += other.recharges_declined
        self.expiries += other.expiries
        self.expired += other.expired
        self.mails_sent += other.mails_sent


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    """What ``commcredits ledger verify`` says about the organization."""

    problems: tuple[str, ...]
    credited: Decimal
    spent: Decimal
    forfeited: Decimal
    balance: Decimal

    @property
    def consistent(self) -> bool:
        return not self.problems


@dataclass
class DemoSummary:
    org_id: str
    currency: str
    months: list[MonthFigures]
    balance: Decimal
    auto_recharge_status: str
    mails_by_kind: dict[str, int]
    """Every mail sent since the sign-up, by kind (R-26)."""
    ledger: LedgerCheck | None = None
    total: MonthFigures = field(init=False)

    def __post_init__(self) -> None:
        self.total = MonthFigures("total")
        for month in self.months:
            self.total.add(month)


def read_summary(
    api: DemoApi,
    org_id: str,
    months: int,
    verify: Callable[[str], LedgerCheck] | None = None,
) -> DemoSummary:
    """Read the figures of each simulated month back from the service."""
    base = f"/v1/orgs/{org_id}"
    starts = month_starts(months)
    figures = {f"{start:%Y-%m}": MonthFigures(f"{start:%Y-%m}") for start in starts[:-1]}
    first, last = starts[0], starts[-1] - timedelta(days=1)

    def month_of(text: str) -> MonthFigures | None:
        return figures.get(text[:7])

    for row in _csv(api, f"{base}/reports/pstn", first, last):
        month = month_of(row["Start Time"])
        if month is None:
            continue
        month.calls += 1
        month.call_minutes += -(-int(row["Duration Seconds"]) // 60)
        if row["Capability"] == "MCOPSTNPP":
            month.charged += Decimal(row["Charge"])
    for row in _csv(api, f"{base}/reports/pools", first, last):
        month = month_of(row["Month"])
        if month is not None and row["Unit"] == "minutes":
            month.pool_minutes += int(row["Used"])
    for order in api.get(f"{base}/credits/orders", kind="recharge", limit=1000):
        month = month_of(order["created_at"])
        if month is None:
            continue
        if order["status"] == "paid":
            month.recharges += 1
            month.recharged += Decimal(order["amount"])
        elif order["status"] == "failed":
            month.recharges_declined += 1
    for entry in _ledger(api, base):
        month = month_of(entry["at"])
        if month is not None and entry["kind"] == "expiry":
            month.expiries += 1
            month.expired -= Decimal(entry["amount"])
    mails: dict[str, int] = {}
    for message in api.get(f"{base}/notifications", limit=1000):
        if message["status"] != "sent":
            continue
        mails[message["kind"]] = mails.get(message["kind"], 0) + 1
        month = month_of(message["created_at"])
        if month is not None:
            month.mails_sent += 1
    credits = api.get(f"{base}/credits")
    return DemoSummary(
        org_id=org_id,
        currency=credits["currency"],
        months=list(figures.values()),
        balance=Decimal(credits["balance"]),
        auto_recharge_status=credits["auto_recharge"]["status"],
        mails_by_kind=dict(sorted(mails.items())),
        ledger=verify(org_id) if verify else None,
    )


def _csv(api: DemoApi, path: str, first: date, last: date) -> list[dict[str, str]]:
    response = api.raw(
        "GET", path, params={"from": first.isoformat(), "to": last.isoformat(), "format": "csv"}
    )
    return list(csv.DictReader(io.StringIO(response.text)))


def _ledger(api: DemoApi, base: str) -> list[dict[str, str]]:
    """Every ledger entry, newest first, a page at a time."""
    entries: list[dict[str, str]] = []
    before: int | None = None
    while True:
        page = api.get(f"{base}/credits/transactions", limit=1000, before=before)
        entries += page
        if len(page) < 1000:
            return entries
        before = int(page[-1]["seq"])
