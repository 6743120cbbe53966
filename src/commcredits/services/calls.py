"""Use cases of usage: real-time calls, finished-call batches (CDRs) and messages.

Every call is decided by the pure :func:`commcredits.domain.charging.decide`, funded from the
right source, charged once and recorded. A live call holds a *reservation* while it runs:
pool minutes, or money set aside on the credit account, so concurrent calls can never together
spend more than the balance (R-28). ``end`` rates the whole call once, releases what was not
used and writes the ``usage`` ledger entry that names the call. A switch that never ends its
calls leaves reservations that the ``call_reservations`` job releases after a while, charging
only the seconds the switch had confirmed.

Live call control (authorize, usage, end) is applied in batches by one writer per process
(:mod:`commcredits.services.calls_live` through :mod:`commcredits.services.group_commit`):
many requests, one durable commit, every caller answered only once its request is on disk.
``authorize_async``, ``usage_async`` and ``end_async`` queue a request and return a future at
once, so one caller (a switch with hundreds of calls on one connection) can keep many calls in
flight; each future is answered exactly as the blocking method would answer. ``authorize_to``,
``usage_to`` and ``end_to`` answer the caller's own reply instead of a future (the HTTP
server's, see :mod:`commcredits.api.replies`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from commcredits.adapters.clock import Clock
from commcredits.domain import charging
from commcredits.domain.charging import CallFacts, OrgFacts, SmsFacts
from commcredits.domain.credits import CreditOrder
from commcredits.domain.directory import TOLL_FREE_KINDS, User
from commcredits.domain.errors import CommcreditsError, InvalidRequest, NotFound, RuleViolation
from commcredits.domain.licensing import Catalogue
from commcredits.domain.pools import PoolKey, PoolMember, PoolState, month_of, pool_sizes
from commcredits.domain.rating import Rate, RateTable, classify, price
from commcredits.domain.usage import LATEST_START, CallRecord, SmsRecord, check_seconds
from commcredits.services import notices
from commcredits.services.account import AccountSession
from commcredits.services.calls_live import (
    Authorize,
    End,
    LiveCalls,
    LiveOp,
    Route,
    Usage,
)
from commcredits.services.calls_model import (
    CallRequest,
    CdrRecord,
    month_start,
    new_record,
    pool_key,
    pool_name,
    rate_of,
)
from commcredits.services.credits import Credits
from commcredits.services.group_commit import GroupCommitter, Reply
from commcredits.services.orgs import get_org
from commcredits.services.rating import Rating
from commcredits.store.database import Store, UnitOfWork, retrying
from commcredits.store.directory import NumberRepository, UserRepository
from commcredits.store.usage import CallRepository, PoolRepository, SmsRepository

ZERO = Decimal(0)
RECHARGE_POLL_SECONDS = 0.05
"""How often a call waiting for a recharge in flight is decided again."""
POOL_CACHE_SECONDS = 10.0
"""Pool sizes are recomputed from the licenses at most this often per organization."""


@dataclass(frozen=True, slots=True)
class CdrResult:
    call_id: str
    status: str  # charged | duplicate | rejected
    charge: Decimal | None = None
    error: str | None = None
    record: CallRecord | None = None


@dataclass(frozen=True, slots=True)
class SmsRequest:
    sms_id: str
    user: str | None
    direction: str
    from_number: str
    to_number: str
    units: int
    sent_at: datetime | None = None


__all__ = ["CallRequest", "Calls", "CdrRecord", "CdrResult", "SmsRequest", "pool_name"]


class Calls:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        catalogue: Catalogue,
        rating: Rating,
        credits: Credits,
        *,
        slice_seconds: int = 300,
        reservation_ttl: timedelta = timedelta(minutes=15),
        recharge_wait_seconds: float = 2.0,
    ):
        self.store = store
        self.clock = clock
        self.catalogue = catalogue
        self.rating = rating
        self.credits = credits
        self.slice_seconds = slice_seconds
        self.reservation_ttl = reservation_ttl
        self.recharge_wait_seconds = recharge_wait_seconds
        self._sizes: dict[tuple[str, str], tuple[float, dict[PoolKey, int]]] = {}
        self._sizes_lock = threading.Lock()
        # Live call control goes through one writer: many requests, one durable commit.
        self.live = LiveCalls(
            catalogue,
            rating,
            credits,
            self._pool_sizes,
            slice_seconds=slice_seconds,
            reservation_ttl=reservation_ttl,
        )
        self.committer: GroupCommitter[LiveOp] = GroupCommitter(
            store,
            clock,
            self.live.write,
            on_commit=self.live.committed,
            on_abandon=self.live.abandoned,
        )
        # What an answered future still has to do that may block (pay a recharge, wait for
        # one): never on the writer thread, which answers every other caller.
        self._followups: ThreadPoolExecutor | None = None
        self._followups_lock = threading.Lock()

    # -- shared pieces ------------------------------------------------------------------------

    def _rates(self) -> tuple[str | None, RateTable]:
        try:
            return self.rating.table()
        except NotFound:
            return None, RateTable([])  # no table yet: anything that needs a rate is refused

    def _pool_sizes(self, uow: UnitOfWork, org_id: str, at: datetime) -> dict[PoolKey, int]:
        """Sizes from the licenses held now (our choice, R-31), cached a few seconds."""
        month = month_of(at)
        now = time.monotonic()
        with self._sizes_lock:
            cached = self._sizes.get((org_id, month))
        if cached is not None and cached[0] > now:
            return cached[1]
        members = [
            PoolMember(u.id, u.licenses, u.usage_location)
            for u in UserRepository(uow.conn).all(org_id)
        ]
        sizes = pool_sizes(members, at, self.catalogue)
        with self._sizes_lock:
            self._sizes[(org_id, month)] = (now + POOL_CACHE_SECONDS, sizes)
        return sizes

    def _pools(self, uow: UnitOfWork, org_id: str, at: datetime) -> PoolState:
        month = month_of(at)
        taken = {
            pool_key(name, month): used + reserved
            for name, (used, reserved) in PoolRepository(uow.conn).usage(org_id, month).items()
        }
        return PoolState.from_usage(self._pool_sizes(uow, org_id, at), taken)

    def _user(self, uow: UnitOfWork, org_id: str, upn: str | None) -> User | None:
        if not upn:
            return None
        return UserRepository(uow.conn).get(org_id, upn)

    def _facts(
        self,
        uow: UnitOfWork,
        session: AccountSession,
        request: CallRequest,
        at: datetime,
        users: dict[str, User | None] | None = None,
    ) -> tuple[CallFacts, User | None]:
        """What the decision needs to know; ``users`` caches look-ups within one batch."""
        org = session.org
        if users is None:
            user = self._user(uow, org.id, request.user)
        else:
            key = request.user or ""
            if key not in users:
                users[key] = self._user(uow, org.id, request.user)
            user = users[key]
        numbers = NumberRepository(uow.conn)
        org_number = request.to_number if request.call_type.endswith("_in") else None
        called = numbers.get(org.id, org_number) if org_number else None
        spent = ZERO
        if user is not None and user.spend_limit is not None:
            # Only a limit needs the month's spending: no query on the hot path otherwise.
            spent = CallRepository(uow.conn).spent_since(org.id, user.id, month_start(at))
        facts = CallFacts(
            call_type=request.call_type,
            from_number=request.from_number,
            to_number=request.to_number,
            user_id=user.id if user else None,
            licenses=self.catalogue.effective(user.licenses) if user else frozenset(),
            usage_location=user.usage_location if user else None,
            pstn_policy=(user.pstn_policy if user else None) or org.pstn_policy,
            dialout_policy=(user.dialout_policy if user else None) or org.dialout_policy,
            spend_limit=user.spend_limit if user else None,
            spent_this_month=spent,
            toll_free=called is not None and called.kind in TOLL_FREE_KINDS,
        )
        return facts, user

    @staticmethod
    def _org_facts(session: AccountSession) -> OrgFacts:
        org = session.org
        return OrgFacts(org.billing, org.overage_enabled, org.currency, session.available)

    # -- live calls ---------------------------------------------------------------------------

    def authorize(self, org_id: str, request: CallRequest) -> CallRecord:
        """Decide a new call and reserve its first slice. Repeating a call id answers the
        first decision again."""
        deadline = time.monotonic() + self.recharge_wait_seconds
        while True:
            record, order = self._authorize(
                org_id, request, wait_for_recharge=time.monotonic() < deadline
            )
            self.credits.pay_if_started(order)
            if record is not None:
                return record
            # A recharge is on its way and may cover this call (our choice): wait briefly
            # for it rather than refuse a call the balance is about to pay for.
            time.sleep(RECHARGE_POLL_SECONDS)

    def _authorize(
        self, org_id: str, request: CallRequest, *, wait_for_recharge: bool = False
    ) -> tuple[CallRecord | None, CreditOrder | None]:
        self._check_call_id(request.call_id)
        answer: tuple[CallRecord | None, CreditOrder | None] = self.committer.run(
            Authorize(org_id, request, wait_for_recharge)
        )
        return answer

    def _new_record(
        self,
        session: AccountSession,
        request: CallRequest | CdrRecord,
        user: User | None,
        start: datetime,
        decision: charging.Decision,
        table_id: str | None,
        *,
        source: str,
    ) -> CallRecord:
        return new_record(
            session.org, request, user, start, decision, table_id, self.catalogue, source=source
        )

    def _reserve(
        self,
        uow: UnitOfWork,
        session: AccountSession,
        record: CallRecord,
        decision: charging.Decision,
        start: datetime,
        now: datetime,
    ) -> CallRecord:
        """Set aside what the granted slice may cost: pool minutes, or money."""
        if not decision.allowed:
            return record
        granted = decision.granted_seconds
        minutes = 0
        money = ZERO
        if decision.funding == "pool" and decision.pool is not None:
            minutes = -(-granted // 60)
            PoolRepository(uow.conn).add(
                session.org.id, month_of(start), pool_name(decision.pool), reserved=minutes
            )
        elif decision.funding == "credits" and decision.rate is not None:
            money = min(charging.slice_cost(decision.rate, granted), session.available)
            session.reserve(money)
        return replace(
            record,
            granted_seconds=record.granted_seconds + granted,
            reserved_pool_minutes=record.reserved_pool_minutes + minutes,
            reserved=record.reserved + money,
            reservation_expires_at=now + self.reservation_ttl,
        )

    def usage(self, org_id: str, call_id: str, used_seconds: int) -> int:
        """The switch reports how long the call has lasted and asks for the next slice.
        Answers the seconds granted beyond ``used_seconds``: 0 means hang up."""
        granted, order = self._usage(org_id, call_id, used_seconds)
        self.credits.pay_if_started(order)
        return granted

    def _usage(
        self, org_id: str, call_id: str, used_seconds: int
    ) -> tuple[int, CreditOrder | None]:
        if error := check_seconds(used_seconds, "used_seconds"):
            raise error
        answer: tuple[int, CreditOrder | None] = self.committer.run(
            Usage(org_id, call_id, used_seconds)
        )
        return answer

    @staticmethod
    def _call(calls: CallRepository, org_id: str, call_id: str) -> CallRecord:
        record = calls.get(org_id, call_id)
        if record is None:
            raise NotFound(f"no call {call_id!r}", code="call_not_found")
        return record

    def end(
        self, org_id: str, call_id: str, duration_seconds: int, end_time: datetime | None = None
    ) -> CallRecord:
        """The call is over: rate it once, draw its pool minutes, charge it, release the rest."""
        record, order = self._end(org_id, call_id, duration_seconds, end_time)
        self.credits.pay_if_started(order)
        return record

    def _end(
        self, org_id: str, call_id: str, duration: int, end_time: datetime | None
    ) -> tuple[CallRecord, CreditOrder | None]:
        if error := check_seconds(duration, "duration_seconds"):
            raise error
        answer: tuple[CallRecord, CreditOrder | None] = self.committer.run(
            End(org_id, call_id, duration, end_time)
        )
        return answer

    # -- live calls, many in flight -------------------------------------------------------------

    def authorize_async(self, org_id: str, request: CallRequest) -> Future[CallRecord]:
        """:meth:`authorize` without waiting: the future holds the call record (or the error
        that refused the request) once the decision is durable.

        Like :meth:`authorize`, a call that only a recharge in flight could pay is decided
        again shortly rather than refused; requests for that call submitted meanwhile find no
        call yet (``call_not_found``), so a caller that may meet this waits for the future
        before it reports usage or the end."""
        return _future(lambda reply: self.authorize_to(org_id, request, reply))

    def usage_async(self, org_id: str, call_id: str, used_seconds: int) -> Future[int]:
        """:meth:`usage` without waiting: the future holds the seconds granted."""
        return _future(lambda reply: self.usage_to(org_id, call_id, used_seconds, reply))

    def end_async(
        self, org_id: str, call_id: str, duration_seconds: int, end_time: datetime | None = None
    ) -> Future[CallRecord]:
        """:meth:`end` without waiting: the future holds the ended call record."""
        return _future(
            lambda reply: self.end_to(org_id, call_id, duration_seconds, end_time, reply)
        )

    # The same three with the caller's own reply (see group_commit.Reply): what the future of
    # the methods above would hold is set on it instead, from the writer thread (or, after a
    # recharge the request started, from a follow-up thread once it is paid).

    def authorize_to(self, org_id: str, request: CallRequest, reply: Reply) -> None:
        _Decided(self, org_id, request, reply, time.monotonic() + self.recharge_wait_seconds).ask()

    def authorize_routed_to(self, request: CallRequest, reply: Reply) -> None:
        """:meth:`authorize_to` for whichever organization holds the call's number (see
        :func:`~commcredits.services.calls_live.route`), found in the writer's batch; the
        record names the organization. A number nobody holds answers
        :class:`~commcredits.services.calls_model.UnknownNumber`."""
        _Decided(self, None, request, reply, time.monotonic() + self.recharge_wait_seconds).ask()

    def usage_to(self, org_id: str, call_id: str, used_seconds: int, reply: Reply) -> None:
        if error := check_seconds(used_seconds, "used_seconds"):
            reply.set_exception(error)
            return
        self.committer.send(Usage(org_id, call_id, used_seconds), _Settled(self, reply))

    def end_to(
        self,
        org_id: str,
        call_id: str,
        duration_seconds: int,
        end_time: datetime | None,
        reply: Reply,
    ) -> None:
        if error := check_seconds(duration_seconds, "duration_seconds"):
            reply.set_exception(error)
            return
        self.committer.send(End(org_id, call_id, duration_seconds, end_time), _Settled(self, reply))

    def _settle_reply(self, reply: Reply, value: Any, order: CreditOrder | None) -> None:
        """Answer ``value``, after paying the recharge the request started (if any), as the
        blocking methods do."""
        if order is None:
            reply.set_result(value)
            return

        def pay() -> None:
            try:
                self.credits.pay_if_started(order)
            except BaseException as exc:
                reply.set_exception(exc)
            else:
                reply.set_result(value)

        self._later(pay)

    def close(self) -> None:
        """Stop the writer (after the batch in hand) and the follow-up threads."""
        self.committer.close()
        with self._followups_lock:
            executor, self._followups = self._followups, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _later(self, work: Callable[[], Any]) -> None:
        with self._followups_lock:
            if self._followups is None:
                self._followups = ThreadPoolExecutor(4, thread_name_prefix="commcredits-calls")
            executor = self._followups
        executor.submit(work)

    @staticmethod
    def _check_call_id(call_id: str) -> None:
        if not call_id or len(call_id) > 255:
            raise InvalidRequest(
                "call_id has 1 to 255 characters", code="invalid_call_id", field="call_id"
            )

    def _settle(
        self,
        uow: UnitOfWork,
        session: AccountSession,
        record: CallRecord,
        duration: int,
        end_time: datetime,
    ) -> CallRecord:
        org_id = session.org.id
        month = month_of(record.start_time)
        pools = PoolRepository(uow.conn)
        rate = self._rate_of(record)
        pool_minutes = 0
        charged = ZERO
        fee = ZERO
        if record.funding == "pool" and record.pool:
            key = pool_key(record.pool, month)
            # The pool holds what this call reserved, plus whatever else is still free in it.
            left = (
                self._pools(uow, org_id, record.start_time).minutes_left(key)
                + record.reserved_pool_minutes
            )
            if rate is not None:
                split = charging.split_charge(duration, left, rate)
                pool_minutes, charged = split.pool_minutes, split.charge.charge
                fee = rate.connection_fee if split.charged_seconds else ZERO
            else:
                pool_minutes = min(-(-duration // 60), left)
            pools.add(
                org_id,
                month,
                record.pool,
                used=pool_minutes,
                reserved=-record.reserved_pool_minutes,
            )
            if key.kind == "dialout":
                self._dialout_notices(uow, session, key, month)
        elif record.funding in ("credits", "overage") and rate is not None:
            result = price(rate, duration)
            charged, fee = result.charge, (rate.connection_fee if result.units else ZERO)
        elif record.reserved_pool_minutes and record.pool:
            pools.add(org_id, month, record.pool, reserved=-record.reserved_pool_minutes)
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
        return replace(
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

    def _dialout_notices(
        self, uow: UnitOfWork, session: AccountSession, key: PoolKey, month: str
    ) -> None:
        """R-35: tell the billing admins at 80% and at 100% of the dial-out pool, once each."""
        pools = PoolRepository(uow.conn)
        name = pool_name(key)
        size = self._pool_sizes(uow, session.org.id, session.now).get(key, 0)
        used, _ = pools.usage(session.org.id, month).get(name, (0, 0))
        if size <= 0:
            return
        percent = used * 100 // size
        told = pools.notified(session.org.id, month, name)
        for threshold in (80, 100):
            if percent >= threshold > told:
                notices.dialout_pool(uow, session.org, threshold, used, size, month, session.now)
                told = threshold
        pools.mark_notified(session.org.id, month, name, told)

    @staticmethod
    def _rate_of(record: CallRecord) -> Rate | None:
        return rate_of(record)

    def org_of_call(self, call_id: str) -> str | None:
        """The organization of a call id, for the edge's follow-up requests. Call ids are the
        switch's own (SIP Call-IDs): unique enough across organizations; the oldest wins."""
        with self.store.unit_of_work(read_only=True) as uow:
            return CallRepository(uow.conn).org_of(call_id)

    def get(self, org_id: str, call_id: str) -> CallRecord:
        with self.store.unit_of_work(read_only=True) as uow:
            return self._call(CallRepository(uow.conn), org_id, call_id)

    # -- finished calls -------------------------------------------------------------------------

    def import_cdrs(self, org_id: str, records: Sequence[CdrRecord]) -> list[CdrResult]:
        """Rate and charge finished calls in one go, in start-time order; a call id is charged
        at most once ever, and a bad record is rejected while the good ones go through."""
        # Imported here: cdr_batch builds on this module's CdrRecord and CdrResult.
        from commcredits.services.cdr_batch import CdrBatches

        batches = CdrBatches(self.store, self.clock, self.catalogue, self.rating, self.credits)
        return batches.import_cdrs(org_id, records)

    @retrying()
    def _import_cdrs(
        self, org_id: str, records: Sequence[CdrRecord]
    ) -> tuple[list[CdrResult], CreditOrder | None]:
        now = self.clock.now()
        table_id, rates = self._rates()
        results: list[CdrResult] = []
        with self.store.unit_of_work() as uow:
            session = AccountSession(uow, org_id, now)
            calls = CallRepository(uow.conn)
            seen = calls.existing_ids(org_id, [r.call_id for r in records])
            answers: dict[int, CdrResult] = {}
            users: dict[str, User | None] = {}
            # Charged in start-time order; answered in the order the records came.
            for index, cdr in sorted(enumerate(records), key=lambda pair: pair[1].start_time):
                if cdr.call_id in seen:
                    answers[index] = CdrResult(cdr.call_id, "duplicate")
                    continue
                seen.add(cdr.call_id)
                try:
                    with uow.conn.begin_nested():
                        answers[index] = self._one_cdr(
                            uow, session, cdr, rates, table_id, now, users
                        )
                except CommcreditsError as exc:
                    answers[index] = CdrResult(cdr.call_id, "rejected", error=exc.code)
            results = [answers[index] for index in range(len(records))]
            order = self.credits.after_debit(uow, session)
            session.close()
            uow.commit()
        return results, order

    def _one_cdr(
        self,
        uow: UnitOfWork,
        session: AccountSession,
        cdr: CdrRecord,
        rates: RateTable,
        table_id: str | None,
        now: datetime,
        users: dict[str, User | None],
    ) -> CdrResult:
        if error := check_seconds(cdr.duration_seconds, "duration_seconds"):
            raise error
        if cdr.start_time > LATEST_START:
            raise InvalidRequest("start_time is past the last date kept", field="start_time")
        request = CallRequest(
            cdr.call_id,
            cdr.call_type,
            cdr.user,
            cdr.from_number,
            cdr.to_number,
            cdr.conference_id,
            cdr.start_time,
        )
        facts, user = self._facts(uow, session, request, cdr.start_time, users)
        decision = charging.decide(
            facts,
            self._org_facts(session),
            self._pools(uow, session.org.id, cdr.start_time),
            rates,
            cdr.start_time,
            max(cdr.duration_seconds, 1),
            catalogue=self.catalogue,
        )
        record = self._new_record(
            session, cdr, user, cdr.start_time, decision, table_id, source="cdr"
        )
        if not decision.allowed:
            # Not kept: once the cause is fixed (a license, funds), the record can be sent again.
            return CdrResult(cdr.call_id, "rejected", error=decision.reason, record=record)
        record = self._reserve(uow, session, record, decision, cdr.start_time, now)
        end_time = cdr.start_time + timedelta(seconds=cdr.duration_seconds)
        record = self._settle(uow, session, record, cdr.duration_seconds, end_time)
        CallRepository(uow.conn).add(record)
        return CdrResult(cdr.call_id, "charged", charge=record.charge, record=record)

    # -- reservations of calls nobody ended ------------------------------------------------------

    def release_expired(self) -> int:
        """End calls whose switch went quiet: charge the seconds it had confirmed, release the
        rest of the reservation."""
        now = self.clock.now()
        with self.store.unit_of_work(read_only=True) as uow:
            due = CallRepository(uow.conn).expired_reservations(now)
        for org_id, call_id in due:
            record = self.get(org_id, call_id)
            self.end(org_id, call_id, record.used_seconds)
        return len(due)

    def next_expiry(self) -> datetime | None:
        with self.store.unit_of_work(read_only=True) as uow:
            return CallRepository(uow.conn).next_reservation_expiry()

    # -- messages -----------------------------------------------------------------------------

    def sms(self, org_id: str, request: SmsRequest) -> SmsRecord:
        record, order = self._sms(org_id, request)
        self.credits.pay_if_started(order)
        return record

    @retrying()
    def _sms(self, org_id: str, request: SmsRequest) -> tuple[SmsRecord, CreditOrder | None]:
        if request.direction not in ("outbound", "inbound"):
            raise InvalidRequest(
                "direction is outbound or inbound", code="invalid_value", field="direction"
            )
        now = self.clock.now()
        at = request.sent_at or now
        _, rates = self._rates()
        with self.store.unit_of_work() as uow:
            session = AccountSession(uow, org_id, now)
            messages = SmsRepository(uow.conn)
            existing = messages.get(org_id, request.sms_id)
            if existing is not None:
                return existing, None
            user = self._user(uow, org_id, request.user)
            decision = charging.sms_decision(
                SmsFacts(
                    direction=request.direction,  # type: ignore[arg-type]
                    from_number=request.from_number,
                    to_number=request.to_number,
                    units=request.units,
                    user_id=user.id if user else None,
                    licenses=self.catalogue.effective(user.licenses) if user else frozenset(),
                ),
                self._org_facts(session),
                self._pools(uow, org_id, at),
                rates,
                at,
                catalogue=self.catalogue,
            )
            if decision.allowed and decision.pool is not None and decision.pool_units:
                PoolRepository(uow.conn).add(
                    org_id, month_of(at), pool_name(decision.pool), used=decision.pool_units
                )
            if decision.allowed and decision.charge > 0 and decision.funding == "credits":
                session.debit(
                    decision.charge, kind="usage", reference=request.sms_id, description="sms"
                )

            def country(number: str) -> str | None:
                try:
                    return classify(number).country
                except RuleViolation:
                    return None

            record = SmsRecord(
                org_id=org_id,
                sms_id=request.sms_id,
                user_id=user.id if user else None,
                upn=user.upn if user else None,
                display_name=user.display_name if user else None,
                direction=request.direction,  # type: ignore[arg-type]
                from_number=request.from_number,
                to_number=request.to_number,
                units=request.units,
                decision=decision.decision,
                reason=decision.reason,
                funding=decision.funding,
                capability=decision.capability,
                pool=pool_name(decision.pool) if decision.pool else None,
                pool_units=decision.pool_units,
                charge=decision.charge if decision.allowed else ZERO,
                currency=session.org.currency,
                from_country=country(request.from_number),
                to_country=country(request.to_number),
                sent_at=at,
            )
            messages.add(record)
            order = self.credits.after_debit(uow, session)
            session.close()
            uow.commit()
        return record, order

    # -- pools --------------------------------------------------------------------------------

    def pools(self, org_id: str, month: str | None = None) -> list[tuple[PoolKey, int, int]]:
        """Each pool of the month: (key, total, used), R-54."""
        now = self.clock.now()
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
            at = now
            if month is not None:
                try:
                    at = datetime.strptime(month + "-01", "%Y-%m-%d").replace(tzinfo=now.tzinfo)
                except ValueError:
                    raise InvalidRequest("month is YYYY-MM", field="month") from None
            key_month = month_of(at)
            sizes = self._pool_sizes(uow, org_id, at)
            used = {
                pool_key(name, key_month): u
                for name, (u, _) in PoolRepository(uow.conn).usage(org_id, key_month).items()
            }
        keys = sorted(set(sizes) | set(used), key=pool_name)
        return [(key, sizes.get(key, 0), used.get(key, 0)) for key in keys]


def _future(send: Callable[[Reply], None]) -> Future[Any]:
    """A running future that ``send`` answers."""
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()
    send(future)
    return future


class _Settled:
    """The writer's ``(value, order)`` passed on to the caller's reply as ``value``, once the
    recharge the request started (if any) is paid."""

    __slots__ = ("calls", "reply")

    def __init__(self, calls: Calls, reply: Reply):
        self.calls = calls
        self.reply = reply

    def set_result(self, outcome: tuple[Any, CreditOrder | None]) -> None:
        value, order = outcome
        self.calls._settle_reply(self.reply, value, order)

    def set_exception(self, exception: BaseException) -> None:
        self.reply.set_exception(exception)


class _Decided:
    """One authorization in flight: asks the writer, and asks again shortly while only a
    recharge on its way could pay for the call (see :meth:`Calls.authorize`). Without an
    organization, the writer finds it from the call's number."""

    __slots__ = ("calls", "deadline", "org_id", "reply", "request")

    def __init__(
        self,
        calls: Calls,
        org_id: str | None,
        request: CallRequest,
        reply: Reply,
        deadline: float,
    ):
        self.calls = calls
        self.org_id = org_id
        self.request = request
        self.reply = reply
        self.deadline = deadline

    def ask(self) -> None:
        try:
            self.calls._check_call_id(self.request.call_id)
            wait = time.monotonic() < self.deadline
            op: LiveOp = (
                Route(self.request, wait)
                if self.org_id is None
                else Authorize(self.org_id, self.request, wait)
            )
            self.calls.committer.send(op, self)
        except BaseException as exc:
            self.reply.set_exception(exc)

    def set_result(self, outcome: tuple[CallRecord | None, CreditOrder | None]) -> None:
        record, order = outcome
        if record is None:
            # A recharge is on its way (see authorize): decide again shortly.
            self.calls._later(self._ask_again)
        else:
            self.calls._settle_reply(self.reply, record, order)

    def set_exception(self, exception: BaseException) -> None:
        self.reply.set_exception(exception)

    def _ask_again(self) -> None:
        time.sleep(RECHARGE_POLL_SECONDS)
        self.ask()
