"""The mail outbox: messages written in the same transaction as the event they report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from commcredits.store.tables import outbox


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: str
    org_id: str | None
    kind: str
    recipients: tuple[str, ...]
    subject: str
    body_text: str
    created_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None


def _message(row: Row[Any]) -> OutboxMessage:
    return OutboxMessage(
        id=row.id,
        org_id=row.org_id,
        kind=row.kind,
        recipients=tuple(row.recipients),
        subject=row.subject,
        body_text=row.body_text,
        created_at=row.created_at,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        sent_at=row.sent_at,
    )


class OutboxRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def add(self, message: OutboxMessage) -> None:
        self.conn.execute(
            insert(outbox).values(
                id=message.id,
                org_id=message.org_id,
                kind=message.kind,
                recipients=list(message.recipients),
                subject=message.subject,
                body_text=message.body_text,
                created_at=message.created_at,
                status=message.status,
                attempts=message.attempts,
                next_attempt_at=message.next_attempt_at,
            )
        )

    def get(self, message_id: str) -> OutboxMessage | None:
        row = self.conn.execute(select(outbox).where(outbox.c.id == message_id)).first()
        return _message(row) if row else None

    def due(self, now: datetime, limit: int) -> list[OutboxMessage]:
        rows = self.conn.execute(
            select(outbox)
            .where(outbox.c.status == "pending", outbox.c.next_attempt_at <= now)
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(limit)
        )
        return [_message(row) for row in rows]

    def next_attempt_at(self) -> datetime | None:
        value: datetime | None = self.conn.execute(
            select(func.min(outbox.c.next_attempt_at)).where(outbox.c.status == "pending")
        ).scalar_one_or_none()
        return value

    def mark_sent(self, message_id: str, at: datetime) -> None:
        self.conn.execute(
            update(outbox)
            .where(outbox.c.id == message_id, outbox.c.status == "pending")
            .values(status="sent", sent_at=at, attempts=outbox.c.attempts + 1, next_attempt_at=None)
        )

    def mark_failed(self, message_id: str, error: str, retry_at: datetime) -> None:
        self.conn.execute(
            update(outbox)
            .where(outbox.c.id == message_id, outbox.c.status == "pending")
            .values(
                last_error=error[:2000], attempts=outbox.c.attempts + 1, next_attempt_at=retry_at
            )
        )

    def list_for_org(
        self, org_id: str, *, kind: str | None = None, limit: int = 100
    ) -> list[OutboxMessage]:
        query = (
            select(outbox)
            .where(outbox.c.org_id == org_id)
            .order_by(outbox.c.created_at.desc(), outbox.c.id.desc())
            .limit(limit)
        )
        if kind:
            query = query.where(outbox.c.kind == kind)
        return [_message(row) for row in self.conn.execute(query)]
