"""Stored responses of requests made with an ``Idempotency-Key``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from commcredits.store.tables import idempotency_records

PENDING_STATUS = 0
"""Status of a claimed key whose transaction has not committed yet (never visible to others)."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    fingerprint: str
    status_code: int
    body: str


class IdempotencyRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def get(self, scope: str, key: str) -> StoredResponse | None:
        row = self.conn.execute(
            select(
                idempotency_records.c.fingerprint,
                idempotency_records.c.status_code,
                idempotency_records.c.response_body,
            ).where(idempotency_records.c.scope == scope, idempotency_records.c.key == key)
        ).first()
        return StoredResponse(row.fingerprint, row.status_code, row.response_body) if row else None

    def claim(self, scope: str, key: str, fingerprint: str, at: datetime) -> None:
        """Insert the key; a concurrent claim of the same key fails on the primary key."""
        self.conn.execute(
            insert(idempotency_records).values(
                scope=scope,
                key=key,
                fingerprint=fingerprint,
                status_code=PENDING_STATUS,
                response_body="",
                created_at=at,
            )
        )

    def complete(self, scope: str, key: str, status_code: int, body: str) -> None:
        self.conn.execute(
            update(idempotency_records)
            .where(idempotency_records.c.scope == scope, idempotency_records.c.key == key)
            .values(status_code=status_code, response_body=body)
        )

    def purge_before(self, cutoff: datetime) -> int:
        result = self.conn.execute(
            delete(idempotency_records).where(idempotency_records.c.created_at <= cutoff)
        )
        return result.rowcount
