"""Minute and message pools: their keys, their sizes, and what is left in them (R-31..R-38).

A pool belongs to one organization and one calendar month (UTC), so a :class:`PoolKey` holds
the month but not the organization: the store scopes every key by organization.

* Calling-plan pools: per country (the users' usage location; PR users share the US pool),
  per plan SKU and per kind (``domestic``, and ``international`` for MCOPSTN2), R-31 and R-32.
  MCOPSTN8 minutes are per user, never pooled: its keys carry the user id.
* The conferencing dial-out pool (capability ``MCOMEETADD``): organization-wide, 60 minutes per
  MCOMEETADV license (directly or through a bundle such as SPE_E5), R-35.
* The SMS pool: organization-wide, in messages, R-38.

Sizes are computed from the licenses held at the moment of use (our choice): a license
assigned mid-month adds its whole monthly allowance at once, and a license removed mid-month
takes its allowance away at once. What is *left* is the size less what was used this month; it
can go below zero after a license is removed, and is then read as zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final, Literal

from commcredits.domain.licensing import DIALOUT_POOL, Catalogue

PoolKind = Literal["domestic", "international", "dialout", "sms"]

SMS_POOL: Final = "SMS"
"""The capability name of the organization's SMS pool (R-38); not a SKU."""

SMS_COUNTRIES: Final = frozenset({"US", "PR", "CA"})
"""R-38: SMS exists only for numbers of these countries."""


@dataclass(frozen=True, slots=True)
class PoolKey:
    """One pool of one organization in one month.

    ``country`` is the pool country of a calling-plan pool (``PR`` users are in ``US``) and
    None for the organization-wide dial-out and SMS pools. ``user_id`` is set only for plans
    whose minutes are not pooled (MCOPSTN8).
    """

    country: str | None
    capability: str
    month: str
    """``YYYY-MM``, the calendar month in UTC (pools reset on the 1st, R-31)."""
    kind: PoolKind = "domestic"
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class PoolMember:
    """What a user brings to the pools: their licenses (direct or effective) and location."""

    user_id: str
    licenses: frozenset[str]
    usage_location: str | None


@dataclass(frozen=True)
class PoolState:
    """Minutes (messages for the SMS pool) left in each pool at the moment of a decision.

    A key that is absent has nothing left: the caller passes every pool of the organization
    for the month, so a missing key can only mean a pool that does not exist.
    """

    left: Mapping[PoolKey, int] = field(default_factory=lambda: MappingProxyType({}))

    def minutes_left(self, key: PoolKey) -> int:
        """What is left in ``key``; never below zero (see the module docstring)."""
        return max(self.left.get(key, 0), 0)

    @classmethod
    def from_usage(cls, sizes: Mapping[PoolKey, int], used: Mapping[PoolKey, int]) -> PoolState:
        """The pools of ``sizes`` less what ``used`` says was drawn from them this month."""
        return cls(MappingProxyType({key: size - used.get(key, 0) for key, size in sizes.items()}))


def month_of(at: datetime) -> str:
    """The pool month (``YYYY-MM``, UTC) of an aware moment."""
    if at.tzinfo is None:
        raise ValueError("a pool month needs a timezone-aware datetime")
    return at.astimezone(UTC).strftime("%Y-%m")


def plan_pool(
    catalogue: Catalogue,
    sku: str,
    usage_location: str,
    month: str,
    *,
    kind: PoolKind = "domestic",
    user_id: str | None = None,
) -> PoolKey:
    """The key of the ``kind`` pool that plan ``sku`` of a user in ``usage_location`` draws on.

    ``user_id`` is kept only for a plan that is not pooled (MCOPSTN8, R-31).
    """
    pooled = catalogue.sku(sku).pooled
    return PoolKey(
        country=catalogue.pool_country(usage_location),
        capability=sku,
        month=month,
        kind=kind,
        user_id=None if pooled else user_id,
    )


def plan_pools(
    catalogue: Catalogue,
    sku: str,
    usage_location: str,
    month: str,
    *,
    user_id: str | None = None,
) -> tuple[PoolKey, ...]:
    """Every pool plan ``sku`` has for a user in ``usage_location``: one per kind of minutes
    it includes there (MCOPSTN2 has two; a PAYG plan none)."""
    allowance = catalogue.allowances(sku, usage_location)
    kinds: list[PoolKind] = []
    if allowance.domestic_minutes > 0:
        kinds.append("domestic")
    if allowance.international_minutes > 0:
        kinds.append("international")
    return tuple(
        plan_pool(catalogue, sku, usage_location, month, kind=kind, user_id=user_id)
        for kind in kinds
    )


def dialout_pool(month: str) -> PoolKey:
    """The organization's conferencing dial-out pool for ``month`` (R-35)."""
    return PoolKey(country=None, capability=DIALOUT_POOL, month=month, kind="dialout")


def sms_pool(month: str) -> PoolKey:
    """The organization's SMS pool for ``month`` (R-38)."""
    return PoolKey(country=None, capability=SMS_POOL, month=month, kind="sms")


def pool_sizes(
    members: Iterable[PoolMember], at: datetime, catalogue: Catalogue | None = None
) -> dict[PoolKey, int]:
    """Every pool of the organization in the month of ``at``, sized from its users' licenses.

    * Calling plans (R-31, R-32): each user with a usage location adds, per plan they hold,
      its domestic minutes to the domestic pool and its international minutes to the
      international pool of their pool country. A user without a usage location adds nothing
      (a plan needs one, R-12). MCOPSTN8 gives the user a pool of their own.
    * Dial-out (R-35): each user holding MCOMEETADV adds its ``dialout_minutes`` (60).
    * SMS (R-38): each user located in US, PR or CA adds the ``sms`` messages of each plan
      they hold (our choice: SMS exists only for numbers there, so only users there add).

    Pools of size zero are left out.
    """
    catalogue = catalogue or Catalogue.load()
    month = month_of(at)
    sizes: dict[PoolKey, int] = defaultdict(int)
    for member in members:
        held = catalogue.effective(member.licenses)
        location = member.usage_location
        for code in held:
            sku = catalogue.skus[code]
            if sku.dialout_minutes:
                sizes[dialout_pool(month)] += sku.dialout_minutes
            if location is None or not sku.is_plan:
                continue
            allowance = catalogue.allowances(code, location)
            for key in plan_pools(catalogue, code, location, month, user_id=member.user_id):
                if key.kind == "domestic":
                    sizes[key] += allowance.domestic_minutes
                else:
                    sizes[key] += allowance.international_minutes
            if location in SMS_COUNTRIES and allowance.sms:
                sizes[sms_pool(month)] += allowance.sms
    return {key: sizes[key] for key in sorted(sizes, key=_sort_key) if sizes[key] > 0}


def _sort_key(key: PoolKey) -> tuple[str, str, str, str, str]:
    return (key.month, key.kind, key.country or "", key.capability, key.user_id or "")
