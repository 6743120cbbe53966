"""The jobs the service runs. Later capabilities add theirs to :func:`all_jobs`' list."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from commcredits.adapters.clock import Clock
from commcredits.services.mail import Mailer
from commcredits.store.database import Store
from commcredits.store.idempotency import IdempotencyRepository
from commcredits.store.tables import idempotency_records

IDEMPOTENCY_RETENTION = timedelta(days=30)


class MailDispatchJob:
    """Sends the outbox's due mail."""

    name = "mail_dispatch"

    def __init__(self, mailer: Mailer):
        self.mailer = mailer

    def next_due(self) -> datetime | None:
        return self.mailer.next_due()

    def run(self) -> int:
        result = self.mailer.dispatch_due()
        return result.sent + result.failed


class IdempotencyPurgeJob:
    """Forgets idempotency keys after 30 days, as payment processors do."""

    name = "idempotency_purge"

    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock

    def next_due(self) -> datetime | None:
        with self.store.unit_of_work(read_only=True) as uow:
            oldest: datetime | None = uow.conn.execute(
                select(func.min(idempotency_records.c.created_at))
            ).scalar_one_or_none()
        if oldest is None:
            return None
        # A naive value can come back from an aggregate on SQLite: it is UTC all the same.
        if oldest.tzinfo is None:
            from datetime import UTC

            oldest = oldest.replace(tzinfo=UTC)
        return oldest + IDEMPOTENCY_RETENTION

    def run(self) -> int:
        with self.store.unit_of_work() as uow:
            purged = IdempotencyRepository(uow.conn).purge_before(
                self.clock.now() - IDEMPOTENCY_RETENTION
            )
            uow.commit()
        return purged
