"""Repositories for calls, minute and message pools, and messages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from datetime import datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select, update
from sqlalchemy.engine import Dialect

from commcredits.domain.money import from_micros, to_micros
from commcredits.domain.report_line import pstn_line
from commcredits.domain.usage import CallRecord, SmsRecord
from commcredits.store.database import driver_time
from commcredits.store.tables import calls, pool_usage, rate_tables, sms_messages
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
    values["report_line"], values["report_mask_at"] = _report(call)
    return values


def _report(call: CallRecord) -> tuple[str, int | None] | tuple[None, None]:
    """The report line an ended call is stored with (``domain.report_line``)."""
    return pstn_line(call) or (None, None)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _stored_row(
    r: CallRecord, time: Callable[[datetime | None], datetime | str | None]
) -> dict[str, Any]:
    """A call as the driver stores it: what :func:`_call_values` and the column types make of
    it, in one step (the live writer inserts hundreds per commit)."""
    line, mask_at = _report(r)
    return {
        "org_id": r.org_id,
        "call_id": r.call_id,
        "call_type": r.call_type,
        "user_id": r.user_id,
        "upn": r.upn,
        "display_name": r.display_name,
        "user_location": r.user_location,
        "from_number": r.from_number,
        "to_number": r.to_number,
        "conference_id": r.conference_id,
        "status": r.status,
        "decision": r.decision,
        "reason": r.reason,
        "funding": r.funding,
        "capability": r.capability,
        "external_country": r.external_country,
        "number_type": r.number_type,
        "domestic": r.domestic,
        "pool": r.pool,
        "pool_minutes": r.pool_minutes,
        "reserved_pool_minutes": r.reserved_pool_minutes,
        "rate_table_id": r.rate_table_id,
        "rate_line": r.rate_line,
        "rate": _text(r.rate),
        "connection_fee": _text(r.connection_fee),
        "first_increment": r.first_increment,
        "increment": r.increment,
        "currency": r.currency,
        "charge_micros": to_micros(r.charge),
        "connection_fee_micros": to_micros(r.connection_fee_charged),
        "reserved_micros": to_micros(r.reserved),
        "granted_seconds": r.granted_seconds,
        "used_seconds": r.used_seconds,
        "start_time": time(r.start_time),
        "end_time": time(r.end_time),
        "duration_seconds": r.duration_seconds,
        "reservation_expires_at": time(r.reservation_expires_at),
        "source": r.source,
        "invoice_id": r.invoice_id,
        "report_line": line,
        "report_mask_at": mask_at,
    }


def _call(row: Row[Any]) -> CallRecord:
    data = dict(row._mapping)
    for field, column in _MONEY.items():
        data[field] = from_micros(data.pop(column))
    for field in _TEXT_DECIMALS:
        data[field] = None if data[field] is None else Decimal(data[field])
    return CallRecord(**data)


# Built once: the call-control hot path runs these for every request, and building a
# statement costs more than executing it.
# A record's columns: the report line is written with the call, never read back into it.
_REPORT_COLUMNS = ("report_line", "report_mask_at")
_RECORD_COLUMNS = tuple(c for c in calls.c if c.name not in _REPORT_COLUMNS)
_GET_CALL = select(*_RECORD_COLUMNS).where(
    calls.c.org_id == bindparam("k_org"), calls.c.call_id == bindparam("k_call")
)
_SAVE_CALL = (
    update(calls)
    .where(calls.c.org_id == bindparam("k_org"), calls.c.call_id == bindparam("k_call"))
    .values({c.name: bindparam(c.name) for c in calls.c if c.name not in ("org_id", "call_id")})
)
# What call control changes once a call exists: the grants, reservations and the outcome.
_LIVE_COLUMNS = (
    "status",
    "capability",
    "pool_minutes",
    "reserved_pool_minutes",
    "charge",
    "connection_fee_charged",
    "reserved",
    "granted_seconds",
    "used_seconds",
    "end_time",
    "duration_seconds",
    "reservation_expires_at",
    *_REPORT_COLUMNS,
)
_GET_CALLS = select(*_RECORD_COLUMNS).where(
    calls.c.org_id == bindparam("k_org"), calls.c.call_id.in_(bindparam("k_calls", expanding=True))
)
_POOL_USAGE = select(pool_usage.c.pool, pool_usage.c.used, pool_usage.c.reserved).where(
    pool_usage.c.org_id == bindparam("k_org"), pool_usage.c.month == bindparam("k_month")
)
_POOL_ROWS = select(
    pool_usage.c.pool, pool_usage.c.used, pool_usage.c.reserved, pool_usage.c.notified_percent
).where(pool_usage.c.org_id == bindparam("k_org"), pool_usage.c.month == bindparam("k_month"))
_POOL_MOVE = (
    update(pool_usage)
    .where(
        pool_usage.c.org_id == bindparam("k_org"),
        pool_usage.c.month == bindparam("k_month"),
        pool_usage.c.pool == bindparam("k_pool"),
    )
    .values(
        used=pool_usage.c.used + bindparam("k_used"),
        reserved=pool_usage.c.reserved + bindparam("k_reserved"),
        notified_percent=bindparam("k_notified"),
    )
)
_ACTIVE_TABLE = select(rate_tables.c.id).where(rate_tables.c.active)
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


# The live-call writer inserts and updates hundreds of calls per commit: those two statements
# go to the driver as plain ``executemany`` with positional rows, which skips SQLAlchemy's
# per-row parameter processing (most of the cost of a wide row). Values are converted here
# exactly as the column types would: UTC instants as naive UTC text on SQLite (SQLAlchemy's
# own format) and as aware datetimes on PostgreSQL.
_CALL_COLUMNS = tuple(column.name for column in calls.c)
_LIVE_STORED = tuple(_MONEY.get(name, name) for name in _LIVE_COLUMNS)


_LIVE_UPDATE = (
    update(calls)
    .where(
        calls.c.org_id == bindparam("k_org"),
        calls.c.call_id == bindparam("k_call"),
        # Written only over the state it was computed from: a call another writer moved
        # meanwhile matches no row, and the batch is computed again from the database.
        calls.c.status == bindparam("o_status"),
        calls.c.granted_seconds == bindparam("o_granted"),
        calls.c.used_seconds == bindparam("o_used"),
        calls.c.reserved_micros == bindparam("o_reserved"),
        calls.c.reserved_pool_minutes == bindparam("o_pool"),
    )
    .values({name: bindparam(name) for name in _LIVE_STORED})
)


class _DriverSql:
    """The two statements compiled once per dialect, and rows put in the driver's shape."""

    def __init__(self, dialect: Dialect):
        self.sqlite = dialect.name == "sqlite"
        insert_sql = insert(calls).compile(dialect=dialect)
        update_sql = _LIVE_UPDATE.compile(dialect=dialect)
        self.insert, self.update = str(insert_sql), str(update_sql)
        positional = dialect.paramstyle in ("qmark", "format", "numeric")
        self._insert_order = insert_sql.positiontup if positional else None
        self._update_order = update_sql.positiontup if positional else None

    @staticmethod
    def _shape(
        rows: list[dict[str, Any]], order: Sequence[str] | None
    ) -> list[dict[str, Any]] | list[tuple[Any, ...]]:
        if order is None:
            return rows
        values = itemgetter(*order)
        return [values(row) for row in rows]

    def insert_rows(
        self, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]] | list[tuple[Any, ...]]:
        return self._shape(rows, self._insert_order)

    def update_rows(
        self, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]] | list[tuple[Any, ...]]:
        return self._shape(rows, self._update_order)

    def time(self, value: datetime | None) -> datetime | str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
        return driver_time(value, sqlite=self.sqlite)


_DRIVER_SQL: dict[str, _DriverSql] = {}


def _driver_sql(dialect: Dialect) -> _DriverSql:
    found = _DRIVER_SQL.get(dialect.name)
    if found is None:
        found = _DRIVER_SQL[dialect.name] = _DriverSql(dialect)
    return found


class CallRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def add(self, call: CallRecord) -> None:
        # The executemany form compiles once and is cached: the hot path's insert.
        self.conn.execute(insert(calls), [_call_values(call)])

    def add_many(self, records: Sequence[CallRecord]) -> None:
        if not records:
            return
        sql = _driver_sql(self.conn.dialect)
        rows = [_stored_row(record, sql.time) for record in records]
        self.conn.exec_driver_sql(sql.insert, sql.insert_rows(rows))

    def save(self, call: CallRecord) -> None:
        values = _call_values(call)
        values["k_org"] = values.pop("org_id")
        values["k_call"] = values.pop("call_id")
        self.conn.execute(_SAVE_CALL, values)

    def save_live_many(self, changes: Sequence[tuple[CallRecord, CallRecord]]) -> int:
        """Write what call control changed in many active calls, ``(before, after)`` pairs,
        with one statement: grants, reservations and the end of the call (nothing else of a
        call changes once written). Each row is written only if the stored call still is
        ``before``; returns how many were, so the caller can tell a concurrent change."""
        sql = _driver_sql(self.conn.dialect)
        rows = [
            {
                "k_org": r.org_id,
                "k_call": r.call_id,
                "o_status": "active",
                "o_granted": old.granted_seconds,
                "o_used": old.used_seconds,
                "o_reserved": to_micros(old.reserved),
                "o_pool": old.reserved_pool_minutes,
                "status": r.status,
                "capability": r.capability,
                "pool_minutes": r.pool_minutes,
                "reserved_pool_minutes": r.reserved_pool_minutes,
                "charge_micros": to_micros(r.charge),
                "connection_fee_micros": to_micros(r.connection_fee_charged),
                "reserved_micros": to_micros(r.reserved),
                "granted_seconds": r.granted_seconds,
                "used_seconds": r.used_seconds,
                "end_time": sql.time(r.end_time),
                "duration_seconds": r.duration_seconds,
                "reservation_expires_at": sql.time(r.reservation_expires_at),
                **dict(zip(_REPORT_COLUMNS, _report(r), strict=True)),
            }
            for old, r in changes
        ]
        if not rows:
            return 0
        return int(self.conn.exec_driver_sql(sql.update, sql.update_rows(rows)).rowcount)

    def get(self, org_id: str, call_id: str) -> CallRecord | None:
        row = self.conn.execute(_GET_CALL, {"k_org": org_id, "k_call": call_id}).first()
        return _call(row) if row else None

    def get_many(self, org_id: str, call_ids: Sequence[str]) -> dict[str, CallRecord]:
        """The calls of ``call_ids`` that exist, by call id (one query per 500 ids)."""
        found: dict[str, CallRecord] = {}
        for start in range(0, len(call_ids), 500):
            rows = self.conn.execute(
                _GET_CALLS, {"k_org": org_id, "k_calls": list(call_ids[start : start + 500])}
            )
            for row in rows:
                record = _call(row)
                found[record.call_id] = record
        return found

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

    def rows(self, org_id: str, month: str) -> dict[str, tuple[int, int, int]]:
        """Every pool row of the month: (used, reserved, notified percent) by pool name."""
        rows = self.conn.execute(_POOL_ROWS, {"k_org": org_id, "k_month": month})
        return {
            row.pool: (int(row.used), int(row.reserved), int(row.notified_percent or 0))
            for row in rows
        }

    def move_many(
        self, org_id: str, month: str, moves: Sequence[tuple[str, int, int, int, bool]]
    ) -> None:
        """Apply ``(pool, used delta, reserved delta, notified percent, row exists)`` moves:
        existing rows are updated by their deltas in one statement, new rows inserted in one."""
        updates = [
            {
                "k_org": org_id,
                "k_month": month,
                "k_pool": pool,
                "k_used": used,
                "k_reserved": reserved,
                "k_notified": notified,
            }
            for pool, used, reserved, notified, exists in moves
            if exists
        ]
        inserts = [
            {
                "org_id": org_id,
                "month": month,
                "pool": pool,
                "used": used,
                "reserved": reserved,
                "notified_percent": notified,
            }
            for pool, used, reserved, notified, exists in moves
            if not exists
        ]
        if updates:
            self.conn.execute(_POOL_MOVE, updates)
        if inserts:
            self.conn.execute(insert(pool_usage), inserts)

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


def active_rate_table(conn: Connection) -> str | None:
    """The id of the rate table in force, read inside the caller's transaction."""
    value: str | None = conn.execute(_ACTIVE_TABLE).scalar_one_or_none()
    return value
