"""Charts for an organization's admins: daily spend by funding source, the credit balance over
time, minutes used per pool against its size, and the top destinations by charge.

Each chart is first plain data, read through its own SQLAlchemy Core queries and scoped by the
organization: exact ``Decimal`` amounts summed from micro-units, every day of the range present.
:meth:`Charts.render` then draws that data with matplotlib as PNG or SVG; amounts become floats
only at the plotting call.

Rendering is for a server: no pyplot (each chart is its own :class:`~matplotlib.figure.Figure`),
one render at a time (matplotlib is not thread-safe), a fixed size and a bundled font, and SVG
written with a fixed hash salt and no date so the same data always gives the same bytes.

Days are UTC days, as in the reports; the range is parsed by the reports' own
:func:`~commcredits.services.reports.parse_range`.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Final, Literal, cast

from sqlalchemy import ColumnElement, String, func, literal_column, select, type_coerce

from commcredits.adapters.clock import Clock
from commcredits.domain.countries import country_name
from commcredits.domain.errors import InvalidRequest, NotFound
from commcredits.domain.money import from_micros, minor_units, to_micros
from commcredits.domain.pools import month_of
from commcredits.domain.report_line import iso_time, money_text
from commcredits.services.calls import Calls
from commcredits.services.orgs import get_org
from commcredits.services.reports import DateRange, parse_range
from commcredits.store.database import Store
from commcredits.store.tables import calls, ledger_entries, sms_messages

ChartName = Literal["daily-spend", "balance", "pools", "top-destinations"]
ImageFormat = Literal["png", "svg"]

CHARTS: Final[tuple[str, ...]] = ("daily-spend", "balance", "pools", "top-destinations")
CONTENT_TYPES: Final[dict[str, str]] = {"png": "image/png", "svg": "image/svg+xml"}
FUNDING_SOURCES: Final[tuple[str, ...]] = ("credits", "overage", "pool", "included", "free")
"""The order of the funding sources in the data and, bottom to top, in the stacked bars."""
MARKED_KINDS: Final[tuple[str, ...]] = ("deposit", "recharge", "expiry")
"""Ledger entries marked on the balance chart."""
MAX_DESTINATIONS: Final = 50
_KIND_LABELS: Final[dict[str, str]] = {"international": "international", "dialout": "dial-out"}
"""How a pool's kind reads in its label; domestic and SMS pools need no word for it."""


def _money(amount: Decimal, currency: str) -> str:
    return money_text(to_micros(amount), currency)


def _each_day(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _day_of(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC day of a time column as ``YYYY-MM-DD`` text. Literals, not bound parameters:
    PostgreSQL only matches a GROUP BY expression to the SELECT one when they are identical."""
    if dialect == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), column)
        return func.to_char(utc, literal_column("'YYYY-MM-DD'"))
    # SQLite keeps naive UTC text: the day is its first ten characters.
    return func.substr(type_coerce(column, String), literal_column("1"), literal_column("10"))


def _range_json(date_range: DateRange) -> dict[str, Any]:
    return {
        "from": date_range.first_day.isoformat(),
        "to": date_range.last_day.isoformat(),
        "days": date_range.days,
        "time_zone": "UTC",
    }


# -- the data ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpendDay:
    day: date
    amounts: Mapping[str, Decimal]
    """By funding source; every source of the chart is present."""

    @property
    def total(self) -> Decimal:
        return sum(self.amounts.values(), Decimal(0))


@dataclass(frozen=True, slots=True)
class DailySpend:
    """What calls and messages cost each day, by how they were funded."""

    name: ClassVar[str] = "daily-spend"
    org_id: str
    currency: str
    range: DateRange
    sources: tuple[str, ...]
    days: tuple[SpendDay, ...]

    @property
    def title(self) -> str:
        return f"Daily spend by funding source, {_span(self.range)}"

    def as_json(self) -> dict[str, Any]:
        return {
            "chart": self.name,
            "title": self.title,
            "currency": self.currency,
            "range": _range_json(self.range),
            "sources": list(self.sources),
            "days": [
                {
                    "day": d.day.isoformat(),
                    "amounts": {s: _money(a, self.currency) for s, a in d.amounts.items()},
                    "total": _money(d.total, self.currency),
                }
                for d in self.days
            ],
        }


@dataclass(frozen=True, slots=True)
class BalancePoint:
    day: date
    balance: Decimal
    """After the day's last ledger entry (or carried over from before)."""


@dataclass(frozen=True, slots=True)
class BalanceEvent:
    kind: str
    """``deposit``, ``recharge`` or ``expiry``."""
    at: datetime
    amount: Decimal
    balance_after: Decimal


@dataclass(frozen=True, slots=True)
class BalanceHistory:
    """The credit balance at the end of each day, with deposits, recharges and expiries."""

    name: ClassVar[str] = "balance"
    org_id: str
    currency: str
    range: DateRange
    opening: Decimal
    """The balance when the range starts."""
    points: tuple[BalancePoint, ...]
    """One per day of the range up to today; none for days still to come."""
    events: tuple[BalanceEvent, ...]

    @property
    def title(self) -> str:
        return f"Credit balance, {_span(self.range)}"

    def as_json(self) -> dict[str, Any]:
        return {
            "chart": self.name,
            "title": self.title,
            "currency": self.currency,
            "range": _range_json(self.range),
            "opening": _money(self.opening, self.currency),
            "points": [
                {"day": p.day.isoformat(), "balance": _money(p.balance, self.currency)}
                for p in self.points
            ],
            "events": [
                {
                    "kind": e.kind,
                    "at": iso_time(e.at),
                    "amount": _money(e.amount, self.currency),
                    "balance_after": _money(e.balance_after, self.currency),
                }
                for e in self.events
            ],
        }


@dataclass(frozen=True, slots=True)
class PoolBar:
    label: str
    country: str | None
    capability: str
    kind: str
    user_id: str | None
    unit: str
    """``minutes``, or ``messages`` for the SMS pool."""
    size: int
    used: int


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """Each pool of one month: its size and what was used of it."""

    name: ClassVar[str] = "pools"
    org_id: str
    month: str
    pools: tuple[PoolBar, ...]

    @property
    def title(self) -> str:
        return f"Pool minutes used against pool size, {self.month}"

    def as_json(self) -> dict[str, Any]:
        return {
            "chart": self.name,
            "title": self.title,
            "month": self.month,
            "pools": [
                {
                    "label": p.label,
                    "country": p.country,
                    "capability": p.capability,
                    "kind": p.kind,
                    "user_id": p.user_id,
                    "unit": p.unit,
                    "size": p.size,
                    "used": p.used,
                }
                for p in self.pools
            ],
        }


@dataclass(frozen=True, slots=True)
class Destination:
    country: str
    country_name: str
    calls: int
    seconds: int
    charge: Decimal


@dataclass(frozen=True, slots=True)
class TopDestinations:
    """The countries called that cost the most, most first."""

    name: ClassVar[str] = "top-destinations"
    org_id: str
    currency: str
    range: DateRange
    limit: int
    destinations: tuple[Destination, ...]

    @property
    def title(self) -> str:
        return f"Top destinations by charge, {_span(self.range)}"

    def as_json(self) -> dict[str, Any]:
        return {
            "chart": self.name,
            "title": self.title,
            "currency": self.currency,
            "range": _range_json(self.range),
            "limit": self.limit,
            "destinations": [
                {
                    "country": d.country,
                    "country_name": d.country_name,
                    "calls": d.calls,
                    "seconds": d.seconds,
                    "charge": _money(d.charge, self.currency),
                }
                for d in self.destinations
            ],
        }


ChartData = DailySpend | BalanceHistory | PoolUsage | TopDestinations


def _span(date_range: DateRange) -> str:
    return f"{date_range.first_day.isoformat()} to {date_range.last_day.isoformat()} (UTC)"


# -- the use cases ----------------------------------------------------------------------------


class Charts:
    """The charts of one store."""

    def __init__(self, store: Store, clock: Clock, calls: Calls):
        self.store = store
        self.clock = clock
        self.calls = calls

    def date_range(
        self,
        *,
        days: int | None = None,
        from_: date | str | None = None,
        to: date | str | None = None,
    ) -> DateRange:
        """The last 7 or 28 UTC days (28 unless asked), or ``from``..``to``, as for reports."""
        return parse_range(self.clock.now().astimezone(UTC).date(), days=days, from_=from_, to=to)

    def chart(
        self,
        name: str,
        org_id: str,
        *,
        days: int | None = None,
        from_: str | None = None,
        to: str | None = None,
        month: str | None = None,
        limit: int = 10,
    ) -> ChartData:
        """One chart by its name, with what was asked checked first."""
        if name not in CHARTS:
            raise NotFound(f"the charts are {', '.join(CHARTS)}", code="chart_not_found")
        if name == "pools":
            if days is not None or from_ is not None or to is not None:
                raise InvalidRequest(
                    "the pools chart is of one month: ask with month=YYYY-MM",
                    code="invalid_value",
                    field="days" if days is not None else "from" if from_ is not None else "to",
                )
            return self.pools(org_id, month)
        if month is not None:
            raise InvalidRequest(
                "month is for the pools chart; ask with days or from/to",
                code="invalid_value",
                field="month",
            )
        date_range = self.date_range(days=days, from_=from_, to=to)
        if name == "daily-spend":
            return self.daily_spend(org_id, date_range)
        if name == "balance":
            return self.balance(org_id, date_range)
        return self.top_destinations(org_id, date_range, limit=limit)

    def daily_spend(self, org_id: str, date_range: DateRange) -> DailySpend:
        """The charges of ended calls and sent messages, per UTC day and funding source."""
        sums: dict[tuple[date, str], int] = {}
        with self.store.unit_of_work(read_only=True) as uow:
            org = get_org(uow, org_id)
            for table, at, done in (
                (calls, calls.c.start_time, calls.c.status == "ended"),
                (sms_messages, sms_messages.c.sent_at, sms_messages.c.decision == "allow"),
            ):
                day = _day_of(at, uow.dialect)
                query = (
                    select(day, table.c.funding, func.sum(table.c.charge_micros))
                    .where(
                        table.c.org_id == org.id,
                        done,
                        at >= date_range.start,
                        at < date_range.end,
                    )
                    .group_by(day, table.c.funding)
                )
                for text, funding, micros in uow.conn.execute(query):
                    key = (date.fromisoformat(text), funding or "unfunded")
                    sums[key] = sums.get(key, 0) + int(micros or 0)
        seen = {source for _, source in sums}
        sources = tuple(s for s in FUNDING_SOURCES if s in seen) + tuple(
            sorted(seen - set(FUNDING_SOURCES))
        )
        days = tuple(
            SpendDay(day, {s: from_micros(sums.get((day, s), 0)) for s in sources})
            for day in _each_day(date_range.first_day, date_range.last_day)
        )
        return DailySpend(org.id, org.currency, date_range, sources, days)

    def balance(self, org_id: str, date_range: DateRange) -> BalanceHistory:
        """The balance after each day's last ledger entry, and the entries worth marking."""
        e = ledger_entries.c
        today = self.clock.now().astimezone(UTC).date()
        with self.store.unit_of_work(read_only=True) as uow:
            org = get_org(uow, org_id)
            in_range = (e.org_id == org.id, e.at >= date_range.start, e.at < date_range.end)
            opening = uow.conn.execute(
                select(e.balance_after_micros)
                .where(e.org_id == org.id, e.at < date_range.start)
                .order_by(e.seq.desc())
                .limit(1)
            ).scalar_one_or_none()
            day = _day_of(e.at, uow.dialect)
            last_of_day = (
                select(day.label("day"), func.max(e.seq).label("seq"))
                .where(*in_range)
                .group_by(day)
                .subquery()
            )
            closing = {
                date.fromisoformat(text): int(micros)
                for text, micros in uow.conn.execute(
                    select(last_of_day.c.day, e.balance_after_micros).join(
                        last_of_day, (e.org_id == org.id) & (e.seq == last_of_day.c.seq)
                    )
                )
            }
            marked = uow.conn.execute(
                select(e.kind, e.at, e.amount_micros, e.balance_after_micros)
                .where(*in_range, e.kind.in_(MARKED_KINDS))
                .order_by(e.seq)
            ).all()
        points = []
        micros = int(opening or 0)
        for each in _each_day(date_range.first_day, min(date_range.last_day, today)):
            micros = closing.get(each, micros)
            points.append(BalancePoint(each, from_micros(micros)))
        events = tuple(
            BalanceEvent(kind, at, from_micros(amount), from_micros(after))
            for kind, at, amount, after in marked
        )
        return BalanceHistory(
            org.id,
            org.currency,
            date_range,
            from_micros(int(opening or 0)),
            tuple(points),
            events,
        )

    def pools(self, org_id: str, month: str | None = None) -> PoolUsage:
        """Each pool of the month (this month unless asked): its size and the minutes (messages
        for the SMS pool) used."""
        month = month if month is not None else month_of(self.clock.now())
        bars = []
        for key, size, used in self.calls.pools(org_id, month):
            parts = [key.country or "Org", key.capability]
            if key.kind in _KIND_LABELS:
                parts.append(_KIND_LABELS[key.kind])
            if key.user_id:
                parts.append(f"user {key.user_id}")
            bars.append(
                PoolBar(
                    label=" ".join(parts),
                    country=key.country,
                    capability=key.capability,
                    kind=key.kind,
                    user_id=key.user_id,
                    unit="messages" if key.kind == "sms" else "minutes",
                    size=size,
                    used=used,
                )
            )
        return PoolUsage(org_id, month, tuple(bars))

    def top_destinations(
        self, org_id: str, date_range: DateRange, limit: int = 10
    ) -> TopDestinations:
        """The countries of ended calls with a charge, by total charge, most first (ties by
        country code)."""
        if not 1 <= limit <= MAX_DESTINATIONS:
            raise InvalidRequest(
                f"limit is 1 to {MAX_DESTINATIONS}", code="invalid_value", field="limit"
            )
        c = calls.c
        charge = func.sum(c.charge_micros)
        with self.store.unit_of_work(read_only=True) as uow:
            org = get_org(uow, org_id)
            rows = uow.conn.execute(
                select(
                    c.external_country,
                    func.count(),
                    func.coalesce(func.sum(c.duration_seconds), 0),
                    charge,
                )
                .where(
                    c.org_id == org.id,
                    c.status == "ended",
                    c.external_country.is_not(None),
                    c.start_time >= date_range.start,
                    c.start_time < date_range.end,
                )
                .group_by(c.external_country)
                .having(charge > 0)
                .order_by(charge.desc(), c.external_country)
                .limit(limit)
            ).all()
        destinations = tuple(
            Destination(
                country, country_name(country), int(count), int(seconds), from_micros(int(micros))
            )
            for country, count, seconds, micros in rows
        )
        return TopDestinations(org.id, org.currency, date_range, limit, destinations)

    def render(self, data: ChartData, format: str) -> bytes:
        """The chart as PNG or SVG bytes; the same data gives the same bytes."""
        return render(data, format)


# -- drawing ----------------------------------------------------------------------------------

_RENDER_LOCK: Final = threading.Lock()
"""matplotlib is not thread-safe: one chart is drawn at a time in the process."""

_STYLE: Final[dict[str, Any]] = {
    # DejaVu Sans ships with matplotlib, so every server has it.
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    # Text stays text (searchable, readable by screen readers); ids come from a fixed salt
    # instead of random ones, so the SVG is the same bytes each time.
    "svg.fonttype": "none",
    "svg.hashsalt": "commcredits-charts",
}
_SIZE: Final = (8.0, 4.5)
_DPI: Final = 100
_COLOURS: Final[dict[str, str]] = {
    "credits": "#1f77b4",
    "overage": "#d62728",
    "pool": "#2ca02c",
    "included": "#9467bd",
    "free": "#7f7f7f",
    "unfunded": "#8c564b",
}
_MARKERS: Final[dict[str, tuple[str, str, str]]] = {
    "deposit": ("s", "#1f77b4", "Deposit"),
    "recharge": ("^", "#2ca02c", "Recharge"),
    "expiry": ("v", "#d62728", "Expiry"),
}


def render(data: ChartData, format: str) -> bytes:
    """Draw ``data`` as ``png`` or ``svg``: a fixed size, a bundled font, titles, labelled
    axes (money in the organization's currency), UTC dates along the x axis and a legend."""
    if format not in CONTENT_TYPES:
        raise InvalidRequest("format is png or svg", code="invalid_value", field="format")
    import matplotlib

    with _RENDER_LOCK, matplotlib.rc_context(cast(Any, _STYLE)):
        from matplotlib.figure import Figure

        figure = Figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
        axes = figure.add_subplot()
        if isinstance(data, DailySpend):
            _draw_daily_spend(axes, data)
        elif isinstance(data, BalanceHistory):
            _draw_balance(axes, data)
        elif isinstance(data, PoolUsage):
            _draw_pools(axes, data)
        else:
            _draw_destinations(axes, data)
        axes.set_title(data.title)
        buffer = io.BytesIO()
        metadata: dict[str, Any] = (
            {"Title": data.title, "Creator": "commcredits", "Date": None}
            if format == "svg"
            else {"Title": data.title, "Software": "commcredits"}
        )
        figure.savefig(buffer, format=format, dpi=_DPI, metadata=metadata)
    return buffer.getvalue()


def _money_axis(axis: Any, currency: str) -> None:
    from matplotlib.ticker import StrMethodFormatter

    axis.set_major_formatter(StrMethodFormatter(f"{{x:,.{minor_units(currency)}f}}"))


def _date_axis(axes: Any) -> None:
    import matplotlib.dates

    # Untyped in some matplotlib releases: called through Any.
    dates: Any = matplotlib.dates
    locator = dates.AutoDateLocator(minticks=3, maxticks=10)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))
    axes.set_xlabel("Day (UTC)")


def _legend(axes: Any, title: str | None = None) -> None:
    """Outside the plot, on the right, where it never hides a bar or a marker."""
    axes.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _nothing(axes: Any, text: str) -> None:
    axes.text(0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center", color="#555")


def _draw_daily_spend(axes: Any, data: DailySpend) -> None:
    days = [d.day for d in data.days]
    bottom = [0.0] * len(days)
    drawn = False
    for source in data.sources:
        # Only the drawing sees floats (pixels); the data stays exact Decimal.
        values = [float(d.amounts[source]) for d in data.days]
        if not any(values):
            continue  # pool, included and free minutes cost nothing: no empty layers
        axes.bar(
            days,
            values,
            width=0.8,
            bottom=bottom,
            label=source.title(),
            color=_COLOURS.get(source, "#17becf"),
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        drawn = True
    if not drawn:
        _nothing(axes, "No spend in this range")
        axes.bar(days, [0.0] * len(days), width=0.8, label="No spend")
    axes.set_ylabel(f"Spend ({data.currency})")
    axes.set_ylim(bottom=0)
    _money_axis(axes.yaxis, data.currency)
    _date_axis(axes)
    _legend(axes, title="Funded by")


def _draw_balance(axes: Any, data: BalanceHistory) -> None:
    days = [p.day for p in data.points]
    values = [float(p.balance) for p in data.points]
    axes.plot(days, values, marker="o", markersize=3, color="#1f77b4", label="Balance, end of day")
    axes.fill_between(days, values, alpha=0.12, color="#1f77b4")
    for kind, (marker, colour, label) in _MARKERS.items():
        events = [e for e in data.events if e.kind == kind]
        if events:
            axes.scatter(
                [e.at.date() for e in events],
                [float(e.balance_after) for e in events],
                marker=marker,
                s=60,
                color=colour,
                edgecolors="black",
                linewidths=0.5,
                zorder=3,
                label=label,
            )
    if not days:
        _nothing(axes, "No balance to show for this range yet")
    axes.set_ylabel(f"Balance ({data.currency})")
    axes.set_ylim(bottom=0)
    _money_axis(axes.yaxis, data.currency)
    _date_axis(axes)
    start = datetime.combine(data.range.first_day, datetime.min.time())
    end = datetime.combine(data.range.last_day, datetime.min.time())
    axes.set_xlim(start - timedelta(hours=12), end + timedelta(hours=12))
    _legend(axes)


def _draw_pools(axes: Any, data: PoolUsage) -> None:
    labels = [p.label for p in data.pools]
    sizes = [p.size for p in data.pools]
    used = [p.used for p in data.pools]
    if data.pools:
        axes.barh(labels, sizes, height=0.7, color="#c7d7e8", label="Pool size")
        colours = ["#d62728" if u > s else "#1f77b4" for u, s in zip(used, sizes, strict=True)]
        axes.barh(labels, used, height=0.4, color=colours, label="Used")
        axes.invert_yaxis()
        for index, pool in enumerate(data.pools):
            axes.annotate(
                f" {pool.used} of {pool.size} {pool.unit}",
                (max(pool.used, pool.size), index),
                va="center",
                fontsize=8,
            )
        axes.set_xlim(right=max(max(sizes), max(used), 1) * 1.3)
    else:
        _nothing(axes, "No pools this month")
        axes.barh([], [], label="Used")
    axes.set_xlabel("Minutes (the SMS pool in messages)")
    axes.set_ylabel("Pool")
    axes.grid(axis="y", visible=False)
    _legend(axes)


def _draw_destinations(axes: Any, data: TopDestinations) -> None:
    names = [f"{d.country_name} ({d.country})" for d in data.destinations]
    charges = [float(d.charge) for d in data.destinations]
    if data.destinations:
        axes.barh(names, charges, height=0.6, color="#ff7f0e", label=f"Charge ({data.currency})")
        axes.invert_yaxis()
        for index, destination in enumerate(data.destinations):
            axes.annotate(
                f" {_money(destination.charge, data.currency)}, {destination.calls} calls",
                (charges[index], index),
                va="center",
                fontsize=8,
            )
        axes.set_xlim(right=max(charges) * 1.35)
    else:
        _nothing(axes, "No charged calls in this range")
        axes.barh([], [], label=f"Charge ({data.currency})")
    axes.set_xlabel(f"Charge ({data.currency})")
    axes.set_ylabel("Destination")
    _money_axis(axes.xaxis, data.currency)
    axes.grid(axis="y", visible=False)
    _legend(axes)
