"""The charging decision without a database: one row per case of the decision table, pool
sizing, a call crossing the end of its pool, slices cut by money, and SMS
(R-15, R-28..R-38, R-42, R-50a)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commcredits.domain.charging import (
    FREECALL,
    CallFacts,
    Decision,
    OrgFacts,
    SmsFacts,
    affordable_seconds,
    decide,
    is_emergency_call,
    slice_cost,
    sms_decision,
    split_charge,
)
from commcredits.domain.errors import InvalidRequest
from commcredits.domain.licensing import Catalogue
from commcredits.domain.pools import (
    PoolKey,
    PoolMember,
    PoolState,
    dialout_pool,
    month_of,
    pool_sizes,
    sms_pool,
)
from commcredits.domain.rating import COLUMNS, Rate, RateTable, parse_rate_table, price

CATALOGUE = Catalogue.load()
AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
MONTH = "2026-03"
SLICE = 300

PP = "MCOPSTNPP"
ADV = "MCOMEETADV"
ACPEA = "MCOMEETACPEA"
DIALOUT_US = "MCOMEETADD_DIALOUT_US"
EV = "MCOEV"
E5 = "SPE_E5"
ESSENTIALS = "MCOTEAMS_ESSENTIALS"
PLAN1 = "MCOPSTN1"
PLAN2 = "MCOPSTN2"
PLAN5 = "MCOPSTN5"
PLAN6 = "MCOPSTN6"
PLAN8 = "MCOPSTN8"
PAYG1 = "MCOPSTN_PAYG_1"
PAYG2 = "MCOPSTN_PAYG_2"

US_USER = "+14255550100"
US_FIXED = "+12065550100"
US_BRIDGE = "+12065550199"
US_PREMIUM = "+19005550100"
US_TOLL_FREE = "+18005550100"
CA_NUMBER = "+14165550199"
PR_NUMBER = "+17875550123"
GB_USER = "+442079460000"
GB_FIXED = "+442071234567"
GB_MOBILE = "+447400123456"
GB_TOLL_FREE = "+448001234567"
DE_FIXED = "+4930123456"
DE_TOLL_FREE = "+4980012345678"
FR_FIXED = "+33123456789"
AE_FIXED = "+97142345678"
JP_FIXED = "+81312345678"

RATES = parse_rate_table(
    "\n".join(
        [
            ",".join(COLUMNS),
            "outbound,,US,any,0.0120,,60,60,USD,,,US",
            "outbound,,CA,any,0.0150,,60,60,USD,,,CA",
            "outbound,,PR,any,0.0200,,60,60,USD,,,PR",
            "outbound,,GB,fixed,0.0240,,60,60,USD,,,GB fixed",
            "outbound,,GB,mobile,0.0960,,60,60,USD,,,GB mobile",
            "outbound,,DE,any,0.0260,,60,60,USD,,,DE",
            "outbound,,FR,any,0.0250,,60,60,USD,,,FR",
            "outbound,,AE,any,0.2000,,60,60,USD,,,AE",
            "conf_dialout,,GB,any,0.0300,,60,60,USD,,,GB dial-out",
            "toll_free_in,,US,any,0.0250,,60,60,USD,,,US toll-free",
            "toll_free_in,,GB,any,0.0450,,60,60,USD,,,GB toll-free",
            "sms_out,,US,any,0.0075,,1,1,USD,,,US SMS sent",
            "sms_in,,US,any,0.0040,,1,1,USD,,,US SMS received",
            "sms_out,,CA,any,0.0075,,1,1,USD,,,CA SMS sent",
        ]
    )
    + "\n"
)


def plan(country: str, sku: str, kind: str = "domestic", user: str | None = None) -> PoolKey:
    return PoolKey(country, sku, MONTH, kind, user)  # type: ignore[arg-type]


DIALOUT = dialout_pool(MONTH)
SMS = sms_pool(MONTH)
FULL: dict[PoolKey, int] = {
    plan("US", PLAN1): 3000,
    plan("US", PLAN2): 3000,
    plan("US", PLAN2, "international"): 600,
    plan("GB", PLAN1): 1200,
    plan("GB", PLAN5): 120,
    plan("FR", PLAN6): 240,
    plan("GB", PLAN8, user="u8"): 120,
    DIALOUT: 60,
    SMS: 200,
}


def pools(**changes: int) -> dict[PoolKey, int]:
    """The full pools with some emptied or shrunk: ``us1=0``, ``us2_intl=0``, ``dialout=2``."""
    names = {
        "us1": plan("US", PLAN1),
        "us2": plan("US", PLAN2),
        "us2_intl": plan("US", PLAN2, "international"),
        "dialout": DIALOUT,
        "sms": SMS,
    }
    return {**FULL, **{names[name]: minutes for name, minutes in changes.items()}}


def org(available: str = "50.00", billing: str = "prepaid", overage: bool = False) -> OrgFacts:
    return OrgFacts(billing, overage, "USD", Decimal(available))  # type: ignore[arg-type]


def us(*licenses: str, to: str = US_FIXED, call_type: str = "user_out", **kw: Any) -> CallFacts:
    """A call of a user located in the US, calling from their US number."""
    kw.setdefault("usage_location", "US")
    return CallFacts(call_type, US_USER, to, "u1", frozenset(licenses), **kw)


def gb(*licenses: str, to: str = GB_FIXED, call_type: str = "user_out", **kw: Any) -> CallFacts:
    kw.setdefault("usage_location", "GB")
    return CallFacts(call_type, GB_USER, to, "u8", frozenset(licenses), **kw)


def inbound(call_type: str, to: str, *licenses: str, **kw: Any) -> CallFacts:
    return CallFacts(call_type, GB_MOBILE, to, "u1", frozenset(licenses), "US", **kw)


@dataclass(frozen=True)
class Row:
    """One case: the call, the organization and pools, and the decision expected."""

    call: CallFacts
    expect: tuple[str, str | None, str | None, str | None, int]
    """(decision, reason, funding, capability, granted_seconds)"""
    org: OrgFacts = field(default_factory=org)
    pools: dict[PoolKey, int] = field(default_factory=lambda: dict(FULL))
    pool: PoolKey | None = None
    rate: str | None = None
    """The per-minute rate of the row expected to charge the call."""


def allow(funding: str, capability: str | None, granted: int = SLICE) -> tuple[Any, ...]:
    return ("allow", None, funding, capability, granted)


def deny(reason: str) -> tuple[Any, ...]:
    return ("deny", reason, None, None, 0)


TABLE: dict[str, Row] = {
    # --- not PSTN, free, emergency (R-30) ---
    "a Teams-to-Teams call is not PSTN usage": Row(
        us(pstn=False, pstn_policy="none"), allow("free", None), org("0"), {}
    ),
    "an incoming call to a user is free": Row(
        inbound("user_in", US_USER, PLAN1), allow("free", FREECALL), org("0"), {}
    ),
    "an incoming call to a user without licenses is free": Row(
        inbound("user_in", US_USER), allow("free", FREECALL), org("0"), {}
    ),
    "an incoming call to an unassigned number is free": Row(
        inbound("unassigned_in", US_FIXED), allow("free", FREECALL), org("0"), {}
    ),
    "an emergency call is free with no pool, no balance and policy none": Row(
        us(to="911", call_type="emergency_out", pstn_policy="none"),
        allow("free", FREECALL),
        org("0"),
        {},
    ),
    "112 is an emergency number for a GB user": Row(
        gb(to="112", call_type="emergency_out"), allow("free", FREECALL), org("0"), {}
    ),
    "999 is an emergency number for a GB user": Row(
        gb(to="999", call_type="emergency_out"), allow("free", FREECALL), org("0"), {}
    ),
    "911 is accepted on emergency_out for a GB user": Row(
        gb(to="911", call_type="emergency_out"), allow("free", FREECALL), org("0"), {}
    ),
    "emergency_out to a number that is not an emergency number is refused": Row(
        us(PLAN1, to="12345", call_type="emergency_out"), deny("invalid_number")
    ),
    "user_out to 911 is an emergency call even without licenses": Row(
        us(to="911", pstn_policy="none"), allow("free", FREECALL), org("0"), {}
    ),
    # --- user_out on each plan (R-31, R-32) ---
    "MCOPSTN1 domestic draws on the US pool": Row(
        us(EV, PLAN1), allow("pool", PLAN1), pool=plan("US", PLAN1), rate="0.0120"
    ),
    "a PR user draws on the US pool": Row(
        us(EV, PLAN1, usage_location="PR"), allow("pool", PLAN1), pool=plan("US", PLAN1)
    ),
    "US to CA is domestic": Row(
        us(EV, PLAN1, to=CA_NUMBER), allow("pool", PLAN1), pool=plan("US", PLAN1)
    ),
    "US to PR is domestic": Row(
        us(EV, PLAN1, to=PR_NUMBER), allow("pool", PLAN1), pool=plan("US", PLAN1)
    ),
    "MCOPSTN1 domestic in GB draws on the GB pool": Row(
        gb(EV, PLAN1), allow("pool", PLAN1), pool=plan("GB", PLAN1)
    ),
    "MCOPSTN1 through MCOTEAMS_ESSENTIALS draws on the MCOPSTN1 pool": Row(
        us(ESSENTIALS), allow("pool", PLAN1), pool=plan("US", PLAN1)
    ),
    "MCOPSTN2 domestic draws on its domestic pool": Row(
        us(EV, PLAN2), allow("pool", PLAN2), pool=plan("US", PLAN2)
    ),
    "MCOPSTN2 international draws on its international pool": Row(
        us(EV, PLAN2, to=GB_FIXED),
        allow("pool", PLAN2),
        pool=plan("US", PLAN2, "international"),
        rate="0.0240",
    ),
    "MCOPSTN5 domestic in GB": Row(gb(EV, PLAN5), allow("pool", PLAN5), pool=plan("GB", PLAN5)),
    "MCOPSTN6 domestic in FR": Row(
        CallFacts("user_out", "+33123456780", FR_FIXED, "u6", frozenset({EV, PLAN6}), "FR"),
        allow("pool", PLAN6),
        pool=plan("FR", PLAN6),
    ),
    "MCOPSTN8 draws on the user's own minutes": Row(
        gb(EV, PLAN8), allow("pool", PLAN8), pool=plan("GB", PLAN8, user="u8")
    ),
    "a pool with two minutes left grants two minutes": Row(
        us(EV, PLAN1), allow("pool", PLAN1, 120), pools=pools(us1=2), pool=plan("US", PLAN1)
    ),
    "MCOPSTN1 international with MCOPSTNPP is charged to credits": Row(
        us(EV, PLAN1, PP, to=GB_FIXED), allow("credits", PP), rate="0.0240"
    ),
    "MCOPSTN1 international without MCOPSTNPP has no license": Row(
        us(EV, PLAN1, to=GB_FIXED), deny("no_license")
    ),
    "MCOPSTN1 with its pool used up and no MCOPSTNPP": Row(
        us(EV, PLAN1), deny("pool_exhausted"), pools=pools(us1=0)
    ),
    "MCOPSTN1 with its pool used up goes on to credits": Row(
        us(EV, PLAN1, PP), allow("credits", PP), pools=pools(us1=0), rate="0.0120"
    ),
    "MCOPSTN1 with its pool used up and zero balance": Row(
        us(EV, PLAN1, PP), deny("no_credits"), org("0"), pools(us1=0)
    ),
    "MCOPSTN2 capped by its used-up international pool charges domestic calls": Row(
        us(EV, PLAN2, PP), allow("credits", PP), pools=pools(us2_intl=0)
    ),
    "MCOPSTN2 capped by its used-up domestic pool charges international calls": Row(
        us(EV, PLAN2, PP, to=GB_FIXED), allow("credits", PP), pools=pools(us2=0)
    ),
    "MCOPSTN2 international pool used up without MCOPSTNPP": Row(
        us(EV, PLAN2, to=GB_FIXED), deny("pool_exhausted"), pools=pools(us2_intl=0)
    ),
    # --- PAYG (R-33) ---
    "PAYG with MCOPSTNPP is charged to credits": Row(
        us(EV, PAYG1, PP), allow("credits", PP), rate="0.0120"
    ),
    "PAYG without MCOPSTNPP has no license on a prepaid organization": Row(
        us(EV, PAYG1), deny("no_license")
    ),
    "PAYG without MCOPSTNPP goes to overage when postpaid with overage on": Row(
        us(EV, PAYG1), allow("overage", PP), org("0", "postpaid", overage=True)
    ),
    "PAYG without MCOPSTNPP, postpaid with overage off": Row(
        us(EV, PAYG1), deny("no_license"), org("0", "postpaid")
    ),
    "PAYG zone 2 is charged at the destination's rate": Row(
        CallFacts("user_out", "+4930123450", DE_FIXED, "u2", frozenset({EV, PAYG2, PP}), "DE"),
        allow("credits", PP),
        rate="0.0260",
    ),
    # --- transfer and forwarding count as user_out ---
    "a transfer draws on the pool": Row(
        us(EV, PLAN1, call_type="user_out_transfer"), allow("pool", PLAN1), pool=plan("US", PLAN1)
    ),
    "a forwarding abroad is charged to credits": Row(
        us(EV, PLAN1, PP, to=GB_FIXED, call_type="user_out_forwarding"), allow("credits", PP)
    ),
    "a forwarding abroad without MCOPSTNPP has no license": Row(
        us(EV, PLAN1, to=GB_FIXED, call_type="user_out_forwarding"), deny("no_license")
    ),
    # --- conf_in (R-34, R-35) ---
    "toll dial-in is included with MCOMEETADV": Row(
        inbound("conf_in", US_BRIDGE, ADV), allow("included", ADV), org("0"), {}
    ),
    "toll dial-in is included with MCOMEETADV through SPE_E5": Row(
        inbound("conf_in", US_BRIDGE, E5), allow("included", ADV), org("0"), {}
    ),
    "toll dial-in reads the organizer's licenses": Row(
        inbound("conf_in", US_BRIDGE, organizer_licenses=frozenset({ADV})),
        allow("included", ADV),
    ),
    "toll dial-in is charged per minute with MCOMEETACPEA": Row(
        inbound("conf_in", US_BRIDGE, ACPEA, PP), allow("credits", ACPEA), rate="0.0120"
    ),
    "toll dial-in with MCOMEETACPEA at zero balance": Row(
        inbound("conf_in", US_BRIDGE, ACPEA, PP), deny("no_credits"), org("0")
    ),
    "toll-free dial-in is charged at the toll-free rate": Row(
        inbound("conf_in", US_TOLL_FREE, ADV, toll_free=True), allow("credits", PP), rate="0.0250"
    ),
    "toll-free dial-in stops at zero balance": Row(
        inbound("conf_in", US_TOLL_FREE, ADV, toll_free=True), deny("no_credits"), org("0")
    ),
    "dial-in to an organizer without conferencing": Row(
        inbound("conf_in", US_BRIDGE, EV, PLAN1, PP), deny("no_license")
    ),
    # --- conf_out (R-35, R-36) ---
    "dial-out to Zone A draws on the dial-out pool": Row(
        us(ADV, to=GB_FIXED, call_type="conf_out"),
        allow("pool", "MCOMEETADD"),
        pool=DIALOUT,
        rate="0.0300",
    ),
    "dial-out with two pool minutes left grants two minutes": Row(
        us(ADV, to=GB_FIXED, call_type="conf_out"),
        allow("pool", "MCOMEETADD", 120),
        pools=pools(dialout=2),
        pool=DIALOUT,
    ),
    "dial-out beyond the pool uses the conf_dialout rate": Row(
        us(ADV, PP, to=GB_FIXED, call_type="conf_out"),
        allow("credits", PP),
        pools=pools(dialout=0),
        rate="0.0300",
    ),
    "dial-out outside Zone A falls back to the outbound rate": Row(
        us(ADV, PP, to=AE_FIXED, call_type="conf_out"), allow("credits", PP), rate="0.2000"
    ),
    "dial-out outside Zone A without MCOPSTNPP": Row(
        us(ADV, to=AE_FIXED, call_type="conf_out"), deny("no_license")
    ),
    "dial-out beyond the pool without MCOPSTNPP": Row(
        us(ADV, to=GB_FIXED, call_type="conf_out"), deny("pool_exhausted"), pools=pools(dialout=0)
    ),
    "dial-out to a premium number is never from the pool": Row(
        us(ADV, PP, to=US_PREMIUM, call_type="conf_out"), allow("credits", PP)
    ),
    "MCOMEETADD_DIALOUT_US dials the US without pool or credits": Row(
        us(ADV, DIALOUT_US, call_type="conf_out"),
        allow("included", DIALOUT_US),
        org("0"),
        pools(dialout=0),
    ),
    "MCOMEETADD_DIALOUT_US dials Canada without pool or credits": Row(
        us(ADV, DIALOUT_US, to=CA_NUMBER, call_type="conf_out"),
        allow("included", DIALOUT_US),
        org("0"),
        pools(dialout=0),
    ),
    "the organizer's MCOMEETADD_DIALOUT_US counts, not the dialer's licenses": Row(
        us(to=CA_NUMBER, call_type="conf_out", organizer_licenses=frozenset({ADV, DIALOUT_US})),
        allow("included", DIALOUT_US),
    ),
    "pay-per-minute dial-out is charged as MCOMEETACPEA": Row(
        us(ACPEA, PP, to=GB_FIXED, call_type="conf_out"), allow("credits", ACPEA), rate="0.0300"
    ),
    "dial-out by an organizer without conferencing": Row(
        us(EV, PLAN1, PP, to=GB_FIXED, call_type="conf_out"), deny("no_license")
    ),
    # --- ucap_in, ucap_out, unassigned_in (R-34) ---
    "a call to a service number is free": Row(
        inbound("ucap_in", US_FIXED), allow("free", FREECALL), org("0"), {}
    ),
    "a call to a toll-free service number is charged without any license": Row(
        inbound("ucap_in", US_TOLL_FREE, toll_free=True), allow("credits", PP), rate="0.0250"
    ),
    "a toll-free number is priced by its own country": Row(
        inbound("ucap_in", GB_TOLL_FREE, toll_free=True), allow("credits", PP), rate="0.0450"
    ),
    "a toll-free service number stops answering at zero balance": Row(
        inbound("ucap_in", US_TOLL_FREE, toll_free=True), deny("no_credits"), org("0")
    ),
    "a toll-free service number answers on overage at zero balance": Row(
        inbound("ucap_in", US_TOLL_FREE, toll_free=True),
        allow("overage", PP),
        org("0", "postpaid", overage=True),
    ),
    "a toll-free unassigned number is charged too": Row(
        inbound("unassigned_in", US_TOLL_FREE, toll_free=True), allow("credits", PP)
    ),
    "a toll-free number without a toll-free rate": Row(
        inbound("ucap_in", DE_TOLL_FREE, toll_free=True), deny("no_rate")
    ),
    "a resource account on PAYG calls out on credits": Row(
        us(EV, PAYG1, PP, call_type="ucap_out"), allow("credits", PP)
    ),
    "a resource account on a calling plan calls out from the pool": Row(
        us(EV, PLAN1, call_type="ucap_out"), allow("pool", PLAN1), pool=plan("US", PLAN1)
    ),
    # --- policies (R-37) ---
    "a domestic-only user calling abroad": Row(
        us(EV, PLAN2, pstn_policy="domestic", to=GB_FIXED), deny("policy_blocked")
    ),
    "a domestic-only user calling Canada": Row(
        us(EV, PLAN1, pstn_policy="domestic", to=CA_NUMBER), allow("pool", PLAN1)
    ),
    "a user with outbound policy none": Row(
        us(EV, PLAN1, pstn_policy="none"), deny("policy_blocked")
    ),
    "a forwarding under outbound policy none": Row(
        us(EV, PLAN1, pstn_policy="none", call_type="user_out_forwarding"), deny("policy_blocked")
    ),
    "dial-out policy none": Row(
        us(ADV, call_type="conf_out", dialout_policy="none"), deny("policy_blocked")
    ),
    "dial-out policy organizer_country, abroad": Row(
        us(ADV, to=GB_FIXED, call_type="conf_out", dialout_policy="organizer_country"),
        deny("policy_blocked"),
    ),
    "dial-out policy organizer_country, at home": Row(
        us(ADV, call_type="conf_out", dialout_policy="organizer_country"),
        allow("pool", "MCOMEETADD"),
    ),
    "dial-out policy zone_a, outside Zone A": Row(
        us(ADV, PP, to=AE_FIXED, call_type="conf_out", dialout_policy="zone_a"),
        deny("policy_blocked"),
    ),
    "dial-out policy zone_a, inside Zone A": Row(
        us(ADV, to=FR_FIXED, call_type="conf_out", dialout_policy="zone_a"),
        allow("pool", "MCOMEETADD"),
    ),
    "the outbound policy does not govern meeting dial-out": Row(
        us(ADV, to=GB_FIXED, call_type="conf_out", pstn_policy="none"),
        allow("pool", "MCOMEETADD"),
    ),
    # --- spend limits (R-37) ---
    "a user at their spend limit": Row(
        us(EV, PLAN1, PP, to=GB_FIXED, spend_limit=Decimal(10), spent_this_month=Decimal(10)),
        deny("spend_limit_reached"),
    ),
    "a spend limit with room for one minute grants one minute": Row(
        us(EV, PLAN1, PP, to=GB_FIXED, spend_limit=Decimal(10), spent_this_month=Decimal("9.97")),
        allow("credits", PP, 60),
    ),
    "a spend limit does not stop pool minutes": Row(
        us(EV, PLAN1, spend_limit=Decimal(0)), allow("pool", PLAN1)
    ),
    "a spend limit stops overage too": Row(
        us(EV, PAYG1, spend_limit=Decimal(5), spent_this_month=Decimal(5)),
        deny("spend_limit_reached"),
        org("0", "postpaid", overage=True),
    ),
    "a spend limit stops the organizer's dial-out beyond the pool": Row(
        us(ADV, PP, to=AE_FIXED, call_type="conf_out", spend_limit=Decimal(0)),
        deny("spend_limit_reached"),
    ),
    # --- zero balance and postpaid (R-03, R-04, R-28) ---
    "an international call at zero balance": Row(
        us(EV, PLAN1, PP, to=GB_FIXED), deny("no_credits"), org("0")
    ),
    "a balance too small for the first minute": Row(
        us(EV, PLAN1, PP, to=GB_MOBILE), deny("no_credits"), org("0.09")
    ),
    "postpaid with overage on: beyond the pool is overage": Row(
        us(EV, PLAN1, PP), allow("overage", PP), org("0", "postpaid", overage=True), pools(us1=0)
    ),
    "postpaid with overage off and MCOPSTNPP: no credits": Row(
        us(EV, PLAN1, PP), deny("no_credits"), org("0", "postpaid"), pools(us1=0)
    ),
    "postpaid with overage off and no MCOPSTNPP: pool exhausted": Row(
        us(EV, PLAN1), deny("pool_exhausted"), org("0", "postpaid"), pools(us1=0)
    ),
    "postpaid spends its leftover balance first": Row(
        us(EV, PLAN1, PP, to=GB_FIXED), allow("credits", PP), org("5.00", "postpaid", overage=True)
    ),
    "postpaid leftover balance is not for users without MCOPSTNPP": Row(
        us(EV, PAYG1), allow("overage", PP), org("5.00", "postpaid", overage=True)
    ),
    "overage is ignored on a prepaid organization": Row(
        us(EV, PLAN1, PP, to=GB_FIXED), deny("no_credits"), org("0", "prepaid", overage=True)
    ),
    # --- no rate (R-42) ---
    "a destination without a rate": Row(us(EV, PLAN1, PP, to=JP_FIXED), deny("no_rate")),
    "dial-out to Zone A without a rate is fine while the pool lasts": Row(
        us(ADV, PP, to=JP_FIXED, call_type="conf_out"), allow("pool", "MCOMEETADD"), pool=DIALOUT
    ),
    "dial-out to Zone A without a rate beyond the pool": Row(
        us(ADV, PP, to=JP_FIXED, call_type="conf_out"), deny("no_rate"), pools=pools(dialout=0)
    ),
    "no rate in the organization's currency": Row(
        us(EV, PLAN1, PP, to=GB_FIXED),
        deny("no_rate"),
        OrgFacts("prepaid", False, "EUR", Decimal(50)),
    ),
    # --- invalid numbers (R-40) ---
    "a short number that is not an emergency number": Row(
        us(EV, PLAN1, PP, to="12345"), deny("invalid_number")
    ),
    "a number that is too short": Row(us(EV, PLAN1, PP, to="+1"), deny("invalid_number")),
    "a dial-out to letters": Row(
        us(ADV, to="call me", call_type="conf_out"), deny("invalid_number")
    ),
    "an invalid number is refused before the policy": Row(
        us(EV, PLAN1, to="+1", pstn_policy="none"), deny("invalid_number")
    ),
    "a toll-free call to a malformed number": Row(
        inbound("ucap_in", "+1", toll_free=True), deny("invalid_number")
    ),
}


def _decide(row: Row) -> Decision:
    return decide(row.call, row.org, PoolState(row.pools), RATES, AT, SLICE, catalogue=CATALOGUE)


@pytest.mark.parametrize("row", TABLE.values(), ids=TABLE.keys())
def test_the_decision_table(row: Row) -> None:
    decision = _decide(row)
    got = (
        decision.decision,
        decision.reason,
        decision.funding,
        decision.capability,
        decision.granted_seconds,
    )
    assert got == row.expect
    assert decision.allowed is (row.expect[0] == "allow")
    if row.pool is not None:
        assert decision.pool == row.pool
    if decision.funding != "pool":
        assert decision.pool is None
    if row.rate is not None:
        assert decision.rate is not None
        assert decision.rate.rate == Decimal(row.rate)
    if decision.funding in ("credits", "overage"):
        assert decision.rate is not None
    if decision.funding in ("free", "included") or not decision.allowed:
        assert decision.rate is None


def test_every_reason_and_funding_appears_in_the_table() -> None:
    reasons = {row.expect[1] for row in TABLE.values()} - {None}
    fundings = {row.expect[2] for row in TABLE.values()} - {None}
    assert reasons == {
        "no_license",
        "no_credits",
        "pool_exhausted",
        "policy_blocked",
        "spend_limit_reached",
        "no_rate",
        "invalid_number",
    }
    assert fundings == {"free", "included", "pool", "credits", "overage"}


# --- the decision's own checks ----------------------------------------------------------------


def test_an_unknown_call_type_is_a_malformed_request() -> None:
    with pytest.raises(InvalidRequest) as raised:
        decide(us(call_type="user_sideways"), org(), PoolState(), RATES, AT, SLICE)
    assert raised.value.code == "invalid_call_type"


def test_the_moment_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone"):
        decide(us(EV, PLAN1), org(), PoolState(), RATES, datetime(2026, 3, 10), SLICE)


def test_a_slice_is_at_least_one_second() -> None:
    with pytest.raises(ValueError, match="slice"):
        decide(us(EV, PLAN1), org(), PoolState(), RATES, AT, 0)


def test_pools_of_another_month_do_not_pay() -> None:
    february = {PoolKey("US", PLAN1, "2026-02"): 3000}
    decision = decide(us(EV, PLAN1), org(), PoolState(february), RATES, AT, SLICE)
    assert decision.reason == "pool_exhausted"


def test_the_pool_month_is_the_utc_month() -> None:
    assert month_of(datetime.fromisoformat("2026-03-31T23:30:00-02:00")) == "2026-04"


@pytest.mark.parametrize(
    ("to", "location", "declared", "expected"),
    [
        ("911", "US", False, True),
        ("112", "DE", False, True),
        ("999", "GB", False, True),
        ("999", "US", False, False),
        ("911", "GB", False, False),
        ("911", "GB", True, True),
        ("+1911", "US", True, False),
        ("4255550100", "US", True, False),
        ("110", None, False, False),
    ],
)
def test_emergency_numbers_of_the_users_country(
    to: str, location: str | None, declared: bool, expected: bool
) -> None:
    call = CallFacts("user_out", US_USER, to, usage_location=location)
    assert is_emergency_call(call, declared=declared) is expected


def test_without_a_usage_location_the_from_numbers_country_decides() -> None:
    call = CallFacts("user_out", GB_USER, "999")
    assert is_emergency_call(call)


# --- money: slices cut when the balance runs out ----------------------------------------------


def test_a_balance_that_covers_part_of_a_slice_grants_whole_paid_minutes() -> None:
    # GB mobile at 0.0960 a minute: two minutes (0.192) fit in 0.20, three (0.288) do not.
    decision = decide(us(EV, PLAN1, PP, to=GB_MOBILE), org("0.20"), PoolState(), RATES, AT, 300)
    assert (decision.funding, decision.granted_seconds) == ("credits", 120)
    assert decision.rate is not None
    assert price(decision.rate, 120).charge == Decimal("0.19")


def test_a_per_second_rate_grants_to_the_second() -> None:
    rate = _one_rate("0.06", first=1, step=1)
    assert affordable_seconds(rate, Decimal("0.10"), 300) == 100
    assert slice_cost(rate, 100) == Decimal("0.10")
    assert slice_cost(rate, 101) == Decimal("0.11")


def test_a_slice_pays_its_connection_fee() -> None:
    rate = _one_rate("0.10", fee="0.05")
    assert affordable_seconds(rate, Decimal("0.14"), 300) == 0
    assert affordable_seconds(rate, Decimal("0.15"), 300) == 60
    assert affordable_seconds(rate, Decimal("0.55"), 300) == 300


def test_overage_grants_the_whole_slice_whatever_the_balance() -> None:
    postpaid = org("0", "postpaid", overage=True)
    call = us(EV, PLAN1, PP, to=GB_MOBILE)
    decision = decide(call, postpaid, PoolState(), RATES, AT, 3600)
    assert (decision.funding, decision.capability, decision.granted_seconds) == (
        "overage",
        PP,
        3600,
    )


def test_a_spend_limit_cuts_an_overage_slice() -> None:
    call = us(EV, PAYG1, to=GB_FIXED, spend_limit=Decimal("0.10"))
    decision = decide(call, org("0", "postpaid", overage=True), PoolState(), RATES, AT, 600)
    # 0.024 a minute: four minutes (0.096) fit in 0.10, five (0.12) do not.
    assert (decision.funding, decision.granted_seconds) == ("overage", 240)


def test_the_balance_and_the_spend_limit_both_cut_a_slice() -> None:
    call = us(EV, PLAN1, PP, to=GB_FIXED, spend_limit=Decimal("1.00"))
    by_limit = decide(call, org("5.00"), PoolState(), RATES, AT, 3600)
    by_balance = decide(call, org("0.05"), PoolState(), RATES, AT, 3600)
    assert by_limit.granted_seconds == 41 * 60  # 41 x 0.024 = 0.984
    assert by_balance.granted_seconds == 2 * 60  # 2 x 0.024 = 0.048


@settings(max_examples=300, deadline=None)
@given(
    per_minute=st.decimals("0.0001", "3", places=4),
    fee=st.decimals("0", "0.5", places=4),
    first=st.sampled_from([1, 6, 30, 60]),
    step=st.sampled_from([1, 6, 30, 60]),
    available=st.decimals("0.01", "20", places=2),
    slice_seconds=st.integers(1, 3600),
)
def test_granted_seconds_never_cost_more_than_the_available_balance(
    per_minute: Decimal,
    fee: Decimal,
    first: int,
    step: int,
    available: Decimal,
    slice_seconds: int,
) -> None:
    rate = _one_rate(str(per_minute), fee=str(fee), first=first, step=step)
    call = us(EV, PLAN1, PP, to=GB_FIXED)
    decision = decide(call, org(str(available)), PoolState(), RateTable([rate]), AT, slice_seconds)
    assert 0 <= decision.granted_seconds <= slice_seconds
    assert price(rate, decision.granted_seconds).charge <= available
    if decision.allowed:
        assert decision.funding == "credits"
        if decision.granted_seconds < slice_seconds:
            # Cut only where the money ends: one second more would not be paid.
            assert slice_cost(rate, decision.granted_seconds + 1) > available
    else:
        assert decision.reason == "no_credits"
        assert slice_cost(rate, 1) > available


def _one_rate(per_minute: str, *, fee: str = "0", first: int = 60, step: int = 60) -> Rate:
    row = f"outbound,44,,,{per_minute},{fee},{first},{step},USD,,,"
    return parse_rate_table(f"{','.join(COLUMNS)}\n{row}\n").rows[0]


# --- a call crossing the end of its pool ------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "left", "rate", "expected"),
    [
        (125, 10, _one_rate("0.10"), (3, 0, "0.00")),
        (120, 2, _one_rate("0.10"), (2, 0, "0.00")),
        (150, 2, _one_rate("0.10"), (2, 30, "0.10")),
        (150, 2, _one_rate("0.06", first=1, step=1), (2, 30, "0.03")),
        (150, 2, _one_rate("0.10", fee="0.05"), (2, 30, "0.15")),
        (61, 0, _one_rate("0.10"), (0, 61, "0.20")),
        (61, -5, _one_rate("0.10"), (0, 61, "0.20")),
        (0, 0, _one_rate("0.10", fee="0.05"), (0, 0, "0.00")),
        (3599, 59, _one_rate("0.0240"), (59, 59, "0.02")),
        (3725, 60, _one_rate("0.0240", first=60, step=30), (60, 125, "0.06")),
    ],
    ids=[
        "inside the pool, rounded up to whole minutes",
        "exactly the minutes left",
        "the pool pays two minutes, 30 seconds charged as a minute",
        "the charged part billed per second",
        "the charged part pays the connection fee",
        "an empty pool charges the whole call",
        "a pool overdrawn by a removed license counts as empty",
        "a zero-second call",
        "one second past the pool, half-up",
        "a 60/30 increment on the charged part",
    ],
)
def test_a_call_that_crosses_the_end_of_its_pool(
    duration: int, left: int, rate: Rate, expected: tuple[int, int, str]
) -> None:
    minutes, charged, charge = split_charge(duration, left, rate)
    assert (minutes, charged, charge.charge) == (expected[0], expected[1], Decimal(expected[2]))


def test_a_negative_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="zero seconds"):
        split_charge(-1, 10, _one_rate("0.10"))


# --- pool sizes (R-31, R-32, R-35, R-38) ------------------------------------------------------


def member(user: str, location: str | None, *licenses: str) -> PoolMember:
    return PoolMember(user, frozenset(licenses), location)


def test_us_users_add_3000_minutes_each_and_pr_users_join_the_us_pool() -> None:
    sizes = pool_sizes(
        [member("a", "US", EV, PLAN1), member("b", "US", EV, PLAN1), member("c", "PR", EV, PLAN1)],
        AT,
    )
    assert sizes[plan("US", PLAN1)] == 9000
    assert plan("PR", PLAN1) not in sizes


def test_gb_users_add_1200_minutes() -> None:
    sizes = pool_sizes([member("a", "GB", EV, PLAN1), member("b", "GB", ESSENTIALS)], AT)
    assert sizes[plan("GB", PLAN1)] == 2400


def test_mcopstn2_adds_domestic_and_600_international_minutes() -> None:
    sizes = pool_sizes([member("a", "US", EV, PLAN2), member("b", "GB", EV, PLAN2)], AT)
    assert sizes[plan("US", PLAN2)] == 3000
    assert sizes[plan("US", PLAN2, "international")] == 600
    assert sizes[plan("GB", PLAN2)] == 1200
    assert sizes[plan("GB", PLAN2, "international")] == 600


def test_plans_are_pooled_per_identical_plan() -> None:
    sizes = pool_sizes([member("a", "US", EV, PLAN1), member("b", "US", EV, PLAN2)], AT)
    assert sizes[plan("US", PLAN1)] == 3000
    assert sizes[plan("US", PLAN2)] == 3000


def test_mcopstn8_minutes_belong_to_each_user() -> None:
    sizes = pool_sizes([member("a", "GB", EV, PLAN8), member("b", "GB", EV, PLAN8)], AT)
    assert sizes == {plan("GB", PLAN8, user="a"): 120, plan("GB", PLAN8, user="b"): 120}


def test_each_audio_conferencing_license_adds_60_dial_out_minutes() -> None:
    sizes = pool_sizes(
        [member("a", None, ADV), member("b", "GB", E5), member("c", "US", ACPEA, PP)], AT
    )
    assert sizes == {DIALOUT: 120}


def test_the_sms_pool_counts_us_pr_and_ca_users() -> None:
    sizes = pool_sizes(
        [
            member("a", "US", EV, PLAN1),
            member("b", "PR", EV, PLAN2),
            member("c", "CA", EV, PLAN5),
            member("d", "US", EV, PAYG1),
            member("e", "GB", EV, PLAN1),
        ],
        AT,
    )
    assert sizes[SMS] == 200 + 200 + 100


def test_payg_plans_and_users_without_a_location_add_no_minutes() -> None:
    assert pool_sizes([member("a", "US", EV, PAYG1), member("b", None, EV, PLAN1)], AT) == {}


def test_pool_keys_carry_the_month_of_use() -> None:
    april = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
    assert list(pool_sizes([member("a", "GB", EV, PLAN1)], april)) == [
        PoolKey("GB", PLAN1, "2026-04")
    ]


def test_what_is_left_is_the_size_less_the_used_minutes() -> None:
    state = PoolState.from_usage({DIALOUT: 60, plan("US", PLAN1): 3000}, {DIALOUT: 75})
    assert state.minutes_left(DIALOUT) == 0
    assert state.minutes_left(plan("US", PLAN1)) == 3000
    assert state.minutes_left(SMS) == 0


# --- SMS (R-38) -------------------------------------------------------------------------------


def sms(
    *licenses: str, units: int = 1, direction: str = "outbound", to: str = US_FIXED
) -> SmsFacts:
    return SmsFacts(direction, US_USER, to, units, "u1", frozenset(licenses))  # type: ignore[arg-type]


def _sms(message: SmsFacts, organization: OrgFacts | None = None, left: int = 200) -> Any:
    state = PoolState({SMS: left})
    return sms_decision(message, organization or org(), state, RATES, AT, catalogue=CATALOGUE)


def test_a_message_draws_on_the_sms_pool() -> None:
    decided = _sms(sms(EV, PLAN1, units=3))
    assert (decided.decision, decided.funding, decided.capability) == ("allow", "pool", PLAN1)
    assert (decided.pool, decided.pool_units, decided.charged_units, decided.charge) == (
        SMS,
        3,
        0,
        Decimal(0),
    )


def test_a_message_crossing_the_end_of_the_pool_is_charged_for_the_rest() -> None:
    decided = _sms(sms(EV, PLAN1, PP, units=5), left=2)
    assert (decided.funding, decided.capability, decided.pool_units) == ("credits", PP, 2)
    assert (decided.charged_units, decided.charge) == (3, Decimal("0.02"))  # 3 x 0.0075


def test_a_received_message_is_charged_at_the_sms_in_rate() -> None:
    decided = _sms(sms(EV, PAYG1, PP, units=10, direction="inbound"), left=0)
    assert decided.pool is None
    assert decided.rate is not None
    assert decided.rate.service == "sms_in"
    assert decided.charge == Decimal("0.04")


def test_a_message_beyond_the_pool_without_credits() -> None:
    assert _sms(sms(EV, PLAN1), left=0).reason == "pool_exhausted"
    assert _sms(sms(EV, PLAN1, PP), org("0"), left=0).reason == "no_credits"
    assert _sms(sms(EV, PLAN1, PP, units=2), org("0.01"), left=0).reason == "no_credits"


def test_a_message_beyond_the_pool_on_overage() -> None:
    decided = _sms(sms(EV, PAYG1), org("0", "postpaid", overage=True), left=0)
    assert (decided.funding, decided.capability, decided.charge) == ("overage", PP, Decimal("0.01"))


def test_sms_needs_us_pr_or_ca_numbers_and_a_calling_plan() -> None:
    assert _sms(sms(EV, PLAN1, to=GB_MOBILE)).reason == "invalid_number"
    assert _sms(sms(EV, PLAN1, to="hello")).reason == "invalid_number"
    assert _sms(sms(ADV, PP)).reason == "no_license"
    assert _sms(sms(EV, PLAN1, PP, to=PR_NUMBER), left=0).reason == "no_rate"


def test_a_message_has_at_least_one_segment() -> None:
    with pytest.raises(InvalidRequest):
        _sms(sms(EV, PLAN1, units=0))
