"""The live-call writer: authorize, usage and end of many calls applied as one batch.

The group committer hands this writer every request that queued while the previous batch was
being written. New calls of the many-organization edge (:class:`Route`) name no organization:
the owners of all their numbers are found first, in one query. Then, per organization in the
batch, it does the database work once, not once per request:

* reads: the organization's lock, its row and its credit account (an
  :class:`~commcredits.services.account.AccountSession`), the calls the batch names (one
  ``IN`` query), the month's pool rows, the active rate table's id, and each distinct user and
  called number once;
* applies every request in memory, in arrival order, with the same pure decision
  (:func:`commcredits.domain.charging.decide`) and the same reservations as before;
* writes: new calls in one multi-row insert, changed calls in one multi-row update, pool moves
  in one, and the account, lots and ledger entries as the session closes.

The database stays the truth. Money is never cached from one batch to the next: the account
row and the lots are read afresh under the organization's lock at the start of each batch, so
an order, adjustment, expiry or another process's writer changing them between two batches is
always seen, and a reservation can never be sized against a stale balance. What is kept across
batches is only what cannot move money by being a few seconds old and was already cached so:
the parsed rate table (checked against the active table's id in every batch) and pool sizes
(:data:`commcredits.services.calls.POOL_CACHE_SECONDS`).

A request refused by a rule (an unknown call, an invalid call type) answers its error and
leaves nothing behind, because every refusal happens before the request changes anything. An
unexpected failure fails the batch; the committer then runs each request alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import cast

from sqlalchemy import Connection

from commcredits.domain import charging
from commcredits.domain.charging import CallFacts, OrgFacts
from commcredits.domain.credits import CreditOrder
from commcredits.domain.directory import TOLL_FREE_KINDS, PhoneNumber, User
from commcredits.domain.errors import CommcreditsError, NotFound
from commcredits.domain.licensing import Catalogue
from commcredits.domain.pools import PoolKey, PoolState, month_of
from commcredits.domain.rating import RateTable, price
from commcredits.domain.rating_batch import classify_number
from commcredits.domain.usage import CallRecord
from commcredits.services import notices
from commcredits.services.account import AccountSession
from commcredits.services.calls_model import (
    CallRequest,
    UnknownNumber,
    evolve,
    month_start,
    new_record,
    pool_key,
    pool_name,
    rate_of,
)
from commcredits.services.credits import Credits
from commcredits.services.group_commit import Outcome
from commcredits.services.rating import Rating
from commcredits.store.credits import OrderRepository
from commcredits.store.database import TransientConflict, UnitOfWork
from commcredits.store.directory import NumberRepository, UserRepository
from commcredits.store.usage import CallRepository, PoolRepository, active_rate_table

ZERO = Decimal(0)
MAX_REMEMBERED_CALLS = 200_000
"""Active calls the writer remembers between batches; beyond this it starts afresh."""

PoolSizes = Callable[[UnitOfWork, str, datetime], dict[PoolKey, int]]


@dataclass(frozen=True, slots=True)
class Authorize:
    org_id: str
    request: CallRequest
    wait_for_recharge: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """A new call of whichever organization holds its number (the many-organization edge):
    the batch finds the organization (see :func:`route`), then decides it as an
    :class:`Authorize`. A number nobody holds answers :class:`UnknownNumber`."""

    request: CallRequest
    wait_for_recharge: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    org_id: str
    call_id: str
    used_seconds: int


@dataclass(frozen=True, slots=True)
class End:
    org_id: str
    call_id: str
    duration: int
    end_time: datetime | None = None


OrgOp = Authorize | Usage | End
"""A request of one known organization."""
LiveOp = OrgOp | Route


def route(
    conn: Connection, requests: Sequence[CallRequest]
) -> list[tuple[str, CallRequest] | None]:
    """The organization (and user) each call belongs to, found from its numbers in one query:
    the ``from`` number for outbound call types, the ``to`` number for inbound ones; the user
    is the number's when the request names none. None: a number nobody holds, or no number."""
    numbers: list[str | None] = []
    for request in requests:
        inbound = request.call_type.endswith("_in")
        destination = classify_number(request.to_number if inbound else request.from_number)
        numbers.append(None if destination is None else destination.e164)
    owners = NumberRepository(conn).owners(number for number in numbers if number is not None)
    routed: list[tuple[str, CallRequest] | None] = []
    for request, number in zip(requests, numbers, strict=True):
        owner = owners.get(number) if number is not None else None
        if owner is None:
            routed.append(None)
            continue
        org_id, upn = owner
        user = request.user if request.user is not None else upn
        routed.append((org_id, replace(request, user=user)))
    return routed


class LiveCalls:
    """Writes batches of live-call requests (see the module docstring)."""

    def __init__(
        self,
        catalogue: Catalogue,
        rating: Rating,
        credits: Credits,
        pool_sizes: PoolSizes,
        *,
        slice_seconds: int,
        reservation_ttl: timedelta,
    ):
        self.catalogue = catalogue
        self.rating = rating
        self.credits = credits
        self.pool_sizes = pool_sizes
        self.slice_seconds = slice_seconds
        self.reservation_ttl = reservation_ttl
        self._table: tuple[str, RateTable] | None = None
        self._effective: dict[frozenset[str], frozenset[str]] = {}
        # Active calls as this writer last committed them, so ``usage`` and ``end`` need not
        # read them back. Only ever a starting point: each write is conditional on the stored
        # call still being what it was computed from (see CallRepository.save_live_many).
        self._active: dict[tuple[str, str], CallRecord] = {}
        self._staged: dict[tuple[str, str], CallRecord] = {}
        self.abandoned_batches = 0
        """Batches rolled back (a concurrent change, a failure) and computed again."""

    def committed(self) -> None:
        """The batch is durable: what it wrote becomes the remembered state."""
        for key, record in self._staged.items():
            if record.status == "active":
                self._active[key] = record
            else:
                self._active.pop(key, None)
        self._staged = {}
        if len(self._active) > MAX_REMEMBERED_CALLS:
            self._active.clear()

    def abandoned(self) -> None:
        """The batch was not committed: forget it, and read every call afresh next time."""
        self.abandoned_batches += 1
        self._staged = {}
        self._active.clear()

    def effective(self, licenses: frozenset[str]) -> frozenset[str]:
        """The catalogue's expansion of bundles, remembered: a pure function of the licenses."""
        found = self._effective.get(licenses)
        if found is None:
            if len(self._effective) > 10_000:
                self._effective.clear()
            found = self._effective[licenses] = self.catalogue.effective(licenses)
        return found

    def rates(self, uow: UnitOfWork) -> tuple[str | None, RateTable]:
        """The rate table in force, as this transaction sees it; parsed once per table."""
        active = active_rate_table(uow.conn)
        if active is None:
            return None, RateTable([])  # no table yet: anything that needs a rate is refused
        if self._table is None or self._table[0] != active:
            try:
                self._table = self.rating.table_in(uow.conn)
            except NotFound:
                return None, RateTable([])
        return self._table

    def write(self, uow: UnitOfWork, now: datetime, ops: Sequence[LiveOp]) -> list[Outcome]:
        """Apply ``ops`` inside ``uow`` (not committed here): one outcome per op."""
        self._staged = {}
        table_id, rates = self.rates(uow)
        outcomes: list[Outcome] = [(False, None)] * len(ops)
        routed = self._routed(uow, ops, outcomes)
        by_org: dict[str, list[int]] = {}
        for index, op in enumerate(routed):
            if op is not None:
                by_org.setdefault(op.org_id, []).append(index)
        # Organizations in a fixed order, so two writers can never wait on each other's locks.
        for org_id in sorted(by_org):
            indexes = by_org[org_id]
            try:
                org = _OrgBatch(self, uow, org_id, now, table_id, rates)
            except CommcreditsError as exc:
                for index in indexes:
                    outcomes[index] = (False, exc)
                continue
            org_ops = [op for index in indexes if (op := routed[index]) is not None]
            org.load(org_ops)
            for index, op in zip(indexes, org_ops, strict=True):
                outcomes[index] = org.apply(op)
            org.flush()
        return outcomes

    @staticmethod
    def _routed(
        uow: UnitOfWork, ops: Sequence[LiveOp], outcomes: list[Outcome]
    ) -> list[OrgOp | None]:
        """``ops`` with each :class:`Route` turned into the :class:`Authorize` of the
        organization holding its number (all found in one query), or into None with its
        outcome set when nobody holds it."""
        found: list[OrgOp | None] = []
        routes: list[int] = []
        for index, op in enumerate(ops):
            if isinstance(op, Route):
                routes.append(index)
                found.append(None)
            else:
                found.append(op)
        if not routes:
            return found
        requests = [cast(Route, ops[index]) for index in routes]
        for index, op, owner in zip(
            routes, requests, route(uow.conn, [op.request for op in requests]), strict=True
        ):
            if owner is None:
                outcomes[index] = (False, UnknownNumber(op.request.call_id))
            else:
                found[index] = Authorize(owner[0], owner[1], op.wait_for_recharge)
        return found


class _Pools:
    """One organization's pools of one month, as the batch moves them."""

    def __init__(
        self, month: str, sizes: dict[PoolKey, int], rows: dict[str, tuple[int, int, int]]
    ):
        self.month = month
        self.sizes = sizes
        self.rows = {name: list(row) for name, row in rows.items()}
        self.existing = set(rows)
        self.moves: dict[str, list[int]] = {}
        self._keys = {name: pool_key(name, month) for name in rows}
        self._state: PoolState | None = None

    def state(self) -> PoolState:
        if self._state is None:
            taken = {self._keys[name]: row[0] + row[1] for name, row in self.rows.items()}
            self._state = PoolState.from_usage(self.sizes, taken)
        return self._state

    def move(self, name: str, *, used: int = 0, reserved: int = 0) -> None:
        if name not in self.rows:
            self.rows[name] = [0, 0, 0]
            self._keys[name] = pool_key(name, self.month)
        row = self.rows[name]
        row[0] += used
        row[1] += reserved
        move = self.moves.setdefault(name, [0, 0])
        move[0] += used
        move[1] += reserved
        self._state = None

    def notify(self, name: str, percent: int) -> None:
        self.rows[name][2] = percent
        self.moves.setdefault(name, [0, 0])

    def flush(self, repo: PoolRepository, org_id: str) -> None:
        repo.move_many(
            org_id,
            self.month,
            [
                (name, used, reserved, self.rows[name][2], name in self.existing)
                for name, (used, reserved) in self.moves.items()
            ],
        )


class _OrgBatch:
    """One organization's share of a batch: its locked account and everything it reads."""

    def __init__(
        self,
        live: LiveCalls,
        uow: UnitOfWork,
        org_id: str,
        now: datetime,
        table_id: str | None,
        rates: RateTable,
    ):
        self.live = live
        self.uow = uow
        self.now = now
        self.table_id = table_id
        self.rates = rates
        self.session = AccountSession(uow, org_id, now)  # the lock, then the fresh account
        self.org = self.session.org
        self.calls: dict[str, CallRecord | None] = {}
        self.inserted: dict[str, None] = {}
        self.changed: dict[str, None] = {}
        self.users: dict[str, User | None] = {}
        self.numbers: dict[str, PhoneNumber | None] = {}
        self.pools: dict[str, _Pools] = {}
        self.months: dict[datetime, str] = {}  # most requests of a batch share their moment
        self.spent: dict[tuple[str, datetime], Decimal] = {}
        self.spending: dict[str, list[tuple[datetime, Decimal]]] = {}
        self.loaded: dict[str, CallRecord | None] = {}
        self.dirty = False

    # -- reads ----------------------------------------------------------------------------------

    def load(self, ops: Sequence[OrgOp]) -> None:
        """The calls the batch names: remembered ones as they were committed, the others (new
        call ids included, which may exist already) in one query."""
        ids = dict.fromkeys(
            op.request.call_id if isinstance(op, Authorize) else op.call_id for op in ops
        )
        remembered = self.live._active if self.uow.conn.dialect.supports_sane_multi_rowcount else {}
        missing = []
        for call_id in ids:
            record = remembered.get((self.org.id, call_id))
            if record is None:
                missing.append(call_id)
            self.calls[call_id] = record
        if missing:
            found = CallRepository(self.uow.conn).get_many(self.org.id, missing)
            for call_id in missing:
                self.calls[call_id] = found.get(call_id)
        self.loaded = dict(self.calls)
        # The users of the batch's new calls, in two queries rather than two per user.
        wanted = {
            op.request.user
            for op in ops
            if isinstance(op, Authorize) and op.request.user and op.request.user not in self.users
        }
        if wanted:
            users = UserRepository(self.uow.conn).get_many(self.org.id, wanted)
            for key in wanted:
                self.users[key] = users.get(key)

    def _user(self, upn: str | None) -> User | None:
        if not upn:
            return None
        if upn not in self.users:
            self.users[upn] = UserRepository(self.uow.conn).get(self.org.id, upn)
        return self.users[upn]

    def _number(self, number: str) -> PhoneNumber | None:
        if number not in self.numbers:
            self.numbers[number] = NumberRepository(self.uow.conn).get(self.org.id, number)
        return self.numbers[number]

    def _pools(self, at: datetime) -> _Pools:
        month = self.months.get(at)
        if month is None:
            month = self.months[at] = month_of(at)
        pools = self.pools.get(month)
        if pools is None:
            sizes = self.live.pool_sizes(self.uow, self.org.id, at)
            rows = PoolRepository(self.uow.conn).rows(self.org.id, month)
            pools = self.pools[month] = _Pools(month, sizes, rows)
        return pools

    def _spent(self, user_id: str, since: datetime) -> Decimal:
        """What the user's calls since ``since`` cost or hold, this batch's changes included."""
        key = (user_id, since)
        if key not in self.spent:
            self.spent[key] = CallRepository(self.uow.conn).spent_since(self.org.id, user_id, since)
        changes = self.spending.get(user_id, ())
        return self.spent[key] + sum((amount for at, amount in changes if at >= since), ZERO)

    def _facts(self, request: CallRequest, at: datetime) -> tuple[CallFacts, User | None]:
        user = self._user(request.user)
        org = self.org
        called = self._number(request.to_number) if request.call_type.endswith("_in") else None
        spent = ZERO
        if user is not None and user.spend_limit is not None:
            spent = self._spent(user.id, month_start(at))
        facts = CallFacts(
            call_type=request.call_type,
            from_number=request.from_number,
            to_number=request.to_number,
            user_id=user.id if user else None,
            licenses=self.live.effective(user.licenses) if user else frozenset(),
            usage_location=user.usage_location if user else None,
            pstn_policy=(user.pstn_policy if user else None) or org.pstn_policy,
            dialout_policy=(user.dialout_policy if user else None) or org.dialout_policy,
            spend_limit=user.spend_limit if user else None,
            spent_this_month=spent,
            toll_free=called is not None and called.kind in TOLL_FREE_KINDS,
        )
        return facts, user

    def _org_facts(self) -> OrgFacts:
        org = self.org
        return OrgFacts(org.billing, org.overage_enabled, org.currency, self.session.available)

    def _decide(self, facts: CallFacts, at: datetime) -> charging.Decision:
        return charging.decide(
            facts,
            self._org_facts(),
            self._pools(at).state(),
            self.rates,
            at,
            self.live.slice_seconds,
            catalogue=self.live.catalogue,
        )

    def _call(self, call_id: str) -> CallRecord:
        record = self.calls.get(call_id)
        if record is None:
            raise NotFound(f"no call {call_id!r}", code="call_not_found")
        return record

    # -- the requests ---------------------------------------------------------------------------

    def apply(self, op: OrgOp) -> Outcome:
        self.dirty = False
        try:
            if isinstance(op, Authorize):
                return True, self._authorize(op)
            if isinstance(op, Usage):
                return True, self._usage(op)
            return True, self._end(op)
        except CommcreditsError as exc:
            if self.dirty:
                raise  # refused half-way: the batch is written again one request at a time
            return False, exc

    def _authorize(self, op: Authorize) -> tuple[CallRecord | None, CreditOrder | None]:
        request = op.request
        existing = self.calls.get(request.call_id)
        if existing is not None:
            return existing, None  # a repeated call id answers the first decision again
        start = request.start_time or self.now
        facts, user = self._facts(request, start)
        decision = self._decide(facts, start)
        if (
            op.wait_for_recharge
            and decision.reason == "no_credits"
            and OrderRepository(self.uow.conn).has_pending_recharge(self.org.id)
        ):
            return None, None  # decided again once the recharge has settled
        record = new_record(
            self.org,
            request,
            user,
            start,
            decision,
            self.table_id,
            self.live.catalogue,
            source="live",
        )
        record = self._reserve(record, decision)
        self._store(None, record, new=True)
        order = None
        if record.reserved:
            order = self.live.credits.maybe_start_recharge(self.uow, self.session)
        return record, order

    def _usage(self, op: Usage) -> tuple[int, CreditOrder | None]:
        before = self._call(op.call_id)
        if before.status != "active":
            return 0, None
        record = evolve(before, used_seconds=max(before.used_seconds, op.used_seconds))
        remaining = record.granted_seconds - record.used_seconds
        order = None
        if remaining < self.live.slice_seconds // 2:
            request = CallRequest(
                record.call_id,
                record.call_type,
                record.upn,
                record.from_number,
                record.to_number,
                record.conference_id,
                record.start_time,
            )
            facts, _ = self._facts(request, record.start_time)
            # What this call already holds is not spent yet: it does not count against it.
            facts = replace(
                facts, spent_this_month=max(facts.spent_this_month - record.reserved, ZERO)
            )
            decision = self._decide(facts, record.start_time)
            record = self._reserve(record, decision)
            if decision.allowed:
                order = self.live.credits.maybe_start_recharge(self.uow, self.session)
        else:
            record = evolve(record, reservation_expires_at=self.now + self.live.reservation_ttl)
        self._store(before, record)
        return max(record.granted_seconds - record.used_seconds, 0), order

    def _end(self, op: End) -> tuple[CallRecord, CreditOrder | None]:
        before = self._call(op.call_id)
        if before.status != "active":
            return before, None  # ended (or refused) already: never charged twice
        end_time = op.end_time or before.start_time + timedelta(seconds=op.duration)
        record = self._settle(before, op.duration, end_time)
        self._store(before, record)
        order = self.live.credits.after_debit(self.uow, self.session)
        return record, order

    # -- money and minutes, in memory -----------------------------------------------------------

    def _reserve(self, record: CallRecord, decision: charging.Decision) -> CallRecord:
        """Set aside what the granted slice may cost: pool minutes, or money."""
        if not decision.allowed:
            return record
        self.dirty = True
        granted = decision.granted_seconds
        minutes = 0
        money = ZERO
        if decision.funding == "pool" and decision.pool is not None:
            minutes = -(-granted // 60)
            self._pools(record.start_time).move(pool_name(decision.pool), reserved=minutes)
        elif decision.funding == "credits" and decision.rate is not None:
            money = min(charging.slice_cost(decision.rate, granted), self.session.available)
            self.session.reserve(money)
        return evolve(
            record,
            granted_seconds=record.granted_seconds + granted,
            reserved_pool_minutes=record.reserved_pool_minutes + minutes,
            reserved=record.reserved + money,
            reservation_expires_at=self.now + self.live.reservation_ttl,
        )

    def _settle(self, record: CallRecord, duration: int, end_time: datetime) -> CallRecord:
        self.dirty = True
        session = self.session
        rate = rate_of(record)
        pool_minutes = 0
        charged = ZERO
        fee = ZERO
        if record.funding == "pool" and record.pool:
            pools = self._pools(record.start_time)
            key = pool_key(record.pool, pools.month)
            # The pool holds what this call reserved, plus whatever else is still free in it.
            left = pools.state().minutes_left(key) + record.reserved_pool_minutes
            if rate is not None:
                split = charging.split_charge(duration, left, rate)
                pool_minutes, charged = split.pool_minutes, split.charge.charge
                fee = rate.connection_fee if split.charged_seconds else ZERO
            else:
                pool_minutes = min(-(-duration // 60), left)
            pools.move(record.pool, used=pool_minutes, reserved=-record.reserved_pool_minutes)
            if key.kind == "dialout":
                self._dialout_notices(pools, key)
        elif record.funding in ("credits", "overage") and rate is not None:
            result = price(rate, duration)
            charged, fee = result.charge, (rate.connection_fee if result.units else ZERO)
        elif record.reserved_pool_minutes and record.pool:
            self._pools(record.start_time).move(record.pool, reserved=-record.reserved_pool_minutes)
        session.release(record.reserved)
        if charged > 0 and record.funding != "overage":
            take = min(charged, session.available)
            if take > 0:
                session.debit(
                    take, kind="usage", reference=record.call_id, description=record.call_type
                )
            # The balance never goes below zero: a call that ran past what it was granted
            # is charged what was there, and its record says what was actually charged.
            charged = take
        capability = record.capability
        if charged > 0 and record.funding == "pool":
            capability = "MCOPSTNPP"  # R-50a: the license that paid the charge
        return evolve(
            record,
            status="ended",
            capability=capability,
            pool_minutes=pool_minutes,
            reserved_pool_minutes=0,
            charge=charged,
            connection_fee_charged=fee,
            reserved=ZERO,
            used_seconds=duration,
            duration_seconds=duration,
            end_time=end_time,
            reservation_expires_at=None,
        )

    def _dialout_notices(self, pools: _Pools, key: PoolKey) -> None:
        """R-35: tell the billing admins at 80% and at 100% of the dial-out pool, once each."""
        name = pool_name(key)
        size = self.live.pool_sizes(self.uow, self.org.id, self.now).get(key, 0)
        if size <= 0:
            return
        used, _, told = pools.rows[name]
        percent = used * 100 // size
        for threshold in (80, 100):
            if percent >= threshold > told:
                notices.dialout_pool(
                    self.uow, self.org, threshold, used, size, pools.month, self.now
                )
                told = threshold
        pools.notify(name, told)

    def _store(self, before: CallRecord | None, record: CallRecord, *, new: bool = False) -> None:
        self.dirty = True
        self.calls[record.call_id] = record
        if new:
            self.inserted[record.call_id] = None
        elif record.call_id not in self.inserted:
            self.changed[record.call_id] = None
        if record.user_id is not None:
            held = record.charge + record.reserved
            if before is not None:
                held -= before.charge + before.reserved
            if held:
                self.spending.setdefault(record.user_id, []).append((record.start_time, held))

    # -- writes ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what the batch did: calls, pools, then lots, entries and the account."""
        calls = CallRepository(self.uow.conn)
        calls.add_many([self._stored(call_id) for call_id in self.inserted])
        changes = [(self._loaded(call_id), self._stored(call_id)) for call_id in self.changed]
        if calls.save_live_many(changes) != len(changes):
            raise TransientConflict("a call was changed by another writer meanwhile")
        repo = PoolRepository(self.uow.conn)
        for pools in self.pools.values():
            if pools.moves:
                pools.flush(repo, self.org.id)
        self.session.close()
        for call_id in (*self.inserted, *self.changed):
            self.live._staged[(self.org.id, call_id)] = self._stored(call_id)

    def _loaded(self, call_id: str) -> CallRecord:
        record = self.loaded[call_id]
        assert record is not None
        return record

    def _stored(self, call_id: str) -> CallRecord:
        record = self.calls[call_id]
        assert record is not None
        return record
