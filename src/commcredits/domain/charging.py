"""The charging decision: may a call go ahead, what pays for it, and for how long.

One pure function, :func:`decide`, answers for a call (R-15, R-28..R-38, R-42, R-50a); the
service layer loads the facts, calls it once per slice of the call, and records the outcome.
:func:`split_charge` prices a finished call that crossed the end of a pool, and
:func:`sms_decision` decides one text message.

The order of the checks is the order of the reasons a refusal gives:

1. Teams-to-Teams calls are not PSTN usage (R-30): allowed, free, no capability.
2. Emergency calls are always allowed and free (R-30), before any policy, pool or balance.
3. ``invalid_number``: the number the call needs cannot be read (R-40).
4. ``policy_blocked``: the user's outbound policy or the organizer's dial-out policy (R-37).
5. ``no_license``: no license of the user (the organizer for conferencing) covers the call.
6. Pools and included licenses pay first (R-31, R-32, R-35); then money:
   ``no_rate`` (R-42), ``spend_limit_reached`` (R-37), then credits or overage.

Funding values:

* ``free``: nothing pays. Inbound calls to anything but a toll-free number, emergency calls,
  Teams-to-Teams calls. The capability is ``FREECALL`` (our choice: R-50a's name for a call let
  through without a price), or None for Teams-to-Teams calls, which are not PSTN usage at all.
* ``included``: a license covers the call without counting anything: toll dial-in to a meeting
  whose organizer holds MCOMEETADV (R-35), and dial-out to US/CA by an organizer holding
  MCOMEETADD_DIALOUT_US. The capability is that license.
* ``pool``: calling-plan minutes (capability: the plan SKU) or the dial-out pool (``MCOMEETADD``).
* ``credits``: the organization's prepaid balance (capability MCOPSTNPP, or MCOMEETACPEA for
  pay-per-minute conferencing, R-50a). A call to one of the organization's toll-free numbers
  is always MCOPSTNPP, conference bridges included: the number is charged, not a license.
* ``overage``: postpaid pay-as-you-go, billed at month end (R-04), same capabilities.

Which refusal when nothing can pay (our reading of R-04, R-15, R-28, R-33):

* ``no_credits``: the user may draw on credits (holds MCOPSTNPP; for the organization's
  toll-free numbers no license is needed, R-34) but the available balance cannot pay the
  first billing block, and overage is not on. This is R-28's "everything that needs credits
  stops at zero balance", prepaid or postpaid.
* ``pool_exhausted``: a pool would have paid, it is empty, and the user has no way to pay
  with money (no MCOPSTNPP, and no overage): R-04's "included minutes ran out".
* ``no_license``: nothing the user holds could pay this call, pool or money (a domestic-only
  plan calling abroad without MCOPSTNPP, a PAYG plan without MCOPSTNPP in a prepaid
  organization, no calling plan at all, no conferencing license on the organizer).

Other choices where the rules are silent:

* Overage does not need MCOPSTNPP: R-15 gates the *credit balance*, and overage is not drawn
  from it. A postpaid organization's leftover balance is spent first (R-03), but only by users
  holding MCOPSTNPP; the others go straight to overage. Overage applies only to postpaid
  organizations; ``overage_enabled`` on a prepaid one is ignored.
* The spend limit (R-37) counts credits and overage of outbound calls (conf_out: the
  organizer's limit); it never blocks pool, included or free calls.
* Each slice is priced as a call of its own, connection fee and first increment included, and
  rounded up to the minor unit: a slice never costs more than the money that grants it.
* On MCOPSTN2 "the plan's cap is reached when either pool is used up" (R-32) is read
  literally: once its domestic or its international pool is empty, the plan pays neither
  kind of call that month, and calls go on to credits or overage.
* A domestic-only ``pstn_policy`` or an ``organizer_country`` dial-out policy accepts what
  R-32 calls domestic (US, CA and PR to each other); without a usage location nothing is
  domestic, so both refuse every non-emergency call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from functools import lru_cache
from typing import Any, Final, Literal, NamedTuple

import phonenumbers

from commcredits.domain.errors import InvalidRequest, RuleViolation
from commcredits.domain.licensing import CALL_TYPES, DIALOUT_POOL, Catalogue
from commcredits.domain.money import quantize
from commcredits.domain.organizations import Billing, DialoutPolicy, PstnPolicy
from commcredits.domain.pools import (
    SMS_COUNTRIES,
    PoolKey,
    PoolKind,
    PoolState,
    dialout_pool,
    month_of,
    plan_pool,
    plan_pools,
    sms_pool,
)
from commcredits.domain.rating import (
    Charge,
    Destination,
    Rate,
    RateTable,
    billed_seconds,
    classify,
    price,
)

Verdict = Literal["allow", "deny"]
Reason = Literal[
    "no_license",
    "no_credits",
    "pool_exhausted",
    "policy_blocked",
    "spend_limit_reached",
    "no_rate",
    "invalid_number",
]
Funding = Literal["free", "included", "pool", "credits", "overage"]

FREECALL: Final = "FREECALL"
"""R-50a: the capability of a call that went through free, without a price."""

INBOUND_TYPES: Final = frozenset({"user_in", "ucap_in", "unassigned_in", "conf_in"})
OUTBOUND_TYPES: Final = CALL_TYPES - INBOUND_TYPES

_ALWAYS_EMERGENCY: Final = frozenset({"112", "911"})
"""GSM networks route these to emergency services everywhere; accepted on emergency_out."""


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the decision knows about one call.

    The "user" is the one the call belongs to: the caller for outbound calls, the called user
    for user_in, the resource account for ucap_in and ucap_out, nobody for unassigned_in. For
    conf_in and conf_out the user is the meeting organizer, who is charged (R-35) and whose
    dial-out policy and spend limit apply (R-37).
    """

    call_type: str
    from_number: str
    to_number: str
    user_id: str | None = None
    licenses: frozenset[str] = frozenset()
    """The user's licenses, direct or effective (bundles are expanded here either way)."""
    usage_location: str | None = None
    pstn_policy: PstnPolicy = "international_and_domestic"
    dialout_policy: DialoutPolicy = "any"
    spend_limit: Decimal | None = None
    """Per calendar month on paid outbound calls; None: no limit (R-37)."""
    spent_this_month: Decimal = Decimal(0)
    toll_free: bool = False
    """Inbound call types: the organization's number that was called is toll-free (R-34)."""
    organizer_licenses: frozenset[str] | None = None
    """conf_in and conf_out: the organizer's licenses; None means ``licenses`` are theirs."""
    pstn: bool = True
    """False for a call between two Teams users: not PSTN usage (R-30)."""


@dataclass(frozen=True, slots=True)
class OrgFacts:
    """What the decision knows about the organization that pays."""

    billing: Billing
    overage_enabled: bool
    currency: str
    available: Decimal
    """The credit balance less what running calls have reserved."""

    @property
    def overage(self) -> bool:
        """Whether usage nothing else pays may go to overage (postpaid only, R-04)."""
        return self.billing == "postpaid" and self.overage_enabled


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one slice of a call.

    ``pool`` is the pool to draw on (pool funding only). ``rate`` is the row that charges the
    call: for credits and overage, this slice; for pool funding, whatever goes beyond the pool
    (see :func:`split_charge`), or None when no row exists. ``granted_seconds`` is 0 on a deny.
    """

    decision: Verdict
    reason: Reason | None = None
    funding: Funding | None = None
    capability: str | None = None
    pool: PoolKey | None = None
    rate: Rate | None = None
    granted_seconds: int = 0

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"


def _deny(reason: Reason) -> Decision:
    return Decision("deny", reason=reason)


def _allow(
    funding: Funding,
    capability: str | None,
    granted: int,
    *,
    pool: PoolKey | None = None,
    rate: Rate | None = None,
) -> Decision:
    return Decision("allow", None, funding, capability, pool, rate, granted)


class _Memo:
    """The catalogue's answers, remembered per catalogue: they are pure functions of a few
    license sets and countries that come back on every call of an organization."""

    LIMIT: Final = 20_000

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self._answers: dict[tuple[Any, ...], Any] = {}

    def _get(self, key: tuple[Any, ...], compute: Any, *args: Any, **kwargs: Any) -> Any:
        found = self._answers.get(key, _MISSING)
        if found is _MISSING:
            if len(self._answers) >= self.LIMIT:
                self._answers.clear()
            found = self._answers[key] = compute(*args, **kwargs)
        return found

    def held(self, licenses: frozenset[str]) -> tuple[str, ...]:
        """The effective licenses, in catalogue order."""
        result: tuple[str, ...] = self._get(("held", licenses), self._held, licenses)
        return result

    def _held(self, licenses: frozenset[str]) -> tuple[str, ...]:
        effective = self.catalogue.effective(licenses)
        return tuple(code for code in self.catalogue.skus if code in effective)

    def has_calling_plan(self, held: tuple[str, ...]) -> bool:
        result: bool = self._get(("plan", held), self.catalogue.has_calling_plan, held)
        return result

    def paying_capabilities(
        self,
        held: tuple[str, ...],
        call_type: str,
        location: str | None,
        country: str | None,
        *,
        premium: bool,
    ) -> tuple[str, ...]:
        result: tuple[str, ...] = self._get(
            ("pay", held, call_type, location, country, premium),
            self.catalogue.paying_capabilities,
            held,
            call_type,
            location,
            country,
            premium=premium,
        )
        return result

    def plan_pools(
        self, sku: str, location: str, country: str, month: str, user_id: str | None
    ) -> tuple[PoolKey, ...]:
        """The pools plan ``sku`` of a user in ``location`` needs for a call to ``country``:
        the one it draws on first, then the others that must not be empty (R-32)."""
        result: tuple[PoolKey, ...] = self._get(
            ("pools", sku, location, country, month, user_id),
            self._plan_pools,
            sku,
            location,
            country,
            month,
            user_id,
        )
        return result

    def _plan_pools(
        self, sku: str, location: str, country: str, month: str, user_id: str | None
    ) -> tuple[PoolKey, ...]:
        catalogue = self.catalogue
        if not catalogue.skus[sku].is_plan:
            return ()
        domestic = self.is_domestic(location, country)
        kind: PoolKind = "domestic" if domestic else "international"
        drawn = plan_pool(catalogue, sku, location, month, kind=kind, user_id=user_id)
        others = plan_pools(catalogue, sku, location, month, user_id=user_id)
        return (drawn, *(key for key in others if key != drawn))

    def is_domestic(self, location: str, country: str) -> bool:
        result: bool = self._get(
            ("domestic", location, country), self.catalogue.is_domestic, location, country
        )
        return result


_MISSING: Final = object()
_MEMOS: dict[int, _Memo] = {}


def _memo(catalogue: Catalogue) -> _Memo:
    memo = _MEMOS.get(id(catalogue))
    if memo is None or memo.catalogue is not catalogue:
        if len(_MEMOS) >= 64:
            _MEMOS.clear()
        memo = _MEMOS[id(catalogue)] = _Memo(catalogue)
    return memo


@dataclass(frozen=True, slots=True)
class _Ask:
    """One decision's inputs, bundled for the helpers below."""

    call: CallFacts
    org: OrgFacts
    pools: PoolState
    rates: RateTable
    at: datetime
    slice_seconds: int
    catalogue: Catalogue
    month: str
    memo: _Memo | None = None

    @property
    def answers(self) -> _Memo:
        """The catalogue's remembered answers (see :class:`_Memo`)."""
        return self.memo if self.memo is not None else _memo(self.catalogue)


def decide(
    call: CallFacts,
    org: OrgFacts,
    pools: PoolState,
    rates: RateTable,
    at: datetime,
    slice_seconds: int,
    *,
    catalogue: Catalogue | None = None,
) -> Decision:
    """Allow or deny the next ``slice_seconds`` of ``call`` at ``at``, and say what pays.

    Granted seconds: for free and included calls, the slice; for pool funding, the minutes
    left in the pool x 60, up to the slice (the next slice then goes to money); for credits,
    the seconds the available balance (and the spend limit) can pay at the rate, up to the
    slice, so a call is cut when money runs out; for overage, the slice (or what the spend
    limit allows). An unknown call type is an InvalidRequest (``invalid_call_type``).
    """
    if slice_seconds <= 0:
        raise ValueError("a slice is at least one second")
    if call.call_type not in CALL_TYPES:
        raise InvalidRequest(
            f"{call.call_type!r} is not a call type ({', '.join(sorted(CALL_TYPES))})",
            code="invalid_call_type",
            field="call_type",
        )
    catalogue = catalogue or Catalogue.load()
    ask = _Ask(
        call, org, pools, rates, at, slice_seconds, catalogue, _month_of(at), _memo(catalogue)
    )
    if not call.pstn:
        return _allow("free", None, slice_seconds)
    if call.call_type in OUTBOUND_TYPES:
        declared = call.call_type == "emergency_out"
        if is_emergency_call(call, declared=declared):
            return _allow("free", FREECALL, slice_seconds)
        if declared:
            return _deny("invalid_number")
        return _outbound(ask)
    return _inbound(ask)


@lru_cache(maxsize=1024)
def _month_of(at: datetime) -> str:
    """:func:`month_of`, remembered: the calls of a batch share their moment."""
    return month_of(at)


def is_emergency_call(call: CallFacts, *, declared: bool = False) -> bool:
    """Whether ``call.to_number`` is an emergency number where the user is (R-30).

    Checked with libphonenumber's short-number data for the user's usage location, or the
    country of the ``from`` number when the user has none. ``declared`` (the call type is
    emergency_out) also accepts the country of the ``from`` number and 112 and 911: refusing a
    real emergency call is worse than letting a short number through free. An E.164 number
    (``+...``) is never an emergency number.
    """
    number = call.to_number.strip()
    if not number or number.startswith("+"):
        return False
    if declared and number in _ALWAYS_EMERGENCY:
        return True
    from_country = _country_of(call.from_number)
    regions = [call.usage_location or from_country]
    if declared:
        regions.append(from_country)
    return any(r and phonenumbers.is_emergency_number(number, r) for r in regions)


def _country_of(number: str) -> str | None:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return region if region and region.isalpha() else None


def _destination(number: str) -> Destination | None:
    try:
        return classify(number)
    except RuleViolation:
        return None


# --- inbound ----------------------------------------------------------------------------------


def _inbound(ask: _Ask) -> Decision:
    call, catalogue = ask.call, ask.catalogue
    credits_sku = catalogue.credits_sku
    if call.call_type == "conf_in":
        held = _held(ask, conference=True)
        conferencing = _of_kind(catalogue, held, "conferencing")
        per_minute = _of_kind(catalogue, held, "conferencing_payg")
        if not conferencing and not per_minute:
            return _deny("no_license")
        if not call.toll_free:
            if conferencing:
                return _allow("included", conferencing[0], ask.slice_seconds)
            # MCOMEETACPEA toll dial-in: the rate table has no dial-in service, so the bridge
            # number is priced like dial-out to it (our choice).
            bridge = _destination(call.to_number)
            if bridge is None:
                return _deny("invalid_number")
            return _charge(
                ask,
                services=("conf_dialout", "outbound"),
                destination=bridge,
                capability=per_minute[0],
                credits_allowed=credits_sku in held,
            )
    elif not call.toll_free:
        return _allow("free", FREECALL, ask.slice_seconds)
    # the organization's own toll-free number, priced by its country and paid from the
    # organization's balance; no user license is involved.
    number = _destination(call.to_number)
    if number is None:
        return _deny("invalid_number")
    return _charge(
        ask,
        services=("toll_free_in",),
        destination=number,
        capability=credits_sku,
        credits_allowed=True,
    )


# --- outbound ---------------------------------------------------------------------------------


def _outbound(ask: _Ask) -> Decision:
    call, catalogue = ask.call, ask.catalogue
    destination = _destination(call.to_number)
    if destination is None:
        return _deny("invalid_number")
    conference = call.call_type == "conf_out"
    if _policy_blocks(ask, destination, conference=conference):
        return _deny("policy_blocked")
    held = _held(ask, conference=conference)
    per_minute = _of_kind(catalogue, held, "conferencing_payg")
    if conference:
        licensed = bool(per_minute or _of_kind(catalogue, held, "conferencing"))
    else:
        licensed = ask.answers.has_calling_plan(held)
    if not licensed:
        return _deny("no_license")
    services = ("conf_dialout", "outbound") if conference else ("outbound",)
    money = {catalogue.credits_sku, *per_minute}
    ran_out = False
    for capability in ask.answers.paying_capabilities(
        held,
        call.call_type,
        call.usage_location,
        destination.country,
        premium=destination.number_type == "premium",
    ):
        if capability in money:
            continue
        keys = _pools_for(ask, capability, destination)
        if not keys:
            return _allow("included", capability, ask.slice_seconds)
        left = ask.pools.minutes_left(keys[0])
        if left > 0 and all(ask.pools.minutes_left(key) > 0 for key in keys):
            granted = min(ask.slice_seconds, left * 60)
            rate = _rate(ask, services, destination)
            return _allow("pool", capability, granted, pool=keys[0], rate=rate)
        ran_out = True
    return _charge(
        ask,
        services=services,
        destination=destination,
        capability=per_minute[0] if conference and per_minute else catalogue.credits_sku,
        credits_allowed=catalogue.credits_sku in held,
        pool_ran_out=ran_out,
        spend_limited=True,
    )


def _policy_blocks(ask: _Ask, destination: Destination, *, conference: bool) -> bool:
    """R-37: the user's outbound PSTN policy, or the organizer's meeting dial-out policy."""
    call, catalogue = ask.call, ask.catalogue
    location = call.usage_location
    domestic = location is not None and ask.answers.is_domestic(location, destination.country)
    if conference:
        policy = call.dialout_policy
        if policy == "zone_a":
            return not catalogue.in_zone_a(destination.country)
        return policy == "none" or (policy == "organizer_country" and not domestic)
    return call.pstn_policy == "none" or (call.pstn_policy == "domestic" and not domestic)


def _pools_for(ask: _Ask, capability: str, destination: Destination) -> tuple[PoolKey, ...]:
    """The pool ``capability`` draws on first, then every pool that must not be empty for it
    to pay (MCOPSTN2: its other pool too, R-32); empty for an included license."""
    if capability == DIALOUT_POOL:
        return (dialout_pool(ask.month),)
    location = ask.call.usage_location
    if location is None:
        return ()
    return ask.answers.plan_pools(
        capability, location, destination.country, ask.month, ask.call.user_id
    )


# --- money ------------------------------------------------------------------------------------


def _charge(
    ask: _Ask,
    *,
    services: tuple[str, ...],
    destination: Destination,
    capability: str,
    credits_allowed: bool,
    pool_ran_out: bool = False,
    spend_limited: bool = False,
) -> Decision:
    """Pay the slice with credits (first, R-03) or overage, or refuse it."""
    org, call = ask.org, ask.call
    if not credits_allowed and not org.overage:
        return _deny("pool_exhausted" if pool_ran_out else "no_license")
    rate = _rate(ask, services, destination)
    if rate is None:
        return _deny("no_rate")
    room: Decimal | None = None
    if spend_limited and call.spend_limit is not None:
        room = call.spend_limit - call.spent_this_month
        if affordable_seconds(rate, room, ask.slice_seconds) == 0:
            return _deny("spend_limit_reached")
    if credits_allowed and org.available > 0:
        budget = org.available if room is None else min(org.available, room)
        granted = affordable_seconds(rate, budget, ask.slice_seconds)
        if granted > 0:
            return _allow("credits", capability, granted, rate=rate)
    if org.overage:
        granted = ask.slice_seconds
        if room is not None:
            granted = affordable_seconds(rate, room, granted)
        return _allow("overage", capability, granted, rate=rate)
    return _deny("no_credits")


def _rate(ask: _Ask, services: tuple[str, ...], destination: Destination) -> Rate | None:
    """The first service with a row in force, in the organization's currency.

    Meeting dial-out uses the conf_dialout row when one exists, else the outbound row.
    """
    for service in services:
        rate = ask.rates.match(service, destination, ask.at, ask.org.currency)
        if rate is not None:
            return rate
    return None


def slice_cost(rate: Rate, seconds: int) -> Decimal:
    """What ``seconds`` of a call cost at ``rate`` as a call of their own, rounded *up* to the
    minor unit: never less than :func:`~commcredits.domain.rating.price` charges, so a slice
    granted within a budget can always be paid from it."""
    units = billed_seconds(seconds, rate.first_increment, rate.increment)
    # The same formula as rating.price, with the rounding that protects the balance.
    exact = rate.connection_fee + rate.rate * units / 60 if units else Decimal(0)
    return quantize(exact, rate.currency, ROUND_CEILING)


def affordable_seconds(rate: Rate, budget: Decimal, up_to: int) -> int:
    """The most seconds, at most ``up_to``, whose :func:`slice_cost` fits in ``budget``."""
    if budget < 0 or up_to <= 0:
        return 0
    if slice_cost(rate, up_to) <= budget:
        return up_to
    # The cost only grows with the seconds: search for the last affordable second.
    low, high = 0, up_to
    while high - low > 1:
        middle = (low + high) // 2
        if slice_cost(rate, middle) <= budget:
            low = middle
        else:
            high = middle
    return low


def _held(ask: _Ask, *, conference: bool) -> tuple[str, ...]:
    call = ask.call
    licenses = call.licenses
    if conference and call.organizer_licenses is not None:
        licenses = call.organizer_licenses
    return ask.answers.held(frozenset(licenses))


def _of_kind(catalogue: Catalogue, held: tuple[str, ...], kind: str) -> tuple[str, ...]:
    return tuple(code for code in held if catalogue.skus[code].kind == kind)


# --- a call that crossed the end of its pool --------------------------------------------------


class SplitCharge(NamedTuple):
    pool_minutes: int
    """Minutes drawn from the pool: whole minutes, rounded up, never more than were left."""
    charged_seconds: int
    """Seconds of the call the pool did not cover (before billing increments)."""
    charge: Charge
    """The charged seconds priced at the rate, increments and connection fee included."""


def split_charge(duration_seconds: int, pool_minutes_left: int, rate: Rate) -> SplitCharge:
    """Split a finished pool call between its pool and the rate (R-31, R-33).

    Pool minutes are consumed in whole minutes rounded up per call (our choice). When the call
    needs more minutes than the pool has left, the pool pays the minutes it has and the rest
    of the call is charged at ``rate`` as a call of its own: its billing increments, and its
    connection fee, apply to the charged part only.
    """
    if duration_seconds < 0:
        raise ValueError("a call lasts zero seconds or more")
    left = max(pool_minutes_left, 0)
    needed = -(-duration_seconds // 60)
    if needed <= left:
        return SplitCharge(needed, 0, price(rate, 0))
    charged = duration_seconds - left * 60
    return SplitCharge(left, charged, price(rate, charged))


# --- SMS --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmsFacts:
    """One text message of a user (R-38)."""

    direction: Literal["outbound", "inbound"]
    from_number: str
    to_number: str
    units: int
    """Message segments, at least 1."""
    user_id: str | None = None
    licenses: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class SmsDecision:
    """The answer for one message: what the SMS pool pays, and what is charged."""

    decision: Verdict
    reason: Reason | None = None
    funding: Funding | None = None
    capability: str | None = None
    pool: PoolKey | None = None
    pool_units: int = 0
    charged_units: int = 0
    rate: Rate | None = None
    charge: Decimal = Decimal(0)

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"


def sms_decision(
    sms: SmsFacts,
    org: OrgFacts,
    pools: PoolState,
    rates: RateTable,
    at: datetime,
    *,
    catalogue: Catalogue | None = None,
) -> SmsDecision:
    """Allow or deny one message, drawing on the organization's SMS pool first (R-38).

    Choices: both numbers must be US, PR or CA numbers (else ``invalid_number``); the user
    needs a calling plan, PAYG included (else ``no_license``); the pool pays the segments it
    has left and the rest is charged, as one charge, at the ``sms_out`` (sent) or ``sms_in``
    (received) row matched on the ``to`` number (the destination of a sent message, the
    organization's number for a received one). A message is paid whole or refused: credits
    must cover the whole charge. Policies and spend limits are about calls and do not apply.
    The pooled capability is the user's calling plan SKU; a charged one is MCOPSTNPP.
    """
    if sms.units < 1:
        raise InvalidRequest("a message has at least one segment", code="invalid_units")
    catalogue = catalogue or Catalogue.load()
    to, sender = _destination(sms.to_number), _destination(sms.from_number)
    if to is None or sender is None or {to.country, sender.country} - SMS_COUNTRIES:
        return SmsDecision("deny", reason="invalid_number")
    effective = catalogue.effective(sms.licenses)
    plans = [code for code, sku in catalogue.skus.items() if code in effective and sku.is_plan]
    if not plans:
        return SmsDecision("deny", reason="no_license")
    key = sms_pool(month_of(at))
    from_pool = min(pools.minutes_left(key), sms.units)
    charged = sms.units - from_pool
    if charged == 0:
        with_sms = [code for code in plans if catalogue.skus[code].sms] or plans
        return SmsDecision("allow", None, "pool", with_sms[0], key, from_pool)
    credits_allowed = catalogue.credits_sku in effective
    if not credits_allowed and not org.overage:
        return SmsDecision("deny", reason="pool_exhausted")
    service = "sms_out" if sms.direction == "outbound" else "sms_in"
    rate = rates.match(service, to, at, org.currency)
    if rate is None:
        return SmsDecision("deny", reason="no_rate")
    cost = price(rate, charged).charge
    allowed = SmsDecision(
        "allow",
        None,
        "credits",
        catalogue.credits_sku,
        key if from_pool else None,
        from_pool,
        charged,
        rate,
        cost,
    )
    if credits_allowed and org.available > 0 and cost <= org.available:
        return allowed
    if org.overage:
        return replace(allowed, funding="overage")
    return SmsDecision("deny", reason="no_credits")
