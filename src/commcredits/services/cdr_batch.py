"""Finished calls (CDRs) charged a batch at a time, with the results of charging them one by one.

``Calls.import_cdrs`` answers, record for record, what deciding, funding and settling each call
on its own would answer (R-15, R-28..R-38, R-42, R-50a): the same decisions, pools, charges,
ledger entries naming each call, duplicates and refusals, in start-time order. What differs is
where the work goes:

* everything a batch needs from the store is read once per chunk: users and their licenses, the
  organization's numbers, the call ids already charged, the pools of each month, what users
  with a spend limit have spent;
* what a call's decision depends on apart from the running state (its user, call type and
  destination) is worked out once per distinct combination (a *route*); numbers are classified
  and rates matched once per distinct number;
* the running state (pool minutes left, the available balance, spend-limit room) is plain
  integers in memory, and each charge is taken from the lots first-in, first-out in integer
  micro-units (R-22), never below zero (R-28);
* each chunk is written with a few bulk statements in one transaction.

Choices where one-by-one and batched charging could differ:

* A batch is cut into chunks of ``chunk_size`` records in start-time order, each committed in
  its own transaction: a failure loses at most the chunk it happened in, and sending the batch
  again charges only what was not charged (call ids are charged once ever). A recharge that a
  chunk starts is paid once the whole batch is done, as when the batch is one transaction.
* Pool sizes are computed from the licenses held when the chunk starts (R-31, our choice).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Final

from sqlalchemy import Connection, Table, bindparam, insert, select
from sqlalchemy.engine import Dialect

from commcredits.adapters.clock import Clock
from commcredits.domain import charging
from commcredits.domain.charging import FREECALL, INBOUND_TYPES, CallFacts
from commcredits.domain.credits import CreditAccount
from commcredits.domain.directory import TOLL_FREE_KINDS, User
from commcredits.domain.errors import NotFound
from commcredits.domain.licensing import CALL_TYPES, Catalogue
from commcredits.domain.money import from_micros, to_micros
from commcredits.domain.organizations import Organization
from commcredits.domain.pools import PoolKey, PoolMember, PoolState, month_of, pool_sizes
from commcredits.domain.rating import Charge, Destination, Rate, RateTable, price
from commcredits.domain.rating_batch import classify_number
from commcredits.domain.report_line import pstn_line
from commcredits.domain.usage import LATEST_START, CallRecord, check_seconds
from commcredits.services import notices
from commcredits.services.account import AccountSession
from commcredits.services.calls import CdrRecord, CdrResult, pool_name
from commcredits.services.credits import Credits
from commcredits.services.rating import Rating
from commcredits.store.credits import CreditRepository
from commcredits.store.database import Store, UnitOfWork, retrying
from commcredits.store.directory import NumberRepository, UserRepository
from commcredits.store.tables import calls, ledger_entries
from commcredits.store.types import UTCDateTime
from commcredits.store.usage import CallRepository, PoolRepository

ZERO: Final = Decimal(0)
CHUNK_SIZE: Final = 20_000
"""Records per transaction: large enough that the commit is cheap beside the work, small
enough that a chunk's rows and a retry stay modest."""


@dataclass(frozen=True, slots=True)
class _Route:
    """What decides a call apart from the running state: a final answer, or the pools to try in
    order (an empty key tuple is a license that includes the call) and then money."""

    final: tuple[str, str | None, str | None, str | None] | None
    """(decision, reason, funding, capability) when the state cannot change the answer."""
    candidates: tuple[tuple[str, tuple[PoolKey, ...]], ...] = ()
    services: tuple[str, ...] = ()
    destination: Destination | None = None
    """The number the rate is matched on (None: the route needs no rate)."""
    money_capability: str | None = None
    credits_allowed: bool = False
    spend_limited: bool = False


@dataclass(slots=True)
class _Chunk:
    """The running state of one chunk: pools, balance, spending, and what is to be written."""

    uow: UnitOfWork
    org: Organization
    now: datetime
    sizes: dict[str, dict[PoolKey, int]]
    taken: dict[str, dict[PoolKey, int]]
    touched: dict[tuple[str, str], int]
    """(month, pool name) -> minutes used by this chunk."""
    used_before: dict[tuple[str, str], int]
    notified: dict[tuple[str, str], int]
    spent: dict[tuple[str, str], int]
    """(user id, month) -> micro-units the store says the user spent since the month began."""
    spent_here: dict[tuple[str, str], int]
    """(user id, month) -> micro-units this chunk charged the user (not in the store yet)."""
    lots: list[list[Any]]
    """[lot id, remaining micros] of the lots that can pay, oldest first."""
    lot_index: int
    balance: int
    available: int
    entries: list[tuple[int, str, str, str]]
    """(amount micros, lot id, call id, call type), in the order the money moved."""
    rows: list[tuple[Any, ...]]
    """The calls to store, as rows of the ``calls`` table (see :class:`_CallRows`)."""


class CdrBatches:
    """Charges finished calls a batch at a time (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        catalogue: Catalogue,
        rating: Rating,
        credits: Credits,
        *,
        chunk_size: int = CHUNK_SIZE,
    ):
        self.store = store
        self.clock = clock
        self.catalogue = catalogue
        self.rating = rating
        self.credits = credits
        self.chunk_size = chunk_size

    def import_cdrs(self, org_id: str, records: Sequence[CdrRecord]) -> list[CdrResult]:
        """Rate and charge finished calls in start-time order; a call id is charged at most once
        ever, and a bad record is rejected with its reason while the good ones go through."""
        now = self.clock.now()
        try:
            table_id, rates = self.rating.table()
        except NotFound:
            table_id, rates = None, RateTable([])  # no table yet: what needs a rate is refused
        days = [r.start_time.astimezone(UTC).date() for r in records]
        batch = _Batch(self, org_id, rates, table_id, now, (min(days), max(days)) if days else None)
        ordered = sorted(range(len(records)), key=lambda i: records[i].start_time)
        answers: list[CdrResult | None] = [None] * len(records)
        orders = []
        # An empty batch still opens the account: an unknown organization is an error either way.
        for first in range(0, max(len(ordered), 1), self.chunk_size):
            positions = ordered[first : first + self.chunk_size]
            results, order = batch.run([records[i] for i in positions])
            for position, result in zip(positions, results, strict=True):
                answers[position] = result
            if order is not None:
                orders.append(order)
        for order in orders:
            self.credits.pay_if_started(order)
        assert all(answer is not None for answer in answers)
        return answers  # type: ignore[return-value]


class _Batch:
    """One import: caches that hold for all its chunks (routes, numbers, rates, prices)."""

    def __init__(
        self,
        owner: CdrBatches,
        org_id: str,
        rates: RateTable,
        table_id: str | None,
        now: datetime,
        days: tuple[date, date] | None,
    ):
        self.owner = owner
        self.catalogue = owner.catalogue
        self.org_id = org_id
        self.rates = rates
        self.table_id = table_id
        self.now = now
        # A row that starts or ends within the batch's days makes the day part of a match;
        # otherwise every day of the batch matches alike: one look-up per number.
        self.dated = days is not None and any(
            days[0] < edge <= days[1]
            for r in rates.rows
            for edge in (r.effective_from, r.effective_to and r.effective_to + timedelta(days=1))
            if edge is not None
        )
        self.routes: dict[tuple[Any, ...], _Route] = {}
        self.numbers: dict[str, Destination | None] = {}
        self.rate_of: dict[tuple[Any, ...], Rate | None] = {}
        self.prices: dict[tuple[int, int], Charge] = {}
        self.slice_costs: dict[tuple[int, int], Decimal] = {}
        self.emergency: dict[tuple[str, str, str | None, bool], bool] = {}
        self.seen: set[str] = set()
        self.months: dict[tuple[int, int, timedelta | None], str] = {}
        self.domestic: dict[tuple[str, str], bool] = {}
        self.stored_rates: dict[int, tuple[Any, ...]] = {}
        self.micros_of: dict[Decimal, int] = {}
        self.writer = _CallRows.for_dialect(owner.store.engine.dialect)

    # -- reading ----------------------------------------------------------------------------

    def destination(self, number: str) -> Destination | None:
        try:
            return self.numbers[number]
        except KeyError:
            self.numbers[number] = found = classify_number(number)
            return found

    def rate(
        self, services: tuple[str, ...], destination: Destination, at: datetime
    ) -> Rate | None:
        key = (services, destination, at.astimezone(UTC).date() if self.dated else None)
        try:
            return self.rate_of[key]
        except KeyError:
            found = None
            for service in services:
                found = self.rates.match(service, destination, at, self.currency)
                if found is not None:
                    break
            self.rate_of[key] = found
            return found

    def micros(self, amount: Decimal) -> int:
        """``to_micros``, remembered: a batch charges the same few amounts over and over."""
        try:
            return self.micros_of[amount]
        except KeyError:
            self.micros_of[amount] = found = to_micros(amount)
            return found

    def price(self, rate: Rate, seconds: int) -> Charge:
        key = (id(rate), seconds)
        try:
            return self.prices[key]
        except KeyError:
            self.prices[key] = found = price(rate, seconds)
            return found

    def affordable(self, rate: Rate, budget: Decimal, up_to: int) -> int:
        key = (id(rate), up_to)
        cost = self.slice_costs.get(key)
        if cost is None:
            self.slice_costs[key] = cost = charging.slice_cost(rate, up_to)
        if budget >= 0 and up_to > 0 and cost <= budget:
            return up_to
        return charging.affordable_seconds(rate, budget, up_to)

    # -- one chunk --------------------------------------------------------------------------

    @retrying()
    def run(self, records: list[CdrRecord]) -> tuple[list[CdrResult], Any]:
        seen_before = set(self.seen)
        try:
            return self._run(records)
        except BaseException:
            self.seen = seen_before  # a retried chunk sees the store as it was
            raise

    def _run(self, records: list[CdrRecord]) -> tuple[list[CdrResult], Any]:
        owner, org_id, now = self.owner, self.org_id, self.now
        with owner.store.unit_of_work() as uow:
            session = AccountSession(uow, org_id, now)
            self.org = session.org
            self.currency = session.org.currency
            chunk = self._open(uow, session, records)
            results = [self._one(uow, chunk, cdr) for cdr in records]
            order = self._write(uow, session, chunk)
            uow.commit()
        return results, order

    def _open(self, uow: UnitOfWork, session: AccountSession, records: list[CdrRecord]) -> _Chunk:
        org_id = self.org_id
        users = UserRepository(uow.conn).all(org_id)
        self.users_by_id = {u.id: u for u in users}
        self.users_by_upn = {u.upn.lower(): u for u in users}
        self.members = [PoolMember(u.id, u.licenses, u.usage_location) for u in users]
        self.toll_free = {
            n.number
            for n in NumberRepository(uow.conn).for_org(org_id)
            if n.kind in TOLL_FREE_KINDS
        }
        ids = [r.call_id for r in records if r.call_id not in self.seen]
        self.seen.update(_charged_already(uow.conn, org_id, ids))
        self.facts: dict[str | None, CallFacts] = {}
        fifo = sorted(
            (lot for lot in session.lots.values() if not lot.is_expired(self.now)),
            key=lambda lot: (lot.purchased_at, lot.id),
        )
        account = session.account
        return _Chunk(
            uow=uow,
            org=session.org,
            now=self.now,
            sizes={},
            taken={},
            touched={},
            used_before={},
            notified={},
            spent={},
            spent_here={},
            lots=[[lot.id, to_micros(lot.remaining)] for lot in fifo if lot.remaining > 0],
            lot_index=0,
            balance=to_micros(account.balance),
            available=to_micros(account.available),
            entries=[],
            rows=[],
        )

    def _month(self, at: datetime) -> str:
        """The pool month of ``at`` (``month_of``), remembered per hour of UTC offset."""
        key = (at.year, at.month, at.utcoffset())
        found = self.months.get(key)
        if found is None or at.day in (1, 28, 29, 30, 31):
            found = month_of(at)  # near a month's edge the offset may change the month
            if at.day not in (1, 28, 29, 30, 31):
                self.months[key] = found
        return found

    def _domestic(self, location: str, external: str) -> bool:
        key = (location, external)
        found = self.domestic.get(key)
        if found is None:
            self.domestic[key] = found = self.catalogue.is_domestic(location, external)
        return found

    def _user(self, key: str | None) -> User | None:
        if not key:
            return None
        return self.users_by_id.get(key) or self.users_by_upn.get(key.strip().lower())

    def _facts(self, user: User | None) -> CallFacts:
        key = user.id if user else None
        found = self.facts.get(key)
        if found is None:
            org = self.org
            found = CallFacts(
                call_type="user_out",
                from_number="",
                to_number="",
                user_id=user.id if user else None,
                licenses=self.catalogue.effective(user.licenses) if user else frozenset(),
                usage_location=user.usage_location if user else None,
                pstn_policy=(user.pstn_policy if user else None) or org.pstn_policy,
                dialout_policy=(user.dialout_policy if user else None) or org.dialout_policy,
                spend_limit=user.spend_limit if user else None,
            )
            self.facts[key] = found
        return found

    def _pools(self, uow: UnitOfWork, chunk: _Chunk, month: str, at: datetime) -> None:
        if month not in chunk.sizes:
            chunk.sizes[month] = pool_sizes(self.members, at, self.catalogue)
            usage = PoolRepository(uow.conn).usage(self.org_id, month)
            taken: dict[PoolKey, int] = {}
            for key in chunk.sizes[month]:
                used, reserved = usage.get(pool_name(key), (0, 0))
                taken[key] = used + reserved
            chunk.taken[month] = taken

    def _spent(self, chunk: _Chunk, user_id: str, at: datetime) -> int:
        """What the user spent from the start of the call's month on, as the store would say
        if this chunk's calls were written already (R-37)."""
        key = (user_id, month_of(at))
        if key not in chunk.spent:
            since = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            spent = CallRepository(chunk.uow.conn).spent_since(self.org_id, user_id, since)
            chunk.spent[key] = to_micros(spent)
        return chunk.spent[key] + chunk.spent_here.get(key, 0)

    def _one(self, uow: UnitOfWork, chunk: _Chunk, cdr: CdrRecord) -> CdrResult:
        call_id = cdr.call_id
        if call_id in self.seen:
            return CdrResult(call_id, "duplicate")
        self.seen.add(call_id)
        if error := check_seconds(cdr.duration_seconds, "duration_seconds"):
            return CdrResult(call_id, "rejected", error=error.code)
        if cdr.start_time > LATEST_START:
            return CdrResult(call_id, "rejected", error="invalid_request")
        call_type = cdr.call_type
        if call_type not in CALL_TYPES:
            return CdrResult(call_id, "rejected", error="invalid_call_type")
        user = self._user(cdr.user)
        facts = self._facts(user)
        start = cdr.start_time
        month = self._month(start)
        self._pools(uow, chunk, month, start)
        duration = cdr.duration_seconds
        slice_seconds = max(duration, 1)
        route, destination = self._route(cdr, facts, month)
        rate: Rate | None = None
        pool: PoolKey | None = None
        granted = 0
        if route.final is not None:
            verdict, reason, funding, capability = route.final
            if verdict == "allow":
                granted = slice_seconds
        else:
            verdict, reason, funding, capability = "deny", None, None, None
            if destination is not None:
                rate = self.rate(route.services, destination, start)
            left_of = self._left(chunk, month)
            ran_out = False
            for candidate, keys in route.candidates:
                if not keys:
                    verdict, funding, capability = "allow", "included", candidate
                    granted, rate = slice_seconds, None
                    break
                left = left_of(keys[0])
                if left > 0 and all(left_of(key) > 0 for key in keys[1:]):
                    verdict, funding, capability = "allow", "pool", candidate
                    granted, pool = min(slice_seconds, left * 60), keys[0]
                    break
                ran_out = True
            else:
                verdict, reason, funding, granted = self._money(
                    chunk, route, facts, rate, start, slice_seconds, ran_out
                )
                capability = route.money_capability if verdict == "allow" else None
            if verdict == "deny":
                rate = None
        if verdict == "deny":
            record = self._record(
                None, cdr, user, "deny", reason, None, None, None, None, 0, (0, ZERO, ZERO), False
            )
            # Not kept: once the cause is fixed (a license, funds), the record can be sent again.
            return CdrResult(call_id, "rejected", error=reason, record=record)
        settled = self._settle(chunk, cdr, funding, pool, rate, duration, month)
        if settled[1] > 0 and funding == "pool":
            capability = "MCOPSTNPP"  # R-50a: the license that paid the charge
        record = self._record(
            chunk, cdr, user, "allow", None, funding, capability, pool, rate, granted, settled, True
        )
        if user is not None and settled[1]:
            key = (user.id, month)
            chunk.spent_here[key] = chunk.spent_here.get(key, 0) + self.micros(settled[1])
        return CdrResult(call_id, "charged", charge=record.charge, record=record)

    @staticmethod
    def _left(chunk: _Chunk, month: str) -> Callable[[PoolKey], int]:
        sizes, taken = chunk.sizes[month], chunk.taken[month]

        def left(key: PoolKey) -> int:
            size = sizes.get(key)
            return 0 if size is None else max(size - taken[key], 0)

        return left

    def _money(
        self,
        chunk: _Chunk,
        route: _Route,
        facts: CallFacts,
        rate: Rate | None,
        start: datetime,
        slice_seconds: int,
        ran_out: bool,
    ) -> tuple[str, str | None, str | None, int]:
        """The money part of the decision (``charging._charge``): credits first, then overage."""
        overage = self.org.billing == "postpaid" and self.org.overage_enabled
        if not route.credits_allowed and not overage:
            return "deny", ("pool_exhausted" if ran_out else "no_license"), None, 0
        if rate is None:
            return "deny", "no_rate", None, 0
        room: Decimal | None = None
        if route.spend_limited and facts.spend_limit is not None:
            assert facts.user_id is not None
            spent = from_micros(self._spent(chunk, facts.user_id, start))
            room = facts.spend_limit - spent
            if self.affordable(rate, room, slice_seconds) == 0:
                return "deny", "spend_limit_reached", None, 0
        if route.credits_allowed and chunk.available > 0:
            available = from_micros(chunk.available)
            budget = available if room is None else min(available, room)
            granted = self.affordable(rate, budget, slice_seconds)
            if granted > 0:
                return "allow", None, "credits", granted
        if overage:
            granted = slice_seconds
            if room is not None:
                granted = self.affordable(rate, room, granted)
            return "allow", None, "overage", granted
        return "deny", "no_credits", None, 0

    # -- routes -----------------------------------------------------------------------------

    def _route(
        self, cdr: CdrRecord, facts: CallFacts, month: str
    ) -> tuple[_Route, Destination | None]:
        """The call's route, and the number its rate is matched on."""
        call_type = cdr.call_type
        if call_type in INBOUND_TYPES:
            toll_free = cdr.to_number in self.toll_free
            if call_type != "conf_in" and not toll_free:
                return _FREE, None
            key: tuple[Any, ...] = (facts.user_id, call_type, toll_free, cdr.to_number)
            found = self.routes.get(key)
            if found is None:
                found = self._inbound(facts, call_type, toll_free, cdr.to_number, month)
                self.routes[key] = found
            return found, found.destination
        declared = call_type == "emergency_out"
        number = cdr.to_number.strip()
        if number and not number.startswith("+") and self._is_emergency(cdr, facts, declared):
            return _FREE, None
        if declared:
            return _INVALID, None
        destination = self.destination(cdr.to_number)
        if destination is None:
            return _INVALID, None
        key = (
            facts.user_id,
            call_type,
            month,
            destination.country,
            destination.number_type == "premium",
        )
        found = self.routes.get(key)
        if found is None:
            found = self._outbound(facts, call_type, destination, month)
            self.routes[key] = found
        return found, destination

    def _is_emergency(self, cdr: CdrRecord, facts: CallFacts, declared: bool) -> bool:
        key = (cdr.to_number, cdr.from_number, facts.usage_location, declared)
        found = self.emergency.get(key)
        if found is None:
            call = replace(facts, to_number=cdr.to_number, from_number=cdr.from_number)
            found = charging.is_emergency_call(call, declared=declared)
            self.emergency[key] = found
        return found

    def _ask(self, facts: CallFacts, call_type: str, month: str) -> Any:
        # The decision's own helpers, asked about one user, call type and destination; the pool
        # and money parts are evaluated per call against the running state.
        return charging._Ask(
            replace(facts, call_type=call_type),
            charging.OrgFacts(self.org.billing, self.org.overage_enabled, self.currency, ZERO),
            PoolState(),
            self.rates,
            self.now,
            1,
            self.catalogue,
            month,
        )

    def _inbound(
        self, facts: CallFacts, call_type: str, toll_free: bool, number: str, month: str
    ) -> _Route:
        catalogue = self.catalogue
        credits_sku = catalogue.credits_sku
        if call_type == "conf_in":
            ask = self._ask(facts, call_type, month)
            held = charging._held(ask, conference=True)
            conferencing = charging._of_kind(catalogue, held, "conferencing")
            per_minute = charging._of_kind(catalogue, held, "conferencing_payg")
            if not conferencing and not per_minute:
                return _Route(("deny", "no_license", None, None))
            if not toll_free:
                if conferencing:
                    return _Route(("allow", None, "included", conferencing[0]))
                bridge = self.destination(number)
                if bridge is None:
                    return _INVALID
                return _Route(
                    None,
                    services=("conf_dialout", "outbound"),
                    destination=bridge,
                    money_capability=per_minute[0],
                    credits_allowed=credits_sku in held,
                )
        called = self.destination(number)
        if called is None:
            return _INVALID
        return _Route(
            None,
            services=("toll_free_in",),
            destination=called,
            money_capability=credits_sku,
            credits_allowed=True,
        )

    def _outbound(
        self, facts: CallFacts, call_type: str, destination: Destination, month: str
    ) -> _Route:
        catalogue = self.catalogue
        ask = self._ask(facts, call_type, month)
        conference = call_type == "conf_out"
        if charging._policy_blocks(ask, destination, conference=conference):
            return _Route(("deny", "policy_blocked", None, None))
        held = charging._held(ask, conference=conference)
        per_minute = charging._of_kind(catalogue, held, "conferencing_payg")
        if conference:
            licensed = bool(per_minute or charging._of_kind(catalogue, held, "conferencing"))
        else:
            licensed = catalogue.has_calling_plan(held)
        if not licensed:
            return _Route(("deny", "no_license", None, None))
        money = {catalogue.credits_sku, *per_minute}
        candidates: list[tuple[str, tuple[PoolKey, ...]]] = []
        for capability in catalogue.paying_capabilities(
            held,
            call_type,
            facts.usage_location,
            destination.country,
            premium=destination.number_type == "premium",
        ):
            if capability in money:
                continue
            keys = charging._pools_for(ask, capability, destination)
            candidates.append((capability, keys))
            if not keys:
                break
        if candidates and not candidates[0][1]:
            return _Route(("allow", None, "included", candidates[0][0]))
        return _Route(
            None,
            candidates=tuple(candidates),
            services=("conf_dialout", "outbound") if conference else ("outbound",),
            money_capability=(
                per_minute[0] if conference and per_minute else catalogue.credits_sku
            ),
            credits_allowed=catalogue.credits_sku in held,
            spend_limited=True,
        )

    # -- records and money ------------------------------------------------------------------

    def _record(
        self,
        chunk: _Chunk | None,
        cdr: CdrRecord,
        user: User | None,
        verdict: str,
        reason: str | None,
        funding: str | None,
        capability: str | None,
        pool: PoolKey | None,
        rate: Rate | None,
        granted: int,
        settled: tuple[int, Decimal, Decimal],
        ended: bool,
    ) -> CallRecord:
        """The call's row as ``Calls`` writes it (R-50); ``settled`` is (pool minutes, charge,
        connection fee charged). With a ``chunk``, the row is also queued to be stored."""
        inbound = cdr.call_type.endswith("_in")
        destination = self.numbers.get(cdr.from_number if inbound else cdr.to_number, _UNSEEN)
        if destination is _UNSEEN:
            destination = self.destination(cdr.from_number if inbound else cdr.to_number)
        external = destination.country if destination else None
        location = user.usage_location if user else None
        duration = cdr.duration_seconds if ended else None
        start = cdr.start_time
        end = start + timedelta(seconds=cdr.duration_seconds) if ended else None
        pool_text = pool_name(pool) if pool else None
        head = (
            self.org_id,
            cdr.call_id,
            cdr.call_type,
            user.id if user else None,
            user.upn if user else None,
            user.display_name if user else None,
            location,
            cdr.from_number,
            cdr.to_number,
            cdr.conference_id,
            "ended" if ended else "denied",
            verdict,
            reason,
            funding,
            capability,
            external,
            destination.number_type if destination else None,
            self._domestic(location, external) if location and external else None,
            pool_text,
            settled[0],
            0,
            self.table_id if rate else None,
        )
        if rate is None:
            rated: tuple[Any, ...] = _UNRATED
        else:
            rated = (
                rate.line,
                rate.rate,
                rate.connection_fee,
                rate.first_increment,
                rate.increment,
            )
        tail = (granted, duration or 0)
        values: tuple[Any, ...] = (
            *head,
            *rated,
            self.currency,
            settled[1],
            settled[2],
            ZERO,
            *tail,
            start,
            end,
            duration,
            None,
            "cdr",
        )
        record = CallRecord(*values)
        if chunk is not None:
            writer = self.writer
            chunk.rows.append(
                (
                    *head,
                    *(_UNRATED if rate is None else self._stored_rate(rate)),
                    self.currency,
                    self.micros(settled[1]),
                    self.micros(settled[2]),
                    0,
                    *tail,
                    writer.time(start),
                    writer.time(end),
                    duration,
                    None,
                    "cdr",
                    None,
                    *(pstn_line(record) or _NO_REPORT_LINE),
                )
            )
        return record

    def _stored_rate(self, rate: Rate) -> tuple[Any, ...]:
        """A rate's columns of a call row: Decimals as the text ``CallRepository`` writes."""
        key = id(rate)
        found = self.stored_rates.get(key)
        if found is None:
            found = (
                rate.line,
                format(rate.rate, "f"),
                format(rate.connection_fee, "f"),
                rate.first_increment,
                rate.increment,
            )
            self.stored_rates[key] = found
        return found

    def _settle(
        self,
        chunk: _Chunk,
        cdr: CdrRecord,
        funding: str | None,
        pool: PoolKey | None,
        rate: Rate | None,
        duration: int,
        month: str,
    ) -> tuple[int, Decimal, Decimal]:
        """Settle a finished call as ``Calls`` settles one: the pool pays what it has left, the
        rest is charged (R-31, R-33); credits are taken first-in, first-out, never below zero.
        Returns (pool minutes, charge, connection fee charged)."""
        pool_minutes = 0
        charged = ZERO
        fee = ZERO
        if funding == "pool" and pool is not None:
            left = max(chunk.sizes[month].get(pool, 0) - chunk.taken[month][pool], 0)
            needed = -(-duration // 60)
            if rate is not None and needed > left:
                pool_minutes = left
                charged_seconds = duration - left * 60
                charged = self.price(rate, charged_seconds).charge
                fee = rate.connection_fee
            else:
                pool_minutes = min(needed, left)
            chunk.taken[month][pool] += pool_minutes
            name = pool_name(pool)
            touched = (month, name)
            chunk.touched[touched] = chunk.touched.get(touched, 0) + pool_minutes
            if pool.kind == "dialout":
                self._dialout_notices(chunk, pool, month, name)
        elif funding in ("credits", "overage") and rate is not None:
            priced = self.price(rate, duration)
            charged, fee = priced.charge, (rate.connection_fee if priced.units else ZERO)
        if charged > 0 and funding != "overage":
            wanted = self.micros(charged)
            take = min(wanted, chunk.available)
            if take > 0:
                self._debit(chunk, take, cdr.call_id, cdr.call_type)
            # The balance never goes below zero: the record says what was charged.
            if take != wanted:
                charged = from_micros(take)
        return pool_minutes, charged, fee

    @staticmethod
    def _debit(chunk: _Chunk, amount: int, call_id: str, call_type: str) -> None:
        """Take ``amount`` micro-units from the oldest lots first (R-22)."""
        lots, index = chunk.lots, chunk.lot_index
        due = amount
        while due:
            lot = lots[index]
            paid = lot[1] if lot[1] < due else due
            if paid:
                lot[1] -= paid
                due -= paid
                chunk.entries.append((-paid, lot[0], call_id, call_type))
            if lot[1] == 0:
                index += 1
        chunk.lot_index = index
        chunk.balance -= amount
        chunk.available -= amount

    def _dialout_notices(self, chunk: _Chunk, pool: PoolKey, month: str, name: str) -> None:
        """R-35: 80% and 100% of the dial-out pool, once each, sized as ``Calls`` sizes it (on
        the licenses of the current month)."""
        now_month = month_of(chunk.now)
        if now_month not in chunk.sizes:
            self._pools(chunk.uow, chunk, now_month, chunk.now)
        size = chunk.sizes[now_month].get(pool, 0)
        if size <= 0:
            return
        key = (month, name)
        pools = PoolRepository(chunk.uow.conn)
        if key not in chunk.notified:
            chunk.notified[key] = pools.notified(self.org_id, month, name)
            chunk.used_before[key] = pools.usage(self.org_id, month).get(name, (0, 0))[0]
        used = chunk.used_before[key] + chunk.touched[key]
        percent = used * 100 // size
        told = chunk.notified[key]
        for threshold in (80, 100):
            if percent >= threshold > told:
                notices.dialout_pool(chunk.uow, chunk.org, threshold, used, size, month, chunk.now)
                told = threshold
        chunk.notified[key] = told

    # -- writing ----------------------------------------------------------------------------

    def _write(self, uow: UnitOfWork, session: AccountSession, chunk: _Chunk) -> Any:
        org_id, now = self.org_id, self.now
        self.writer.insert(uow.conn, chunk.rows)
        pools = PoolRepository(uow.conn)
        for (month, name), minutes in chunk.touched.items():
            pools.add(org_id, month, name, used=minutes)
        for (month, name), told in chunk.notified.items():
            pools.mark_notified(org_id, month, name, told)
        swept_balance = session.account.balance
        remaining = {lot_id: micros for lot_id, micros in chunk.lots}
        changed = {lot_id for _, lot_id, _, _ in chunk.entries}
        for lot_id in changed:
            lot = session.lots[lot_id]
            session.lots[lot_id] = replace(lot, remaining=from_micros(remaining[lot_id]))
        if chunk.entries:
            session.account = replace(session.account, balance=from_micros(chunk.balance))
            session.debited = True
        order = self.owner.credits.after_debit(uow, session)
        settled: CreditAccount = session.account
        # The session writes what it did itself (expiry of lots found expired on opening) with
        # the balance those entries lead to; the charges follow.
        session.account = replace(settled, balance=swept_balance)
        session.close()
        if chunk.entries:
            repo = CreditRepository(uow.conn)
            seq = repo.next_entry_seq(org_id, len(chunk.entries))
            running = to_micros(swept_balance)
            ids = _entry_ids(len(chunk.entries))
            at = self.writer.time(now)
            rows = []
            for offset, (amount, lot_id, call_id, call_type) in enumerate(chunk.entries):
                running += amount
                rows.append(
                    (
                        org_id,
                        seq + offset,
                        ids[offset],
                        at,
                        "usage",
                        amount,
                        lot_id,
                        running,
                        call_id,
                        call_type,
                    )
                )
            assert running == chunk.balance
            self.writer.insert(uow.conn, rows, entries=True)
            for lot_id in changed:
                repo.set_remaining(org_id, lot_id, from_micros(remaining[lot_id]))
            repo.save_account(replace(settled, next_expiry_at=session.account.next_expiry_at), now)
        return order


_EXISTING: Final = select(calls.c.call_id).where(
    calls.c.org_id == bindparam("k_org"), calls.c.call_id.in_(bindparam("k_ids", expanding=True))
)
"""Built once: the ids go to the driver as one expanding parameter, not as literals."""


def _charged_already(conn: Connection, org_id: str, call_ids: list[str]) -> set[str]:
    """The ids of ``call_ids`` that the organization's calls already hold, 1,000 per query."""
    found: set[str] = set()
    for first in range(0, len(call_ids), 1_000):
        ids = call_ids[first : first + 1_000]
        found.update(conn.execute(_EXISTING, {"k_org": org_id, "k_ids": ids}).scalars())
    return found


_UNSEEN: Final[Any] = object()
_UNRATED: Final = (None, None, None, None, None)
_NO_REPORT_LINE: Final = (None, None)
_TIME_COLUMNS: Final = frozenset({"start_time", "end_time", "reservation_expires_at"})
_FREE: Final = _Route(("allow", None, "free", FREECALL))
_INVALID: Final = _Route(("deny", "invalid_number", None, None))

_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD: Final = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)


def _entry_ids(count: int) -> list[str]:
    """``count`` ledger entry ids shaped like :func:`commcredits.domain.ids.new_id`'s (``txn_``,
    48 bits of milliseconds and 80 random bits in Crockford base32), made in one go."""
    millis = time.time_ns() // 1_000_000
    head = "".join(_ALPHABET[(millis >> (5 * shift)) & 31] for shift in range(9, -1, -1))
    tail = base64.b32encode(os.urandom(10 * count)).translate(_CROCKFORD).decode()
    return [f"txn_{head}{tail[16 * n : 16 * n + 16]}" for n in range(count)]


class _CallRows:
    """Call rows and ledger entries written straight through the driver's ``executemany``.

    SQLAlchemy's per-row parameter processing is most of the cost of inserting a wide row, so
    the rows are built ready for the driver, converted exactly as the column types convert
    them: UTC instants as naive UTC text on SQLite (SQLAlchemy's own format, microseconds
    always six digits), aware datetimes elsewhere; Decimals as the text ``CallRepository``
    writes; money in micro-units."""

    _made: ClassVar[dict[str, _CallRows]] = {}

    def __init__(self, dialect: Dialect):
        self.sqlite = dialect.name == "sqlite"
        self.positional = dialect.paramstyle in ("qmark", "format", "numeric")
        self.calls = self._statement(dialect, calls, _CALL_COLUMNS)
        self.entries = self._statement(dialect, ledger_entries, _ENTRY_COLUMNS)

    def _statement(self, dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
        compiled = insert(table).compile(dialect=dialect, column_keys=list(columns))
        if self.positional:
            assert compiled.positiontup is not None
            assert tuple(compiled.positiontup) == columns, compiled.positiontup
        return str(compiled)

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> _CallRows:
        found = cls._made.get(dialect.name)
        if found is None:
            found = cls._made[dialect.name] = cls(dialect)
        return found

    def time(self, value: datetime | None) -> datetime | str | None:
        if value is None:
            return None
        if value.tzinfo is UTC and self.sqlite:
            return value.isoformat(" ", "microseconds")[:26]
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
        if not self.sqlite:
            return value.astimezone(UTC)
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        # "YYYY-MM-DD HH:MM:SS.ffffff" and the offset, which naive UTC text leaves out.
        return value.isoformat(" ", "microseconds")[:26]

    def insert(
        self, conn: Connection, rows: list[tuple[Any, ...]], *, entries: bool = False
    ) -> None:
        if not rows:
            return
        sql = self.entries if entries else self.calls
        if self.positional:
            cursor = conn.connection.cursor()
            try:
                cursor.executemany(sql, rows)
            finally:
                cursor.close()
        else:
            columns = _ENTRY_COLUMNS if entries else _CALL_COLUMNS
            named = [dict(zip(columns, row, strict=True)) for row in rows]
            conn.exec_driver_sql(sql, named)


_CALL_COLUMNS: Final = tuple(column.name for column in calls.c)
_ENTRY_COLUMNS: Final = tuple(column.name for column in ledger_entries.c)
assert all(
    isinstance(column.type, UTCDateTime) == (column.name in _TIME_COLUMNS) for column in calls.c
), "a new time column of calls must be converted in _Batch._record"
