"""Licenses (SKUs): the catalogue, prerequisites, allowances, and which license pays a call.

The catalogue is data (``commcredits/data/skus.toml``, or an operator's copy of it) so that an
operator adds a SKU without touching code; this module knows only the *kinds* of SKU. Every
check is a pure function of the catalogue and a user's licenses (R-10..R-15, R-30..R-38).

A user's *direct* licenses are what an admin assigned; the *effective* licenses add what bundles
include (SPE_E5 brings MCOMEETADV and MCOEV). Prerequisites and capabilities look at the
effective set, so a bundle counts wherever its parts do.

The :class:`Catalogue` methods take the catalogue explicitly; the module-level functions of the
same names use the packaged default catalogue.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeGuard

from commcredits.domain.countries import is_country
from commcredits.domain.errors import InvalidRequest, RuleViolation

PLAN_KINDS: Final = frozenset({"calling_plan", "payg_plan"})
KINDS: Final = PLAN_KINDS | {
    "conferencing",
    "conferencing_payg",
    "dialout",
    "phone_system",
    "credits",
    "bundle",
}

ANY_CALLING_PLAN: Final = "@calling_plan"
"""In ``requires``: any SKU of kind calling_plan or payg_plan (R-11)."""

DIALOUT_POOL: Final = "MCOMEETADD"
"""The capability name of the conferencing dial-out pool (R-35, R-50a); not a SKU."""

_INBOUND: Final = frozenset({"user_in", "ucap_in", "unassigned_in", "conf_in"})
CALL_TYPES: Final = _INBOUND | {
    "user_out",
    "user_out_transfer",
    "user_out_forwarding",
    "ucap_out",
    "conf_out",
    "emergency_out",
}
"""R-51: the inbound types plus the outbound ones."""
_SKU_CODE: Final = re.compile(r"[A-Z0-9][A-Z0-9_]*")
_TOP_LEVEL_KEYS: Final = frozenset({"zone_a", "domestic_groups", "pool_countries", "skus"})


@dataclass(frozen=True)
class PerLocation:
    """A monthly allowance that depends on the user's usage location (R-12)."""

    default: int
    by_country: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def at(self, country: str) -> int:
        return self.by_country.get(country, self.default)


@dataclass(frozen=True)
class Zone:
    """The usage locations where a PAYG plan is sold."""

    name: str
    countries: frozenset[str]


@dataclass(frozen=True)
class Sku:
    """One catalogue entry; see the header of ``data/skus.toml`` for what each field means."""

    code: str
    name: str
    kind: str
    includes: tuple[str, ...] = ()
    requires: tuple[tuple[str, ...], ...] = ()
    needs_usage_location: bool = False
    not_sold_in: frozenset[str] = frozenset()
    zone: Zone | None = None
    domestic_minutes: PerLocation = PerLocation(0)
    international_minutes: PerLocation = PerLocation(0)
    sms: int = 0
    dialout_minutes: int = 0
    pooled: bool = True
    unlimited_seats: bool = False
    unlimited_dialout_to: frozenset[str] = frozenset()

    @property
    def is_plan(self) -> bool:
        """A calling plan or a PAYG plan."""
        return self.kind in PLAN_KINDS

    def sold_in(self, country: str) -> bool:
        """Whether the SKU may be assigned to a user whose usage location is ``country``."""
        if country in self.not_sold_in:
            return False
        return self.zone is None or country in self.zone.countries


@dataclass(frozen=True)
class Allowance:
    """What one license adds per user per month (R-31, R-32, R-35, R-38)."""

    domestic_minutes: int
    international_minutes: int
    sms: int
    dialout_minutes: int
    pooled: bool


@dataclass(frozen=True)
class Catalogue:
    """The SKUs the service knows, and the country facts the licensing rules need."""

    skus: Mapping[str, Sku]
    zone_a: frozenset[str]
    domestic_groups: tuple[frozenset[str], ...]
    pool_countries: Mapping[str, str]
    credits_sku: str

    @classmethod
    def load(cls, path: Path | None = None) -> Catalogue:
        """The catalogue in ``path``, or the packaged one (read once) when ``path`` is None.

        A malformed file raises ValueError naming the file, the SKU and the field.
        """
        if path is None:
            return _default_catalogue()
        return cls.parse(path.read_text(encoding="utf-8"), source=str(path))

    @classmethod
    def parse(cls, text: str, *, source: str = "<catalogue>") -> Catalogue:
        """The catalogue in TOML ``text``; ``source`` names it in error messages."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{source}: not valid TOML: {exc}") from exc
        return _parse_catalogue(data, source)

    # -- licenses ------------------------------------------------------------------------------

    def sku(self, code: str, *, field: str = "sku") -> Sku:
        """The SKU ``code``, or RuleViolation ``unknown_sku`` about ``field``."""
        found = self.skus.get(code)
        if found is None:
            raise RuleViolation(f"unknown SKU {code!r}", code="unknown_sku", field=field)
        return found

    def effective(self, licenses: Iterable[str]) -> frozenset[str]:
        """The licenses plus everything their bundles include, transitively."""
        seen: set[str] = set()
        pending = list(licenses)
        while pending:
            code = pending.pop()
            if code not in seen:
                pending.extend(self.sku(code, field="licenses").includes)
                seen.add(code)
        return frozenset(seen)

    def has_calling_plan(self, licenses: Iterable[str]) -> bool:
        """Whether the licenses hold a calling plan or a PAYG plan, directly or in a bundle."""
        return any(self.skus[code].is_plan for code in self.effective(licenses))

    def check_change(
        self,
        current: frozenset[str],
        add: Iterable[str],
        remove: Iterable[str],
        usage_location: str | None,
    ) -> frozenset[str]:
        """The user's new direct licenses after adding ``add`` and removing ``remove``.

        Adding a license already held directly, or removing one not held directly (including
        one held only through a bundle), changes nothing. Only what this change breaks is
        refused, with RuleViolation codes ``unknown_sku``, ``usage_location_required`` and
        ``plan_not_available_in_location`` (R-12), ``license_prerequisite_missing`` (R-11,
        R-12) and ``license_required_by_other`` (R-13). A SKU both added and removed is an
        InvalidRequest.
        """
        adding = {self.sku(code, field="add").code for code in add}
        removing = {self.sku(code, field="remove").code for code in remove}
        if both := adding & removing:
            raise InvalidRequest(
                f"{_join(self._in_order(both))} cannot be both added and removed",
                field="remove",
            )
        before = frozenset(current)
        after = (before | adding) - removing
        had, has = self.effective(before), self.effective(after)
        gained = self._in_order(has - had)
        self._check_location(gained, after, usage_location, field="add")
        # A prerequisite added in the same change counts: both sides are judged on the result.
        if unmet := [code for code in gained if not self._meets(code, has)]:
            raise RuleViolation(
                "; ".join(self._missing_message(code, after, has) for code in unmet),
                code="license_prerequisite_missing",
                field="licenses",
            )
        # Only dependencies this change breaks: a license already unmet before stays a data
        # problem for its own fix, not a reason to refuse every unrelated change.
        broken = [
            code
            for code in self._in_order(had & has)
            if self._meets(code, had) and not self._meets(code, has)
        ]
        if broken:
            raise RuleViolation(
                "; ".join(
                    self._dependency_message(code, before, after, had, has) for code in broken
                ),
                code="license_required_by_other",
                field="remove",
            )
        return after

    def check_location_change(self, licenses: Iterable[str], new_location: str | None) -> None:
        """Refuse a usage location that the user's plans cannot have (R-12).

        Raises ``usage_location_required`` when a plan needs a location and ``new_location``
        is None, ``plan_not_available_in_location`` when a plan is not sold there.
        """
        direct = frozenset(licenses)
        self._check_location(
            self._in_order(self.effective(direct)), direct, new_location, field="usage_location"
        )

    # -- allowances and countries --------------------------------------------------------------

    def allowances(self, sku: str, usage_location: str) -> Allowance:
        """What one ``sku`` license adds for a user in ``usage_location`` (R-31, R-32, R-38).

        A bundle's own entry adds nothing: its included SKUs carry the allowances.
        """
        found = self.sku(sku)
        return Allowance(
            domestic_minutes=found.domestic_minutes.at(usage_location),
            international_minutes=found.international_minutes.at(usage_location),
            sms=found.sms,
            dialout_minutes=found.dialout_minutes,
            pooled=found.pooled,
        )

    def pool_country(self, country: str) -> str:
        """The country whose calling-plan pool a user located in ``country`` draws on (R-31)."""
        return self.pool_countries.get(country, country)

    def is_domestic(self, user_country: str, destination_country: str) -> bool:
        """Whether a call from a user located in one country to the other is domestic (R-32)."""
        if user_country == destination_country:
            return True
        return any(
            user_country in group and destination_country in group for group in self.domestic_groups
        )

    def in_zone_a(self, country: str) -> bool:
        """Whether ``country`` is a Zone A country of the conferencing dial-out pool (R-36)."""
        return country in self.zone_a

    # -- what pays for a call ------------------------------------------------------------------

    def paying_capabilities(
        self,
        licenses: Iterable[str],
        call_type: str,
        user_country: str | None,
        destination_country: str | None,
        *,
        premium: bool = False,
        toll_free_bridge: bool = False,
    ) -> tuple[str, ...]:
        """The capabilities that may pay for a call, in the order to try them (R-30..R-35).

        ``licenses`` are the calling user's (the organizer's for conf_in and conf_out), direct
        or effective. ``user_country`` is that user's usage location. ``toll_free_bridge``:
        an inbound call reached one of the organization's toll-free numbers (conference
        bridge, auto attendant, call queue). ``premium`` only matters for meeting dial-out.

        Each entry is a pool (a calling-plan SKU, :data:`DIALOUT_POOL`), an included or
        unlimited license (MCOMEETADV for toll dial-in, MCOMEETADD_DIALOUT_US), or a
        pay-per-minute charge on the organization's credits or overage (MCOPSTNPP,
        MCOMEETACPEA). An empty tuple means nothing may pay. Free calls (see
        :func:`is_free_call`) are decided before this function and get an empty tuple too.
        A destination that is None is treated as international and outside Zone A.
        """
        _check_call_type(call_type)
        held = self._in_order(self.effective(licenses))
        credits = (self.credits_sku,) if self.credits_sku in held else ()
        if call_type in _INBOUND:
            if toll_free_bridge:
                # the organization's toll-free number is charged to its balance, whoever
                # was called; no user license is involved.
                return (self.credits_sku,)
            return self._dial_in(held, credits) if call_type == "conf_in" else ()
        if call_type == "emergency_out":
            return ()
        if call_type == "conf_out":
            return self._dial_out(held, credits, destination_country, premium=premium)
        return self._plan_pools(held, user_country, destination_country) + credits

    # -- helpers -------------------------------------------------------------------------------

    def _in_order(self, codes: Iterable[str]) -> tuple[str, ...]:
        """Catalogue order: deterministic messages and the operator's order of preference."""
        wanted = set(codes)
        return tuple(code for code in self.skus if code in wanted)

    def _holds(self, token: str, held: frozenset[str]) -> bool:
        if token == ANY_CALLING_PLAN:
            return any(self.skus[code].is_plan for code in held)
        return token in held

    def _meets(self, code: str, held: frozenset[str]) -> bool:
        requires = self.skus[code].requires
        return not requires or any(
            all(self._holds(token, held) for token in option) for option in requires
        )

    def _label(self, code: str, direct: frozenset[str]) -> str:
        if code in direct:
            return code
        bundles = [b for b in self._in_order(direct) if code in self.effective([b])]
        return f"{code} (included in {_join(bundles)})"

    def _describe(self, token: str) -> str:
        if token != ANY_CALLING_PLAN:
            return token
        plans = [code for code, sku in self.skus.items() if sku.is_plan]
        return f"a calling plan ({_join(plans)})"

    def _missing_message(self, code: str, direct: frozenset[str], has: frozenset[str]) -> str:
        options = [
            " and ".join(self._describe(t) for t in option if not self._holds(t, has))
            for option in self.skus[code].requires
        ]
        return f"{self._label(code, direct)} is missing a prerequisite: {', or '.join(options)}"

    def _dependency_message(
        self,
        code: str,
        before: frozenset[str],
        after: frozenset[str],
        had: frozenset[str],
        has: frozenset[str],
    ) -> str:
        needed: set[str] = set()
        for option in self.skus[code].requires:
            if all(self._holds(t, had) for t in option):
                for token in option:
                    needed |= self._resolve(token, had)
        lost = needed - has
        removed = self._in_order(before - after)
        culprits = [r for r in removed if self.effective([r]) & lost] or list(removed)
        return (
            f"{_join(culprits)} cannot be removed: {self._label(code, before)} depends on it;"
            " remove that too in the same change"
        )

    def _resolve(self, token: str, held: frozenset[str]) -> set[str]:
        if token == ANY_CALLING_PLAN:
            return {code for code in held if self.skus[code].is_plan}
        return {token}

    def _check_location(
        self,
        codes: Iterable[str],
        direct: frozenset[str],
        location: str | None,
        *,
        field: str,
    ) -> None:
        for code in codes:
            sku = self.skus[code]
            if not sku.needs_usage_location:
                continue
            label = self._label(code, direct)
            if location is None:
                raise RuleViolation(
                    f"{label} needs a usage location on the user",
                    code="usage_location_required",
                    field="usage_location",
                )
            if not sku.sold_in(location):
                if sku.zone is None or location in sku.not_sold_in:
                    reason = f"it is not sold in {location}"
                else:
                    zone = sku.zone
                    reason = f"it is sold only in {zone.name} ({_join(sorted(zone.countries))})"
                raise RuleViolation(
                    f"{label} is not available for a user located in {location}: {reason}",
                    code="plan_not_available_in_location",
                    field=field,
                )

    def _plan_pools(
        self, held: tuple[str, ...], user_country: str | None, destination: str | None
    ) -> tuple[str, ...]:
        # Plans need a usage location: without one, no plan minutes can apply.
        if user_country is None:
            return ()
        domestic = destination is not None and self.is_domestic(user_country, destination)
        pools: list[str] = []
        for code in held:
            sku = self.skus[code]
            allowance = sku.domestic_minutes if domestic else sku.international_minutes
            # PAYG plans and domestic-only plans abroad include 0 minutes: nothing to draw on.
            if sku.is_plan and allowance.at(user_country) > 0:
                pools.append(code)
        return tuple(pools)

    def _dial_out(
        self,
        held: tuple[str, ...],
        credits: tuple[str, ...],
        destination: str | None,
        *,
        premium: bool,
    ) -> tuple[str, ...]:
        paying: list[str] = []
        # Our choice: premium numbers are never included, neither in the pool nor in
        # the unlimited US/CA add-on, so they always cost money.
        if destination is not None and not premium:
            paying += [c for c in held if destination in self.skus[c].unlimited_dialout_to]
            if self.in_zone_a(destination) and any(self.skus[c].dialout_minutes for c in held):
                paying.append(DIALOUT_POOL)
        # R-50a names pay-per-minute conferencing MCOMEETACPEA; it still spends credits, so
        # like MCOPSTNPP it needs the organizer to hold credits.
        per_minute = tuple(c for c in held if self.skus[c].kind == "conferencing_payg")
        return (*paying, *((per_minute or credits) if credits else ()))

    def _dial_in(self, held: tuple[str, ...], credits: tuple[str, ...]) -> tuple[str, ...]:
        # toll dial-in is included with MCOMEETADV, charged per minute with MCOMEETACPEA.
        included = tuple(c for c in held if self.skus[c].kind == "conferencing")
        if included:
            return included
        per_minute = tuple(c for c in held if self.skus[c].kind == "conferencing_payg")
        return per_minute if credits else ()


def is_free_call(call_type: str, *, toll_free_bridge: bool = False) -> bool:
    """Whether a call is free whatever the licenses (R-30, R-34).

    Emergency calls, and inbound calls to anything but a toll-free number. Toll dial-in to a
    meeting is not free: it is included with, or charged by, the organizer's conferencing
    license (see :meth:`Catalogue.paying_capabilities`).
    """
    _check_call_type(call_type)
    if call_type == "emergency_out":
        return True
    return call_type in _INBOUND and call_type != "conf_in" and not toll_free_bridge


def _check_call_type(call_type: str) -> None:
    if call_type not in CALL_TYPES:
        raise InvalidRequest(
            f"{call_type!r} is not a call type ({_join(sorted(CALL_TYPES))})",
            code="invalid_call_type",
            field="call_type",
        )


def _join(items: Iterable[str]) -> str:
    return ", ".join(items)


# --- reading the catalogue ------------------------------------------------------------------


@cache
def _default_catalogue() -> Catalogue:
    text = (resources.files("commcredits") / "data" / "skus.toml").read_text(encoding="utf-8")
    return Catalogue.parse(text, source="commcredits/data/skus.toml")


def _parse_catalogue(data: Mapping[str, Any], source: str) -> Catalogue:
    if unknown := sorted(set(data) - _TOP_LEVEL_KEYS):
        raise ValueError(f"{source}: unknown top-level key {unknown[0]!r}")
    raw_skus = data.get("skus")
    if not isinstance(raw_skus, dict) or not raw_skus:
        raise ValueError(f"{source}: no SKUs: expected [skus.CODE] tables")
    skus = {code: _parse_sku(code, table, source) for code, table in raw_skus.items()}
    for sku in skus.values():
        where = f"{source}: SKU {sku.code}"
        for name, codes in (("includes", sku.includes), ("requires", _flat(sku.requires))):
            if unknown := [c for c in codes if c != ANY_CALLING_PLAN and c not in skus]:
                raise ValueError(f"{where}, field {name!r}: unknown SKU {unknown[0]!r}")
    credits = [code for code, sku in skus.items() if sku.kind == "credits"]
    if len(credits) != 1:
        raise ValueError(f"{source}: expected exactly one SKU of kind 'credits', found {credits}")
    groups = data.get("domestic_groups", [])
    if not isinstance(groups, list):
        raise ValueError(f"{source}: domestic_groups: expected a list of country lists")
    pools = data.get("pool_countries", {})
    if not isinstance(pools, dict):
        raise ValueError(f'{source}: pool_countries: expected a table such as {{ PR = "US" }}')
    _countries(list(pools), f"{source}: pool_countries")
    _countries(list(pools.values()), f"{source}: pool_countries")
    return Catalogue(
        skus=MappingProxyType(skus),
        zone_a=_countries(data.get("zone_a", []), f"{source}: zone_a"),
        domestic_groups=tuple(_countries(g, f"{source}: domestic_groups") for g in groups),
        pool_countries=MappingProxyType(dict(pools)),
        credits_sku=credits[0],
    )


def _parse_sku(code: str, table: object, source: str) -> Sku:
    where = f"{source}: SKU {code}"
    if not _SKU_CODE.fullmatch(code):
        raise ValueError(f"{where}: a SKU code is upper-case letters, digits and _")
    if not isinstance(table, dict):
        raise ValueError(f"{where}: expected a [skus.{code}] table")
    if unknown := sorted(set(table) - _sku_fields()):
        raise ValueError(f"{where}, field {unknown[0]!r}: unknown field")

    def at(name: str) -> str:
        return f"{where}, field {name!r}"

    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{at('name')}: required, a non-empty string")
    kind = table.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"{at('kind')}: required, one of {_join(sorted(KINDS))}")
    requires = table.get("requires", [])
    if not isinstance(requires, list):
        raise ValueError(f'{at("requires")}: expected a list of alternatives such as [["MCOEV"]]')
    zone = table.get("zone")
    sku = Sku(
        code=code,
        name=name,
        kind=kind,
        includes=_codes(table.get("includes", []), at("includes")),
        requires=tuple(_codes(option, at("requires"), alternative=True) for option in requires),
        needs_usage_location=_flag(table, "needs_usage_location", at, default=False),
        not_sold_in=_countries(table.get("not_sold_in", []), at("not_sold_in")),
        zone=None if zone is None else _zone(zone, at("zone")),
        domestic_minutes=_per_location(table.get("domestic_minutes", 0), at("domestic_minutes")),
        international_minutes=_per_location(
            table.get("international_minutes", 0), at("international_minutes")
        ),
        sms=_count(table.get("sms", 0), at("sms")),
        dialout_minutes=_count(table.get("dialout_minutes", 0), at("dialout_minutes")),
        pooled=_flag(table, "pooled", at, default=True),
        unlimited_seats=_flag(table, "unlimited_seats", at, default=False),
        unlimited_dialout_to=_countries(
            table.get("unlimited_dialout_to", []), at("unlimited_dialout_to")
        ),
    )
    if (sku.not_sold_in or sku.zone) and not sku.needs_usage_location:
        raise ValueError(f"{at('needs_usage_location')}: must be true where sales are restricted")
    if kind == "bundle" and not sku.includes:
        raise ValueError(f"{at('includes')}: a bundle includes at least one SKU")
    return sku


@cache
def _sku_fields() -> frozenset[str]:
    return frozenset(f.name for f in fields(Sku)) - {"code"}


def _flat(options: tuple[tuple[str, ...], ...]) -> list[str]:
    return [token for option in options for token in option]


def _flag(
    table: Mapping[str, object], name: str, at: Callable[[str], str], *, default: bool
) -> bool:
    value = table.get(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"{at(name)}: expected true or false")
    return value


def _codes(value: object, where: str, *, alternative: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: expected a list of SKU codes")
    if alternative and not value:
        raise ValueError(f"{where}: an alternative lists at least one SKU")
    allowed = {ANY_CALLING_PLAN} if alternative else set()
    if bad := [v for v in value if v not in allowed and not _SKU_CODE.fullmatch(v)]:
        raise ValueError(f"{where}: {bad[0]!r} is not a SKU code")
    return tuple(value)


def _countries(value: object, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'{where}: expected a list of country codes such as ["US", "CA"]')
    if bad := [v for v in value if not is_country(v)]:
        raise ValueError(f"{where}: {bad[0]!r} is not an ISO 3166-1 alpha-2 country code")
    return frozenset(value)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count(value: object, where: str) -> int:
    if not _is_count(value):
        raise ValueError(f"{where}: expected a whole number, 0 or more")
    return value


def _per_location(value: object, where: str) -> PerLocation:
    if _is_count(value):
        return PerLocation(value)
    if not isinstance(value, dict) or "default" not in value:
        raise ValueError(f"{where}: expected a whole number or {{ default = N, US = N, ... }}")
    by_country = {k: _count(v, f"{where}, {k}") for k, v in value.items() if k != "default"}
    _countries(list(by_country), where)
    return PerLocation(_count(value["default"], where), MappingProxyType(by_country))


def _zone(value: object, where: str) -> Zone:
    if not isinstance(value, dict) or set(value) != {"name", "countries"}:
        raise ValueError(f"{where}: expected {{ name = ..., countries = [...] }}")
    name = value["name"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: name must be a non-empty string")
    countries = _countries(value["countries"], where)
    if not countries:
        raise ValueError(f"{where}: a zone lists at least one country")
    return Zone(name, countries)


# --- the default catalogue ------------------------------------------------------------------


def effective(licenses: Iterable[str]) -> frozenset[str]:
    """The licenses plus everything their bundles include (SPE_E5 -> MCOMEETADV, MCOEV)."""
    return Catalogue.load().effective(licenses)


def has_calling_plan(licenses: Iterable[str]) -> bool:
    """Whether the licenses hold a calling or PAYG plan, directly or through a bundle."""
    return Catalogue.load().has_calling_plan(licenses)


def check_change(
    current: frozenset[str],
    add: Iterable[str],
    remove: Iterable[str],
    usage_location: str | None,
) -> frozenset[str]:
    """The new direct licenses, or the RuleViolation of :meth:`Catalogue.check_change`."""
    return Catalogue.load().check_change(current, add, remove, usage_location)


def check_location_change(licenses: Iterable[str], new_location: str | None) -> None:
    """Refuse a usage location the user's plans cannot have (R-12)."""
    Catalogue.load().check_location_change(licenses, new_location)


def allowances(sku: str, usage_location: str) -> Allowance:
    """What one license of ``sku`` adds for a user located in ``usage_location``."""
    return Catalogue.load().allowances(sku, usage_location)


def pool_country(country: str) -> str:
    """The country whose calling-plan pool a user located in ``country`` draws on (R-31)."""
    return Catalogue.load().pool_country(country)


def is_domestic(user_country: str, destination_country: str) -> bool:
    """Whether the call is domestic for a user located in ``user_country`` (R-32)."""
    return Catalogue.load().is_domestic(user_country, destination_country)


def in_zone_a(country: str) -> bool:
    """Whether ``country`` is in Zone A (R-36)."""
    return Catalogue.load().in_zone_a(country)


def paying_capabilities(
    licenses: Iterable[str],
    call_type: str,
    user_country: str | None,
    destination_country: str | None,
    *,
    premium: bool = False,
    toll_free_bridge: bool = False,
) -> tuple[str, ...]:
    """The ordered capabilities that may pay (see :meth:`Catalogue.paying_capabilities`)."""
    return Catalogue.load().paying_capabilities(
        licenses,
        call_type,
        user_country,
        destination_country,
        premium=premium,
        toll_free_bridge=toll_free_bridge,
    )
