"""What live calls and finished calls share: the requests, pool names in the store, and how a
call record is built from a decision and rebuilt into the rate it was decided with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from commcredits.domain import charging
from commcredits.domain.directory import User
from commcredits.domain.errors import NotFound, RuleViolation
from commcredits.domain.licensing import Catalogue
from commcredits.domain.organizations import Organization
from commcredits.domain.pools import PoolKey
from commcredits.domain.rating import Rate, classify
from commcredits.domain.usage import CallRecord

ZERO = Decimal(0)


class UnknownNumber(NotFound):
    """A call of the many-organization edge whose number no organization holds."""

    def __init__(self, call_id: str):
        super().__init__(
            f"no organization holds the number of call {call_id!r}", code="unknown_number"
        )


@dataclass(frozen=True, slots=True)
class CallRequest:
    call_id: str
    call_type: str
    user: str | None
    from_number: str
    to_number: str
    conference_id: str | None = None
    start_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class CdrRecord:
    call_id: str
    call_type: str
    user: str | None
    from_number: str
    to_number: str
    start_time: datetime
    duration_seconds: int
    conference_id: str | None = None


def pool_name(key: PoolKey) -> str:
    """How a pool is keyed in the store (the month is a column of its own)."""
    return "|".join([key.country or "*", key.capability, key.kind, key.user_id or ""])


def pool_key(name: str, month: str) -> PoolKey:
    """The key of a pool named ``name`` in the store, in ``month``."""
    country, capability, kind, user = name.split("|")
    return PoolKey(
        country=None if country == "*" else country,
        capability=capability,
        month=month,
        kind=kind,  # type: ignore[arg-type]
        user_id=user or None,
    )


def month_start(at: datetime) -> datetime:
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def new_record(
    org: Organization,
    request: CallRequest | CdrRecord,
    user: User | None,
    start: datetime,
    decision: charging.Decision,
    table_id: str | None,
    catalogue: Catalogue,
    *,
    source: str,
) -> CallRecord:
    """The record of a call just decided: nothing reserved, granted or charged yet."""
    try:
        destination = classify(
            request.from_number if request.call_type.endswith("_in") else request.to_number
        )
        external, number_type = destination.country, destination.number_type
    except RuleViolation:
        external, number_type = None, None
    rate = decision.rate
    domestic = (
        catalogue.is_domestic(user.usage_location, external)
        if user is not None and user.usage_location and external
        else None
    )
    return CallRecord(
        org_id=org.id,
        call_id=request.call_id,
        call_type=request.call_type,
        user_id=user.id if user else None,
        upn=user.upn if user else None,
        display_name=user.display_name if user else None,
        user_location=user.usage_location if user else None,
        from_number=request.from_number,
        to_number=request.to_number,
        conference_id=request.conference_id,
        status="active" if decision.allowed else "denied",
        decision=decision.decision,
        reason=decision.reason,
        funding=decision.funding,
        capability=decision.capability,
        external_country=external,
        number_type=number_type,
        domestic=domestic,
        pool=pool_name(decision.pool) if decision.pool else None,
        pool_minutes=0,
        reserved_pool_minutes=0,
        rate_table_id=table_id if rate else None,
        rate_line=rate.line if rate else None,
        rate=rate.rate if rate else None,
        connection_fee=rate.connection_fee if rate else None,
        first_increment=rate.first_increment if rate else None,
        increment=rate.increment if rate else None,
        currency=org.currency,
        charge=ZERO,
        connection_fee_charged=ZERO,
        reserved=ZERO,
        granted_seconds=0,
        used_seconds=0,
        start_time=start,
        end_time=None,
        duration_seconds=None,
        reservation_expires_at=None,
        source=source,  # type: ignore[arg-type]
    )


def _build_evolve() -> Callable[[CallRecord, dict[str, Any]], CallRecord]:
    # Call control copies a 38-field frozen record two or three times per request, and
    # ``dataclasses.replace`` (field introspection, keyword __init__, a frozen __setattr__ per
    # field) is a good part of its cost. A CallRecord has no __post_init__ and nothing derived,
    # so writing its slots directly builds exactly the record ``replace`` would, in a third of
    # the time. The copier is generated once from the dataclass's own fields, so a new field
    # is copied without anyone having to remember this function.
    names = [f.name for f in fields(CallRecord)]
    lines = ["def evolve(record, changes):", "    new = new_record(CallRecord)"]
    for name in names:
        lines.append(
            f"    set_{name}(new, changes[{name!r}] if {name!r} in changes else record.{name})"
        )
    lines.append("    return new")
    scope: dict[str, Any] = {"new_record": object.__new__, "CallRecord": CallRecord}
    for name in names:
        scope[f"set_{name}"] = getattr(CallRecord, name).__set__
    exec("\n".join(lines), scope)  # noqa: S102 - source built above from field names only
    evolve: Callable[[CallRecord, dict[str, Any]], CallRecord] = scope["evolve"]
    return evolve


_evolve = _build_evolve()


def evolve(record: CallRecord, **changes: Any) -> CallRecord:
    """``dataclasses.replace(record, **changes)`` for the call-control hot path."""
    unknown = changes.keys() - _CALL_FIELDS
    if unknown:
        raise TypeError(f"CallRecord has no field {sorted(unknown)[0]!r}")
    return _evolve(record, changes)


_CALL_FIELDS = frozenset(f.name for f in fields(CallRecord))


def rate_of(record: CallRecord) -> Rate | None:
    """The rate the call was decided with, rebuilt from the record (a later table never
    changes a call already rated)."""
    if record.rate is None or record.first_increment is None or record.increment is None:
        return None
    return Rate(
        line=record.rate_line or 0,
        service="outbound",
        prefix="",
        country="",
        number_type="any",
        rate=record.rate,
        connection_fee=record.connection_fee or ZERO,
        first_increment=record.first_increment,
        increment=record.increment,
        currency=record.currency,
        effective_from=None,
        effective_to=None,
        description="",
    )
