"""Use cases of funding advice (R-55) and the forecast mail (R-26, our addition).

:meth:`Advisor.advice` reads the organization's daily usage spend from the ledger, each debit
dated by its call's start (its message's sent time), and its lots, and asks
:func:`commcredits.domain.advice.advise`. :meth:`Advisor.forecast_notices` mails the billing
admins of organizations without auto-recharge whose balance runs out within a week.
:meth:`Advisor.advise_from_cdrs` sizes funding before going live: it rates a file of past calls
through today's licenses, pools and rates with the pure charging decision and pools kept in
memory, and writes nothing at all.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, and_, func, select, type_coerce

from commcredits.adapters.clock import Clock
from commcredits.domain import advice as method
from commcredits.domain.advice import Advice, MonthProjection, RatedCall
from commcredits.domain.charging import CallFacts, OrgFacts, decide, split_charge
from commcredits.domain.directory import TOLL_FREE_KINDS, PhoneNumber, User
from commcredits.domain.errors import CommcreditsError, InvalidRequest, NotFound
from commcredits.domain.licensing import CALL_TYPES, Catalogue
from commcredits.domain.money import Money, from_micros
from commcredits.domain.organizations import Organization
from commcredits.domain.pools import PoolKey, PoolMember, PoolState, month_of, pool_sizes
from commcredits.domain.rating import RateTable, price
from commcredits.domain.roles import BILLING_ADMIN_ROLES
from commcredits.domain.usage import MAX_CALL_SECONDS
from commcredits.services import mail
from commcredits.services.orgs import get_org
from commcredits.services.rating import Rating
from commcredits.store.credits import CreditRepository
from commcredits.store.database import Store, UnitOfWork
from commcredits.store.directory import NumberRepository, UserRepository
from commcredits.store.orgs import AdminRepository
from commcredits.store.tables import (
    calls,
    credit_accounts,
    ledger_entries,
    outbox,
    sms_messages,
    system_state,
)
from commcredits.store.types import UTCDateTime, as_utc

FORECAST_KIND = "balance_forecast_low"
FORECAST_REPEAT = timedelta(days=7)
"""At most one forecast mail per organization in this long (the outbox remembers the last)."""
FORECAST_CHECKED_KEY = "advice_forecast_checked_at"
"""``system_state`` key: when the forecast job last looked, so it runs once a day."""
UNLIMITED = Decimal("999999999")
"""The balance a sized file is rated against: the point is what the calls would cost."""

_ALIASES: dict[str, tuple[str, ...]] = {
    "start": ("start", "starttime", "startedat", "startdate", "calldate", "date", "datetime"),
    "duration": ("duration", "durationseconds", "durationsec", "seconds", "billsec", "length"),
    "user": ("user", "upn", "username", "caller", "callerid", "from", "fromnumber", "source"),
    "destination": ("destination", "to", "tonumber", "dst", "callednumber", "called", "number"),
    "direction": ("direction", "dir", "calltype", "type"),
}
_REQUIRED = ("start", "duration", "user", "destination")
_OUTBOUND = frozenset({"out", "outbound", "outgoing", "o", "originating"})
_INBOUND = frozenset({"in", "inbound", "incoming", "i", "terminating"})


@dataclass(frozen=True, slots=True)
class FundingAdvice:
    org: Organization
    advice: Advice
    auto_recharge: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int
    error: str


@dataclass(frozen=True, slots=True)
class SizedAdvice:
    """Advice from a file of past calls, with the month-by-month projection."""

    advice: FundingAdvice
    months: list[MonthProjection]
    calls: int
    refused: dict[str, int]
    rejected: list[RowProblem]
    unknown_users: int
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _PastCall:
    line: int
    start: datetime
    duration: int
    facts: CallFacts


def _used_at() -> tuple[Any, Any]:
    """Usage ledger entries with when the usage happened: the call's start (R-40 prices a call
    by its start, and the usage report files it there) or the message's sent time, else the
    entry's own time. A batch of last week's CDRs is debited when it is imported, but it is
    last week's spend: dated by the debit, it would look like one day's burst."""
    entries = ledger_entries.c
    at = func.coalesce(calls.c.start_time, sms_messages.c.sent_at, entries.at)
    joined = ledger_entries.outerjoin(
        calls,
        and_(
            calls.c.org_id == entries.org_id,
            calls.c.call_id == entries.reference,
            entries.description != "sms",
        ),
    ).outerjoin(
        sms_messages,
        and_(
            sms_messages.c.org_id == entries.org_id,
            sms_messages.c.sms_id == entries.reference,
            entries.description == "sms",
        ),
    )
    return joined, at


def _daily_usage(
    conn: Connection, org_id: str, since: datetime
) -> tuple[dict[date, Decimal], date | None]:
    """Usage debits per UTC day of the usage itself (see :func:`_used_at`) from ``since``
    (debits are negative entries), and the first day of the usage history as far as the basis
    can see it: ``since``'s day when the organization was debited for usage before ``since``
    (the basis never reaches further back), else the day of the earliest usage debited since
    (a late batch may date it before ``since``), None when there is none. Both read only the
    window's entries and one index probe before it: the history before the window can be years
    of entries, and the forecast job asks every organization every day."""
    joined, at = _used_at()
    entries = ledger_entries.c
    older = conn.execute(
        select(entries.seq)
        .where(entries.org_id == org_id, entries.kind == "usage", entries.at < since)
        .limit(1)
    ).first()
    micros: dict[date, int] = defaultdict(int)
    first: datetime | None = None
    rows = conn.execute(
        select(type_coerce(at, UTCDateTime()), entries.amount_micros)
        .select_from(joined)
        .where(
            entries.org_id == org_id,
            entries.kind == "usage",
            # A debit comes after the usage it pays for: the index narrows, the time decides.
            entries.at >= since,
        )
    )
    for used, amount in rows:
        used = as_utc(used)
        if used is None:
            continue
        if first is None or used < first:
            first = used
        if used >= since:
            micros[used.date()] -= amount
    spend = {day: from_micros(total) for day, total in micros.items()}
    if older is not None:
        return spend, since.date()
    return spend, first.date() if first is not None else None


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class Advisor:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        catalogue: Catalogue,
        rating: Rating,
        *,
        minimum_deposit: Decimal = Decimal("50.00"),
    ):
        self.store = store
        self.clock = clock
        self.catalogue = catalogue
        self.rating = rating
        self.minimum_deposit = minimum_deposit

    # -- advice from the ledger -------------------------------------------------------------------

    def advice(self, org_id: str) -> FundingAdvice:
        now = self.clock.now()
        with self.store.unit_of_work(read_only=True) as uow:
            return self._advice(uow, get_org(uow, org_id), now)

    def _advice(self, uow: UnitOfWork, org: Organization, now: datetime) -> FundingAdvice:
        since = _midnight(now.date() - timedelta(days=method.BASIS_MAX_DAYS))
        repo = CreditRepository(uow.conn)
        account = repo.account(org.id)
        spend, first_day = _daily_usage(uow.conn, org.id, since)
        result = method.advise(
            spend,
            repo.lots_with_money(org.id),
            now,
            org.currency,
            minimum_deposit=self.minimum_deposit,
            first_day=first_day,
        )
        enabled = account is not None and account.auto_recharge.enabled
        return FundingAdvice(org=org, advice=result, auto_recharge=enabled, at=now)

    # -- the forecast mail ------------------------------------------------------------------------

    def next_forecast_at(self) -> datetime | None:
        """Once a day, at the first UTC midnight after the last check (now if never), while
        some organization has money and no auto-recharge; None while none has."""
        with self.store.unit_of_work(read_only=True) as uow:
            candidate = uow.conn.execute(
                select(credit_accounts.c.org_id)
                .where(~credit_accounts.c.recharge_enabled, credit_accounts.c.balance_micros > 0)
                .limit(1)
            ).first()
            value = uow.conn.execute(
                select(system_state.c.value).where(system_state.c.key == FORECAST_CHECKED_KEY)
            ).scalar_one_or_none()
        if candidate is None:
            return None
        if value is None:
            return self.clock.now()
        return _midnight(datetime.fromisoformat(value).date() + timedelta(days=1))

    def forecast_notices(self) -> int:
        """One ``balance_forecast_low`` mail per organization whose balance runs out within
        :data:`~commcredits.domain.advice.FORECAST_WARNING_DAYS` at its pace, with auto-recharge
        off, at most once per :data:`FORECAST_REPEAT`. Returns how many were queued."""
        now = self.clock.now()
        with self.store.unit_of_work(read_only=True) as uow:
            org_ids = CreditRepository(uow.conn).org_ids_with_accounts()
        queued = 0
        for org_id in org_ids:
            with self.store.unit_of_work(read_only=True) as uow:
                advice = self._advice(uow, get_org(uow, org_id), now)
                if not self._forecast_due(uow, advice, now):
                    continue
            with self.store.unit_of_work() as uow:
                # Checked again under the organization's lock: two runners never mail twice.
                if uow.lock_org(org_id) and self._forecast_due(uow, advice, now):
                    _forecast_mail(uow, advice)
                    queued += 1
                    uow.commit()
        with self.store.unit_of_work() as uow:
            checked = system_state.c.key == FORECAST_CHECKED_KEY
            uow.conn.execute(system_state.delete().where(checked))
            uow.conn.execute(
                system_state.insert().values(key=FORECAST_CHECKED_KEY, value=now.isoformat())
            )
            uow.commit()
        return queued

    @staticmethod
    def _forecast_due(uow: UnitOfWork, advice: FundingAdvice, now: datetime) -> bool:
        result, org = advice.advice, advice.org
        if advice.auto_recharge or (org.billing == "postpaid" and org.overage_enabled):
            return False  # it refills itself, or usage goes on as overage
        runway = result.runway
        if runway.balance <= 0 or result.daily_spend_mean <= 0:
            return False  # already empty (the zero-balance mail said so), or nothing is spent
        if runway.days_until_empty >= method.FORECAST_WARNING_DAYS:
            return False
        last = uow.conn.execute(
            select(func.max(outbox.c.created_at)).where(
                outbox.c.org_id == org.id, outbox.c.kind == FORECAST_KIND
            )
        ).scalar_one_or_none()
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=UTC)  # SQLite returns aggregates as naive UTC
        return last is None or now - last >= FORECAST_REPEAT

    # -- sizing from a file of past calls ---------------------------------------------------------

    def advise_from_cdrs(self, org_id: str, rows: Iterable[Mapping[str, str]]) -> SizedAdvice:
        """Rate past calls through today's licenses, pools and rates; charge and write nothing.

        Columns are found by name (start, duration, user or caller, destination, direction);
        a bad row is reported and skipped, a missing column refuses the file. A caller who is
        not in the directory is taken to hold the most common license set, and the answer
        says so.
        """
        now = self.clock.now()
        try:
            _, rates = self.rating.table()
        except NotFound:
            rates = RateTable([])
        with self.store.unit_of_work(read_only=True) as uow:
            org = get_org(uow, org_id)
            users = UserRepository(uow.conn).all(org_id)
            numbers = NumberRepository(uow.conn).for_org(org_id)
            lots = CreditRepository(uow.conn).lots_with_money(org_id)
        reader = _CdrReader(org, users, numbers, self.catalogue)
        past = reader.read(rows)
        members = [PoolMember(u.id, u.licenses, u.usage_location) for u in users]
        rated, sizes = self._rate(org, past, members, rates)
        days = sorted({call.start.date() for call in rated})
        result = method.advise(
            method.spend_by_day(rated),
            lots,
            now,
            org.currency,
            minimum_deposit=self.minimum_deposit,
            first_day=days[0] if days else None,
            basis_end=days[-1] + timedelta(days=1) if days else now.date(),
        )
        refused = Counter(call.reason or "refused" for call in rated if not call.allowed)
        return SizedAdvice(
            advice=FundingAdvice(org=org, advice=result, auto_recharge=False, at=now),
            months=method.monthly_projection(rated, sizes),
            calls=len(rated),
            refused=dict(sorted(refused.items())),
            rejected=reader.problems,
            unknown_users=len(reader.unknown),
            notes=reader.notes(len(rated)),
        )

    def _rate(
        self, org: Organization, past: list[_PastCall], members: list[PoolMember], rates: RateTable
    ) -> tuple[list[RatedCall], dict[str, dict[PoolKey, int]]]:
        """Each call decided and split as ``Calls`` does, pools drawn in memory, in time
        order; the balance is taken as unlimited and spend limits do not apply."""
        facts = OrgFacts(org.billing, org.overage_enabled, org.currency, UNLIMITED)
        sizes: dict[str, dict[PoolKey, int]] = {}
        used: dict[PoolKey, int] = defaultdict(int)
        rated: list[RatedCall] = []
        for call in sorted(past, key=lambda c: (c.start, c.line)):
            month = month_of(call.start)
            if month not in sizes:
                sizes[month] = pool_sizes(members, call.start, self.catalogue)
            pools = PoolState.from_usage(sizes[month], used)
            try:
                decision = decide(
                    call.facts,
                    facts,
                    pools,
                    rates,
                    call.start,
                    max(call.duration, 1),
                    catalogue=self.catalogue,
                )
            except CommcreditsError as exc:
                rated.append(RatedCall(call.start, False, reason=exc.code))
                continue
            if not decision.allowed:
                rated.append(RatedCall(call.start, False, reason=decision.reason))
                continue
            minutes, charge = 0, Decimal(0)
            rate = decision.rate
            if decision.funding == "pool" and decision.pool is not None:
                left = pools.minutes_left(decision.pool)
                if rate is not None:
                    split = split_charge(call.duration, left, rate)
                    minutes, charge = split.pool_minutes, split.charge.charge
                else:
                    minutes = min(-(-call.duration // 60), left)
                used[decision.pool] += minutes
            elif decision.funding in ("credits", "overage") and rate is not None:
                charge = price(rate, call.duration).charge
            rated.append(
                RatedCall(
                    call.start,
                    True,
                    funding=decision.funding,
                    pool=decision.pool,
                    pool_minutes=minutes,
                    charge=charge,
                )
            )
        return rated, sizes


class _CdrReader:
    """Turns rows of any provider's call file into call facts, collecting bad rows."""

    def __init__(
        self,
        org: Organization,
        users: list[User],
        numbers: Iterable[PhoneNumber],
        catalogue: Catalogue,
    ):
        self.org = org
        self.catalogue = catalogue
        self.by_upn = {u.upn.lower(): u for u in users}
        by_id = {u.id: u for u in users}
        self.user_numbers: dict[str, User] = {}
        self.toll_free: set[str] = set()
        for number in numbers:
            if number.user_id is not None and number.user_id in by_id:
                self.user_numbers[number.number] = by_id[number.user_id]
            if number.kind in TOLL_FREE_KINDS:
                self.toll_free.add(number.number)
        self.assumed, self.assumed_location = _common_profile(users, org.country)
        self.unknown: set[str] = set()
        self.problems: list[RowProblem] = []
        self.no_direction = False

    def read(self, rows: Iterable[Mapping[str, str]]) -> list[_PastCall]:
        past: list[_PastCall] = []
        columns: dict[str, str] | None = None
        for line, row in enumerate(rows, start=2):
            if columns is None:
                columns = self._columns(row)
            try:
                past.append(self._call(row, line, columns))
            except ValueError as exc:
                self.problems.append(RowProblem(line, str(exc)))
        return past

    def _columns(self, row: Mapping[str, str]) -> dict[str, str]:
        names = {re.sub(r"[^a-z0-9]", "", name.lower()): name for name in row if name}
        found: dict[str, str] = {}
        for wanted, aliases in _ALIASES.items():
            match = next((names[alias] for alias in aliases if alias in names), None)
            if match is not None:
                found[wanted] = match
        missing = [column for column in _REQUIRED if column not in found]
        if missing:
            raise InvalidRequest(
                f"the file has no {', '.join(missing)} column (it has {', '.join(map(str, row))})",
                code="missing_column",
                field=missing[0],
            )
        self.no_direction = "direction" not in found
        return found

    def _call(self, row: Mapping[str, str], line: int, columns: Mapping[str, str]) -> _PastCall:
        def value(name: str) -> str:
            return (row.get(columns[name]) or "").strip() if name in columns else ""

        start = _parse_start(value("start"))
        duration = _parse_duration(value("duration"))
        call_type = _call_type(value("direction"))
        caller, destination = value("user"), value("destination")
        if not destination:
            raise ValueError("no destination")
        inbound = call_type.endswith("_in")
        toll_free = inbound and destination in self.toll_free
        user = self.by_upn.get(caller.lower()) or self.user_numbers.get(caller)
        if user is None and inbound:
            user = self.user_numbers.get(destination)
        if user is None and not toll_free:
            self.unknown.add(caller.lower())
        facts = CallFacts(
            call_type=call_type,
            from_number=caller if caller.startswith("+") else "",
            to_number=destination,
            user_id=user.id if user else f"unknown:{caller.lower()}",
            licenses=self.catalogue.effective(user.licenses if user else self.assumed),
            usage_location=user.usage_location if user else self.assumed_location,
            pstn_policy=(user.pstn_policy if user else None) or self.org.pstn_policy,
            dialout_policy=(user.dialout_policy if user else None) or self.org.dialout_policy,
            toll_free=toll_free,
        )
        return _PastCall(line, start, duration, facts)

    def notes(self, calls: int) -> list[str]:
        notes = [] if calls else ["the file has no calls to rate"]
        if self.unknown:
            held = ", ".join(sorted(self.assumed)) or "no licenses"
            notes.append(
                f"{len(self.unknown)} caller(s) are not in the directory: rated as users holding"
                f" the most common license set ({held}) in {self.assumed_location or 'no country'};"
                " they add no minutes to the pools"
            )
        if self.no_direction:
            notes.append("no direction column: every call was taken as outbound")
        notes.append("rated against an unlimited balance, without spend limits: nothing charged")
        return notes


def _common_profile(users: list[User], country: str) -> tuple[frozenset[str], str | None]:
    """The most common non-empty license set and, among its holders, the most common location
    (the organization's country when none has one). Ties go to the alphabetically last."""
    sets = Counter(u.licenses for u in users if u.licenses)
    if not sets:
        return frozenset(), country
    best = max(sets.items(), key=lambda item: (item[1], sorted(item[0])))[0]
    places = Counter(u.usage_location for u in users if u.licenses == best and u.usage_location)
    location = max(places.items(), key=lambda item: (item[1], item[0]))[0] if places else country
    return best, location


def _parse_start(text: str) -> datetime:
    """RFC 3339 or ISO 8601; a time without an offset is taken as UTC."""
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"start {text!r} is not a date and time such as 2026-01-05T09:30:00Z"
        ) from None
    return start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)


def _parse_duration(text: str) -> int:
    """Seconds, possibly with decimals (rounded up), or H:MM:SS / M:SS."""
    try:
        if ":" in text:
            seconds = 0
            for part in text.split(":"):
                seconds = seconds * 60 + int(part)
        else:
            seconds = int(-(-Decimal(text) // 1))
    except (ValueError, InvalidOperation):
        raise ValueError(f"duration {text!r} is not seconds or H:MM:SS") from None
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_CALL_SECONDS:
        raise ValueError(f"a duration is at most {MAX_CALL_SECONDS} seconds (a week)")
    return seconds


def _call_type(text: str) -> str:
    word = text.strip().lower()
    if not word or word in _OUTBOUND:
        return "user_out"
    if word in _INBOUND:
        return "user_in"
    if word in CALL_TYPES:
        return word
    raise ValueError(f"direction {text!r} is not inbound, outbound or a call type")


def _forecast_mail(uow: UnitOfWork, advice: FundingAdvice) -> None:
    """R-26 (our addition): the balance runs out within a week and nothing refills it."""
    org, result = advice.org, advice.advice
    runway, recommendation = result.runway, result.recommendation
    admins = AdminRepository(uow.conn).with_any_role(org.id, sorted(BILLING_ADMIN_ROLES))

    def money(amount: Decimal) -> str:
        return str(Money(amount, org.currency))

    mail.enqueue(
        uow,
        org_id=org.id,
        kind=FORECAST_KIND,
        recipients=[admin.email for admin in admins],
        subject=f"Communications Credits run out in about {runway.days_until_empty} days"
        f" ({org.name})",
        body=f"At the pace of the last {result.basis_days} days ({money(result.daily_spend_mean)}"
        f" a day on average), your balance of {money(runway.balance)} runs out around"
        f" {runway.empty_at:%Y-%m-%d %H:%M} UTC.\n"
        "When it does, toll-free numbers stop answering, and international calls, calls beyond"
        " the included minutes and meeting dial-out beyond the pool are refused.\n"
        "Add funds, or turn on auto-recharge: we suggest a trigger of"
        f" {money(recommendation.trigger)} and a recharge of {money(recommendation.recharge)}.\n",
        now=advice.at,
    )
