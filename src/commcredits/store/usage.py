"""Repositories for calls, minute and message pools, and messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select, update

from commcredits.domain.money import from_micros, to_micros
from commcredits.domain.usage import CallRecord, SmsRecord
from commcredits.store.tables import calls, pool_usage, sms_messages
from commcredits.store.types import as_utc

_MONEY = {
    "charge": "charge_micros",
    "connection_fee_charged": "connection_fee_micros",
    "reserved": "reserved_micros",
}
_TEXT_DECIMALS = ("rate", "connection_fee")


_CALL_FIELDS = tuple(f.name for f in fields(CallRecord))


def _call_values(call: CallRecord) -> dict[str, Any]:
    # Flat fields only: a plain getattr is much cheaper than asdict's deep copy.
    values = {name: getattr(call, name) for name in _CALL_FIELDS}
    for field, column in _MONEY.items():
        values[column] = to_micros(values.pop(field))
    for field in _TEXT_DECIMALS:
        value = values[field]
        values[field] = None if value is None else format(value, "f")
    return values


def _call(row: Row[Any]) -> CallRecord:
    data = dict(row._mapping)
    for field, column in _MONEY.items():
        data[field] = from_micros(data.pop(column))
    for field in _TEXT_DECIMALS:
        data[field] = None if data[field] is None else Decimal(data[field])
    return CallRecord(**data)


# Built once: the call-control hot path runs these for every request, and building a
# statement costs more than executing it.
_GET_CALL = select(calls).where(
    calls.c.org_id == bindparam("k_org"), calls.c.call_id == bindparam("k_call")
)
_SAVE_CALL = (
    update(calls)
    .where(calls.c.org_id == bindparam("k_org"), calls.c.call_id == bindparam("k_call"))
    .values({c.name: bindparam(c.name) for c in calls.c if c.name not in ("org_id", "call_id")})
)
_POOL_USAGE = select(pool_usage.c.pool, pool_usage.c.used, pool_usage.c.reserved).where(
    pool_usage.c.org_id == bindparam("k_org"), pool_usage.c.month == bindparam("k_month")
)
_POOL_ADD = (
    update(pool_usage)
    .where(
        pool_usage.c.org_id == bindparam("k_org"),
        pool_usage.c.month == bindparam("k_month"),
        pool_usage.c.pool == bindparam("k_pool"),
    )
    .values(
        used=pool_usage.c.used + bindparam("k_used"),
        reserved=pool_usage.c.reserved + bindparam("k_reserved"),
    )
)


class CallRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def add(self, call: CallRecord) -> None:
        # The executemany form compiles once and is cached: the hot path's insert.
        self.conn.execute(insert(calls), [_call_values(call)])

    def add_many(self, records: Sequence[CallRecord]) -> None:
        if records:
            self.conn.execute(insert(calls), [_call_values(r) for r in records])

    def save(self, call: CallRecord) -> None:
        values = _call_values(call)
        values["k_org"] = values.pop("org_id")
        values["k_call"] = values.pop("call_id")
        self.conn.execute(_SAVE_CALL, values)

    def get(self, org_id: str, call_id: str) -> CallRecord | None:
        row = self.conn.execute(_GET_CALL, {"k_org": org_id, "k_call": call_id}).first()
        return _call(row) if row else None

    def org_of(self, call_id: str) -> str | None:
        value: str | None = self.conn.execute(
            select(calls.c.org_id)
            .where(calls.c.call_id == call_id)
            .order_by(calls.c.start_time)
            .limit(1)
        ).scalar_one_or_none()
        return value

    def existing_ids(self, org_id: str, call_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(call_ids), 500):
            rows = self.conn.execute(
                select(calls.c.call_id).where(
                    calls.c.org_id == org_id, calls.c.call_id.in_(call_ids[start : start + 500])
                )
            )
            found.update(row.call_id for row in rows)
        return found

    def expired_reservations(self, now: datetime, limit: int = 500) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            select(calls.c.org_id, calls.c.call_id)
            .where(calls.c.status == "active", calls.c.reservation_expires_at <= now)
            .limit(limit)
        )
        return [(row.org_id, row.call_id) for row in rows]

    def next_reservation_expiry(self) -> datetime | None:
        value = self.conn.execute(
            select(func.min(calls.c.reservation_expires_at)).where(calls.c.status == "active")
        ).scalar_one_or_none()
        return as_utc(value)

    def spent_since(self, org_id: str, user_id: str, since: datetime) -> Decimal:
        """What a user's paid calls cost since ``since`` (spend limits, R-37)."""
        value = self.conn.execute(
            select(
                func.coalesce(func.sum(calls.c.charge_micros + calls.c.reserved_micros), 0)
            ).where(
                calls.c.org_id == org_id,
                calls.c.user_id == user_id,
                calls.c.start_time >= since,
            )
        ).scalar_one()
        return from_micros(int(value))


class PoolRepository:
    """Minutes (or messages) used and reserved per organization, month and pool."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def usage(self, org_id: str, month: str) -> dict[str, tuple[int, int]]:
        rows = self.conn.execute(_POOL_USAGE, {"k_org": org_id, "k_month": month})
        return {row.pool: (int(row.used), int(row.reserved)) for row in rows}

    def add(self, org_id: str, month: str, pool: str, used: int = 0, reserved: int = 0) -> None:
        changed = self.conn.execute(
            _POOL_ADD,
            {
                "k_org": org_id,
                "k_month": month,
                "k_pool": pool,
                "k_used": used,
                "k_reserved": reserved,
            },
        )
        if changed.rowcount == 0:
            self.conn.execute(
                insert(pool_usage).values(
                    org_id=org_id,
                    month=month,
                    pool=pool,
                    used=used,
                    reserved=reserved,
                    notified_percent=0,
                )
            )

    def notified(self, org_id: str, month: str, pool: str) -> int:
        value = self.conn.execute(
            select(pool_usage.c.notified_percent).where(
                pool_usage.c.org_id == org_id,
                pool_usage.c.month == month,
                pool_usage.c.pool == pool,
            )
        ).scalar_one_or_none()
        return int(value or 0)

    def mark_notified(self, org_id: str, month: str, pool: str, percent: int) -> None:
        self.conn.execute(
            update(pool_usage)
            .where(
                pool_usage.c.org_id == org_id,
                pool_usage.c.month == month,
                pool_usage.c.pool == pool,
            )
            .values(notified_percent=percent)
        )


class SmsRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def get(self, org_id: str, sms_id: str) -> SmsRecord | None:
        row = self.conn.execute(
            select(sms_messages).where(
                sms_messages.c.org_id == org_id, sms_messages.c.sms_id == sms_id
            )
        ).first()
        if row is None:
            return None
        data = dict(row._mapping)
        data["charge"] = from_micros(data.pop("charge_micros"))
        return SmsRecord(**data)

    def add(self, sms: SmsRecord) -> None:
        values = asdict(sms)
        values["charge_micros"] = to_micros(values.pop("charge"))
        self.conn.execute(insert(sms_messages).values(values))
