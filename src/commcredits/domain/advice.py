"""Funding advice (R-55): how much to deposit, when to recharge and by how much, from usage.

Everything here is pure: it is handed a daily spend series, the lots and the moment it reasons
about. The method, with its reasoning (docs/advice.md has a worked example):

* **The basis.** Spend per UTC day over the last :data:`BASIS_MAX_DAYS` complete days, starting
  no earlier than the first day with usage (a new organization is advised from what it has; a
  basis under :data:`BASIS_MIN_DAYS` is flagged as short). Days without usage inside the basis
  count as zero: a quiet Sunday is part of the pattern. Today is left out because it is not
  over; only an organization whose first usage is today is advised from today alone.
* **Percentiles** by the nearest-rank method: the p-th percentile of n values is the
  ``ceil(p/100 * n)``-th smallest. It is always a day that happened, exact in Decimal, and
  never interpolates a spend nobody saw.
* **The pace** is the mean daily spend. Spend adds up over days, and the sum of n days is
  n times the mean, not n times the median (a week of five busy days and a quiet weekend has a
  median of a busy day but spends five of them).
* **Trigger** = p95 x :data:`RESPONSE_DAYS`: when a recharge fails, the balance left at the
  trigger must carry the organization through bad days while it is noticed and fixed. Declined
  recharges are retried after 1 h, 6 h and 24 h, each failure mailed; three days also cover a
  failure on Friday evening fixed on Monday morning. p95 rather than the mean because those
  days are exactly the ones a shortfall would hurt. Never below :data:`MIN_TRIGGER`.
* **Recharge** = mean x :data:`RECHARGE_DAYS`: about two weeks of typical spend, so a card is
  charged about twice a month (fewer, larger charges than daily top-ups; far less than the
  12 months a lot lives, so nothing expires). Never below ``MIN_RECHARGE_AMOUNT``.
* **Deposit** = trigger + recharge: the first recharge then comes after about two weeks, with
  the full safety margin still in place. Never below the minimum deposit.
* Amounts are rounded *up* to the currency's minor unit: advice errs on the side of enough.
* **The runway** (:func:`project_balance`) spends the pace day by day from the lots, oldest
  first as the ledger does (R-22), and forfeits what a lot still holds when it expires (R-21).
  A lot still valid at the start of a day pays for that day. The balance runs out when the
  lots can no longer pay, by spending or by expiry; ``days_until_empty`` is the whole days from
  now until then.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Final

from commcredits.domain.ledger import Lot, allocate_fifo, apply_allocations
from commcredits.domain.money import quantize
from commcredits.domain.pools import PoolKey
from commcredits.domain.recharge import MIN_RECHARGE_AMOUNT

BASIS_MIN_DAYS: Final = 30
"""Fewer days of usage than this still give advice, flagged ``short_basis``."""
BASIS_MAX_DAYS: Final = 90
"""Older usage is left out: the pattern of the last quarter is the one that goes on."""
RESPONSE_DAYS: Final = 3
"""Days a failed recharge may take to be noticed and fixed (retries span about 31 hours)."""
RECHARGE_DAYS: Final = 14
"""A recharge buys about two weeks of typical spend."""
MIN_TRIGGER: Final = MIN_RECHARGE_AMOUNT
"""Our choice: a trigger below the smallest recharge leaves next to nothing in reserve."""
FORECAST_WARNING_DAYS: Final = 7
"""R-26 (our addition): the forecast mail goes out when the runway is shorter than this."""

_ZERO: Final = Decimal(0)
_DAY: Final = timedelta(days=1)


def percentile(values: Sequence[Decimal], percent: int) -> Decimal:
    """The nearest-rank ``percent``-th percentile of ``values`` (1 <= percent <= 100).

    The ``ceil(percent/100 * n)``-th smallest value: p50 of 1..10 is 5, p95 of 1..20 is 19.
    """
    if not values:
        raise ValueError("a percentile needs at least one value")
    if not 1 <= percent <= 100:
        raise ValueError(f"percent is 1 to 100, got {percent}")
    ordered = sorted(values)
    rank = -(-percent * len(ordered) // 100)
    return ordered[rank - 1]


def mean(values: Sequence[Decimal]) -> Decimal:
    """The arithmetic mean (Decimal division; exact whenever the quotient is)."""
    if not values:
        raise ValueError("a mean needs at least one value")
    return sum(values, _ZERO) / len(values)


def basis_window(end: date, first_day: date | None) -> tuple[date, date]:
    """The days ``[start, end)`` advice is computed from: at most :data:`BASIS_MAX_DAYS`
    before ``end``, none before ``first_day``; ``end`` alone when that leaves nothing (the
    first usage is today, or there is none)."""
    if first_day is None:
        return end, end + timedelta(days=1)
    start = max(end - timedelta(days=BASIS_MAX_DAYS), first_day)
    if start >= end:
        return end, end + timedelta(days=1)
    return start, end


def daily_series(spend: Mapping[date, Decimal], start: date, end: date) -> list[Decimal]:
    """Spend of each day in ``[start, end)``, a day without usage counting zero."""
    days = (end - start).days
    return [spend.get(start + timedelta(days=i), _ZERO) for i in range(days)]


@dataclass(frozen=True, slots=True)
class Recommendation:
    deposit: Decimal
    trigger: Decimal
    recharge: Decimal


def recommend(
    p95: Decimal, pace: Decimal, currency: str, *, minimum_deposit: Decimal
) -> Recommendation:
    """Trigger, recharge and deposit from the p95 and mean daily spend (module docstring)."""

    def up(amount: Decimal) -> Decimal:
        return quantize(amount, currency, ROUND_CEILING)

    trigger = max(up(p95 * RESPONSE_DAYS), MIN_TRIGGER)
    recharge = max(up(pace * RECHARGE_DAYS), MIN_RECHARGE_AMOUNT)
    deposit = max(trigger + recharge, minimum_deposit)
    return Recommendation(deposit=deposit, trigger=trigger, recharge=recharge)


@dataclass(frozen=True, slots=True)
class ExpiringLot:
    """A lot that will still hold money when it expires, at the current pace."""

    lot_id: str
    expires_at: datetime
    remaining: Decimal
    """What the lot holds now."""
    unused: Decimal
    """What it will still hold at expiry, forfeited (R-21)."""


@dataclass(frozen=True, slots=True)
class Runway:
    balance: Decimal
    days_until_empty: int
    empty_at: datetime
    expiring_unused: tuple[ExpiringLot, ...]


def project_balance(lots: Iterable[Lot], pace: Decimal, now: datetime) -> Runway:
    """Spend ``pace`` a day from ``lots`` (FIFO, expiry forfeits), from ``now`` until empty."""
    if pace < 0:
        raise ValueError("a daily spend cannot be negative")
    held = [lot for lot in lots if not lot.is_expired(now) and lot.remaining > 0]
    balance = sum((lot.remaining for lot in held), _ZERO)
    initially = {lot.id: lot.remaining for lot in held}
    expiring: list[ExpiringLot] = []
    empty_at = now
    day = 0
    while held:
        start = now + day * _DAY
        for lot in [lot for lot in held if lot.is_expired(start)]:
            held.remove(lot)
            expiring.append(ExpiringLot(lot.id, lot.expires_at, initially[lot.id], lot.remaining))
            empty_at = lot.expires_at
        if not held:
            break
        if pace == 0:
            # Nothing is spent: jump to the next expiry instead of walking the days.
            first = min(lot.expires_at for lot in held)
            day = max(day + 1, -(-(first - now) // _DAY))
            continue
        plan = allocate_fifo(held, pace, start)
        held = [lot for lot in apply_allocations(held, plan.allocations) if lot.remaining > 0]
        if plan.shortfall > 0:
            covered = plan.covered / pace
            empty_at = start + timedelta(seconds=int(covered * 86400))
            break
        empty_at = start + _DAY
        day += 1
    days = max((empty_at - now) // _DAY, 0)
    return Runway(balance, days, empty_at, tuple(expiring))


@dataclass(frozen=True, slots=True)
class Advice:
    """The funding advice of API.md (``/funding-advice``) and what it was computed from."""

    currency: str
    basis_days: int
    basis_from: date
    basis_to: date
    """The last day of the basis (inclusive)."""
    short_basis: bool
    daily_spend_p50: Decimal
    daily_spend_p95: Decimal
    daily_spend_mean: Decimal
    recommendation: Recommendation
    runway: Runway


def advise(
    spend: Mapping[date, Decimal],
    lots: Iterable[Lot],
    now: datetime,
    currency: str,
    *,
    minimum_deposit: Decimal,
    first_day: date | None,
    basis_end: date | None = None,
) -> Advice:
    """The whole advice from spend per UTC day, the organization's lots and ``now``.

    ``first_day`` is the first day of the usage history (None: there is none); ``basis_end``
    the day after the last day of the basis, today by default (a file of past calls ends
    wherever it ends). The runway always starts ``now`` from ``lots``.
    """
    start, end = basis_window(basis_end or now.date(), first_day)
    series = daily_series(spend, start, end)
    pace = mean(series)
    p95 = percentile(series, 95)
    return Advice(
        currency=currency,
        basis_days=len(series),
        basis_from=start,
        basis_to=end - timedelta(days=1),
        short_basis=len(series) < BASIS_MIN_DAYS,
        daily_spend_p50=percentile(series, 50),
        daily_spend_p95=p95,
        daily_spend_mean=pace,
        recommendation=recommend(p95, pace, currency, minimum_deposit=minimum_deposit),
        runway=project_balance(lots, pace, now),
    )


# --- sizing from a file of past calls ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RatedCall:
    """One past call as today's licenses, pools and rates would have paid for it."""

    start: datetime
    allowed: bool
    reason: str | None = None
    funding: str | None = None
    pool: PoolKey | None = None
    pool_minutes: int = 0
    charge: Decimal = _ZERO


@dataclass(frozen=True, slots=True)
class PoolMonth:
    pool: PoolKey
    size: int
    used: int


@dataclass(frozen=True, slots=True)
class MonthProjection:
    month: str
    calls: int
    refused: int
    pools: tuple[PoolMonth, ...]
    credit_spend: Decimal
    overage_spend: Decimal


def spend_by_day(calls: Iterable[RatedCall]) -> dict[date, Decimal]:
    """Credit spend per UTC day of the calls' starts (overage is billed, never drawn)."""
    spend: dict[date, Decimal] = defaultdict(lambda: _ZERO)
    for call in calls:
        if call.allowed and call.funding != "overage" and call.charge > 0:
            spend[call.start.date()] += call.charge
    return dict(spend)


def monthly_projection(
    calls: Iterable[RatedCall], sizes: Mapping[str, Mapping[PoolKey, int]]
) -> list[MonthProjection]:
    """Per calendar month: calls, refusals, each pool's size and minutes used, and spend.

    ``sizes`` holds each month's pools (as :func:`~commcredits.domain.pools.pool_sizes` gives
    them); a pool that was drawn on but has no size is listed with size 0.
    """
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    used: dict[str, dict[PoolKey, int]] = defaultdict(lambda: defaultdict(int))
    credit: dict[str, Decimal] = defaultdict(lambda: _ZERO)
    overage: dict[str, Decimal] = defaultdict(lambda: _ZERO)
    for call in calls:
        month = call.start.strftime("%Y-%m")
        counts[month][0] += 1
        if not call.allowed:
            counts[month][1] += 1
            continue
        if call.pool is not None and call.pool_minutes:
            used[month][call.pool] += call.pool_minutes
        if call.funding == "overage":
            overage[month] += call.charge
        else:
            credit[month] += call.charge
    result = []
    for month in sorted(counts):
        month_sizes = sizes.get(month, {})
        keys = list(month_sizes) + [key for key in used[month] if key not in month_sizes]
        pools = tuple(PoolMonth(k, month_sizes.get(k, 0), used[month].get(k, 0)) for k in keys)
        result.append(
            MonthProjection(
                month, counts[month][0], counts[month][1], pools, credit[month], overage[month]
            )
        )
    return result
