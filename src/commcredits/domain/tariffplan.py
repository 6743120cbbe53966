"""Rating calls from a tariff plan in the CGRateS tariff-plan CSV format.

Operators bring their existing tariffs as the six CGRateS files (``docs/tariffplan.md``).
:meth:`TariffPlan.load` reads a folder of them; :meth:`TariffPlan.quote` prices one call:

1. the rating profile of (tenant, category, subject) active at the answer time names a rating
   plan; a plan that does not price the destination hands over to the profile's fallback
   subjects, then to the ``*any`` subject;
2. the destination is matched by its longest prefix (``*any`` last);
3. the call is walked increment by increment. Each increment is priced by the binding in
   force at the instant it starts (highest weight, then the most recently started timing)
   and by the rate group in force at the elapsed call time it starts at. So a call that
   crosses 08:00 or midnight is split, and each part is priced by the plan then in force;
4. the connect fee is charged once, from the rate in force at the call's start; MaxCost caps
   the running total (``*free``) or ends the call when the total reaches it (``*disconnect``);
5. the total is rounded once with the destination rate's RoundingMethod and RoundingDecimals.

All arithmetic is exact: costs are kept as fractions while summing (a rate per 60s charged per
second is a repeating decimal) and become a Decimal only when rounded. Timings are evaluated
in UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Final

from commcredits.domain.errors import InvalidRequest, RuleViolation
from commcredits.domain.tariffplan_parse import (
    ANY,
    Activation,
    Binding,
    DestinationRate,
    ParsedTariffPlan,
    RateGroup,
    TariffPlanError,
    TariffPlanProblem,
    format_duration,
    normalize_number,
    parse_duration,
    parse_folder,
    to_microseconds,
)

__all__ = [
    "PricedPart",
    "TariffPlan",
    "TariffPlanError",
    "TariffPlanProblem",
    "TariffQuote",
    "UnauthorizedDestination",
    "format_duration",
    "parse_duration",
]

DISPLAY_DECIMALS: Final = 12
"""Part costs that do not end in decimal (0.05 per 60s, one second) are shown to 12 places;
the total is summed from the exact fractions, never from these."""


class UnauthorizedDestination(RuleViolation):
    """No rating profile, or no rate, prices this call: it cannot be made on credits (R-42)."""

    code = "UNAUTHORIZED_DESTINATION"


@dataclass(frozen=True)
class PricedPart:
    """A run of consecutive increments priced alike: same binding, same rate group."""

    start: datetime
    end: datetime  # start + increments * rate_increment: may pass the call's end
    offset: timedelta  # elapsed call time at ``start``
    duration: timedelta
    timing: str
    weight: Decimal
    destination_rate: str
    rate_id: str
    group_start: timedelta
    rate: Decimal
    rate_unit: timedelta
    rate_increment: timedelta
    increments: int
    cost: Decimal  # what was charged for the part, after any MaxCost *free cap
    capped: bool  # MaxCost *free made some of it free


@dataclass(frozen=True)
class TariffQuote:
    """The price of one call, with how it was reached."""

    cost: Decimal
    connect_fee: Decimal
    rating_plan: str
    destination_id: str
    matched_prefix: str
    matched_subject: str
    answer_time: datetime
    usage: timedelta
    rated_usage: timedelta  # the charged increments, rounded up to whole increments
    allowed_usage: timedelta  # == usage unless MaxCost *disconnect ended the call earlier
    disconnected: bool
    unrounded_cost: Decimal
    rounding_method: str
    rounding_decimals: int
    parts: tuple[PricedPart, ...]

    def as_json(self) -> dict[str, object]:
        """Plain JSON values: decimals as strings, durations as ``1m30s``, times RFC 3339."""
        return {
            "cost": str(self.cost),
            "connect_fee": str(self.connect_fee),
            "rating_plan": self.rating_plan,
            "destination_id": self.destination_id,
            "matched_prefix": self.matched_prefix,
            "matched_subject": self.matched_subject,
            "answer_time": self.answer_time.isoformat().replace("+00:00", "Z"),
            "usage": format_duration(self.usage),
            "rated_usage": format_duration(self.rated_usage),
            "allowed_usage": format_duration(self.allowed_usage),
            "disconnected": self.disconnected,
            "unrounded_cost": str(self.unrounded_cost),
            "rounding": {"method": self.rounding_method, "decimals": self.rounding_decimals},
            "parts": [
                {
                    "start": part.start.isoformat().replace("+00:00", "Z"),
                    "offset": format_duration(part.offset),
                    "duration": format_duration(part.duration),
                    "timing": part.timing,
                    "destination_rate": part.destination_rate,
                    "rate_id": part.rate_id,
                    "group_start": format_duration(part.group_start),
                    "rate": str(part.rate),
                    "rate_unit": format_duration(part.rate_unit),
                    "rate_increment": format_duration(part.rate_increment),
                    "increments": part.increments,
                    "cost": str(part.cost),
                    "capped": part.capped,
                }
                for part in self.parts
            ],
        }


@dataclass(frozen=True)
class _Match:
    subject: str
    rating_plan: str
    destination_id: str
    prefix: str
    bindings: tuple[Binding, ...]


@dataclass(frozen=True)
class TariffPlan:
    """A loaded tariff plan: immutable, safe to share, prices any number of calls."""

    parsed: ParsedTariffPlan

    @classmethod
    def load(cls, folder: Path, *, loaded_at: datetime | None = None) -> TariffPlan:
        """Read the six CSV files of ``folder``; every malformed line is listed, with its file
        and line number, in one :class:`TariffPlanError`. ``loaded_at`` is what ``*asap``
        activation times mean (now, by default)."""
        moment = loaded_at or datetime.now(UTC)
        return cls(parse_folder(folder, loaded_at=moment.astimezone(UTC)))

    def summary(self) -> dict[str, int]:
        """What was imported, for ``commcredits rates import-tariffplan`` to report."""
        parsed = self.parsed
        return {
            "prefixes": len(parsed.prefixes),
            "destinations": len({d for ids in parsed.prefixes.values() for d in ids}),
            "rating_plans": len(parsed.rating_plans),
            "rating_profiles": len(parsed.profiles),
        }

    def quote(
        self,
        *,
        tenant: str,
        category: str,
        subject: str,
        destination: str,
        answer_time: datetime,
        usage: timedelta,
    ) -> TariffQuote:
        """Price a call of ``usage`` answered at ``answer_time`` (timezone-aware).

        Raises :class:`UnauthorizedDestination` when no profile or rate prices it, and
        :class:`InvalidRequest` for a naive time or a negative usage.
        """
        if answer_time.tzinfo is None or answer_time.utcoffset() is None:
            raise InvalidRequest("answer time must carry a timezone", field="answer_time")
        if usage < timedelta(0):
            raise InvalidRequest("usage must not be negative", field="usage")
        start = answer_time.astimezone(UTC)
        match = self._match(tenant, category, subject, destination, start)
        return _price(match, start, usage)

    # ----------------------------------------------------------------- finding the plan

    def _match(
        self, tenant: str, category: str, subject: str, destination: str, start: datetime
    ) -> _Match:
        seen: set[str] = set()
        found = self._match_subject(tenant, category, subject, destination, start, seen)
        if found is None and ANY not in seen:
            found = self._match_subject(tenant, category, ANY, destination, start, seen)
        if found is not None:
            return found
        if not any(key[:2] == (tenant, category) for key in self.parsed.profiles):
            reason = f"no rating profile for tenant {tenant!r}, category {category!r}"
        else:
            reason = f"no rate for destination {destination!r}"
        raise UnauthorizedDestination(f"{reason} (subject {subject!r})", field="destination")

    def _match_subject(
        self,
        tenant: str,
        category: str,
        subject: str,
        destination: str,
        start: datetime,
        seen: set[str],
    ) -> _Match | None:
        """The subject's plan if it prices the destination, else its fallback subjects' in
        order, depth first; each subject is tried once, so fallback cycles end."""
        seen.add(subject)
        activation = _active(self.parsed.profiles.get((tenant, category, subject), ()), start)
        if activation is None:
            return None
        plan = self.parsed.rating_plans[activation.rating_plan_id]
        found = self._match_destination(plan, destination)
        if found is not None:
            dest_id, prefix = found
            return _Match(subject, activation.rating_plan_id, dest_id, prefix, plan[dest_id])
        for fallback in activation.fallback_subjects:
            if fallback not in seen:
                match = self._match_subject(tenant, category, fallback, destination, start, seen)
                if match is not None:
                    return match
        return None

    def _match_destination(
        self, plan: dict[str, tuple[Binding, ...]], destination: str
    ) -> tuple[str, str] | None:
        """Longest prefix first; among destinations sharing that prefix, the first in
        Destinations.csv that the plan prices; ``*any`` when no prefix matches."""
        number = normalize_number(destination)
        for length in range(len(number), 0, -1):
            prefix = number[:length]
            for dest_id in self.parsed.prefixes.get(prefix, ()):
                if dest_id in plan:
                    shown = prefix if destination.strip()[:1] != "+" else f"+{prefix}"
                    return dest_id, shown
        if ANY in plan:
            return ANY, ANY
        return None


def _active(activations: tuple[Activation, ...], start: datetime) -> Activation | None:
    """The latest activation at or before the call's start: a call is priced by the plan in
    force when it starts (R-40), even if a new one activates during it."""
    current = None
    for activation in activations:
        if activation.activation_time <= start:
            current = activation
    return current


# --------------------------------------------------------------------------- pricing


def _in_force(bindings: tuple[Binding, ...], instant: datetime) -> Binding | None:
    """The highest weight wins; on equal weight the timing that started most recently (PEAK
    from 08:00 beats OFFPEAK from 00:00 at 10:00); then the first line of RatingPlans.csv."""
    best: Binding | None = None
    for binding in bindings:
        if not binding.timing.is_active_at(instant):
            continue
        if best is None or (binding.weight, binding.timing.start) > (
            best.weight,
            best.timing.start,
        ):
            best = binding
    return best


def _next_change(bindings: tuple[Binding, ...], instant: datetime) -> datetime:
    """The first instant after ``instant`` at which another binding could come in force:
    the next midnight, or a start or end of any of the timings within the day."""
    midnight = instant.replace(hour=0, minute=0, second=0, microsecond=0)
    since_midnight = instant - midnight
    edges = [timedelta(days=1)]
    for binding in bindings:
        edges.extend(
            edge for edge in (binding.timing.start, binding.timing.end) if edge > since_midnight
        )
    return midnight + min(edges)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _increment_cost(group: RateGroup) -> Fraction:
    return (
        Fraction(group.rate)
        * to_microseconds(group.rate_increment)
        / to_microseconds(group.rate_unit)
    )


def _price(match: _Match, start: datetime, usage: timedelta) -> TariffQuote:
    first = _in_force(match.bindings, start)
    if first is None:
        raise UnauthorizedDestination(
            f"rating plan {match.rating_plan} has no rate in force for {match.destination_id} "
            f"at {start.isoformat()}",
            field="answer_time",
        )
    connect_fee = first.destination_rate.rate.connect_fee if usage else Decimal(0)
    total = Fraction(connect_fee)
    used: list[DestinationRate] = [first.destination_rate]
    parts: list[tuple[PricedPart, Fraction]] = []
    offset = timedelta(0)
    disconnected = False
    while offset < usage and not disconnected:
        instant = start + offset
        binding = _in_force(match.bindings, instant)
        if binding is None:
            raise UnauthorizedDestination(
                f"rating plan {match.rating_plan} has no rate in force for "
                f"{match.destination_id} at {instant.isoformat()}",
                field="usage",
            )
        priced = binding.destination_rate
        group, next_group = priced.rate.group_at(offset)
        limit = min(usage, _next_change(match.bindings, instant) - start)
        if next_group is not None:
            limit = min(limit, next_group)
        step = to_microseconds(group.rate_increment)
        count = _ceil_div(to_microseconds(limit - offset), step)
        each = _increment_cost(group)
        charged = each * count
        capped = False
        if priced.max_cost_strategy == "*disconnect":
            # increments are charged while the running total is below MaxCost
            room = Fraction(priced.max_cost) - total
            allowed = 0 if room <= 0 else count if each == 0 else math.ceil(room / each)
            if allowed < count:
                count, charged, disconnected = allowed, each * allowed, True
        elif priced.max_cost_strategy == "*free":
            room = max(Fraction(priced.max_cost) - total, Fraction(0))
            capped = charged > room
            charged = min(charged, room)
        if count:
            if priced not in used:
                used.append(priced)
            part = _part(binding, group, start + offset, offset, count, capped)
            parts.append((part, charged))
        total += charged
        offset += group.rate_increment * count
    method, decimals = _longest_rounding(used)
    allowed_usage = min(offset, usage)
    return TariffQuote(
        cost=_round(total, decimals, method),
        connect_fee=connect_fee,
        rating_plan=match.rating_plan,
        destination_id=match.destination_id,
        matched_prefix=match.prefix,
        matched_subject=match.subject,
        answer_time=start,
        usage=usage,
        rated_usage=offset,
        allowed_usage=allowed_usage,
        disconnected=disconnected,
        unrounded_cost=_display(total),
        rounding_method=method,
        rounding_decimals=decimals,
        parts=_merge(parts),
    )


def _part(
    binding: Binding,
    group: RateGroup,
    start: datetime,
    offset: timedelta,
    count: int,
    capped: bool,
) -> PricedPart:
    duration = group.rate_increment * count
    return PricedPart(
        start=start,
        end=start + duration,
        offset=offset,
        duration=duration,
        timing=binding.timing.tag,
        weight=binding.weight,
        destination_rate=binding.destination_rate.id,
        rate_id=binding.destination_rate.rate.id,
        group_start=group.group_start,
        rate=group.rate,
        rate_unit=group.rate_unit,
        rate_increment=group.rate_increment,
        increments=count,
        cost=Decimal(0),  # set from the exact sum in _merge
        capped=capped,
    )


def _merge(parts: list[tuple[PricedPart, Fraction]]) -> tuple[PricedPart, ...]:
    """Join neighbours that only differ because the walk paused at a timing edge that did
    not change the price (another timing's start, say); costs are summed exactly."""
    merged: list[tuple[PricedPart, Fraction]] = []
    for part, cost in parts:
        last, last_cost = merged[-1] if merged else (None, Fraction(0))
        if (
            last is not None
            and last.end == part.start
            and (last.timing, last.destination_rate, last.group_start, last.capped)
            == (part.timing, part.destination_rate, part.group_start, part.capped)
        ):
            joined = replace(
                last,
                end=part.end,
                duration=last.duration + part.duration,
                increments=last.increments + part.increments,
            )
            merged[-1] = (joined, last_cost + cost)
        else:
            merged.append((part, cost))
    return tuple(replace(part, cost=_display(cost)) for part, cost in merged)


def _longest_rounding(used: list[DestinationRate]) -> tuple[str, int]:
    """As CGRateS does for a call priced by several destination rates: the most decimals
    among them, with that one's method (the first on a tie)."""
    chosen = used[0]
    for priced in used[1:]:
        if priced.rounding_decimals > chosen.rounding_decimals:
            chosen = priced
    return chosen.rounding_method, chosen.rounding_decimals


def _round(value: Fraction, decimals: int, method: str) -> Decimal:
    """``*up`` rounds towards +infinity, ``*down`` towards -infinity, ``*middle`` half up."""
    scaled = value * 10**decimals
    if method == "*up":
        units = -(-scaled.numerator // scaled.denominator)
    elif method == "*down":
        units = scaled.numerator // scaled.denominator
    else:
        units = (2 * scaled.numerator + scaled.denominator) // (2 * scaled.denominator)
    return Decimal(units).scaleb(-decimals)


def _display(value: Fraction) -> Decimal:
    """The exact decimal when there is one, else 12 places rounded half up."""
    denominator = value.denominator
    places = 0
    while denominator % 10 == 0 or denominator % 2 == 0 or denominator % 5 == 0:
        factor = 10 if denominator % 10 == 0 else 2 if denominator % 2 == 0 else 5
        denominator //= factor
        places += 1
    if denominator == 1:
        return _round(value, places, "*down")  # exact: nothing is cut
    return _round(value, DISPLAY_DECIMALS, "*middle")
