"""Notifications by mail, through the transactional outbox.

A use case calls :func:`enqueue` inside its own unit of work, so the mail exists exactly when
the event it reports was committed. The dispatcher job sends what is due, one message per
short transaction, and on failure keeps the message and retries with a capped back-off:
mail is never lost, and at worst sent twice after a crash (receivers can tell by Message-ID).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from commcredits.adapters.clock import Clock
from commcredits.adapters.mail import MailDeliveryError, MailTransport
from commcredits.domain.ids import new_id
from commcredits.store.database import Store, UnitOfWork
from commcredits.store.outbox import OutboxMessage, OutboxRepository

FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=1)
BATCH = 100


def retry_delay(attempts: int) -> timedelta:
    """1, 2, 4, ... minutes after each failed attempt, never more than an hour."""
    delay: timedelta = FIRST_RETRY * (2 ** max(attempts - 1, 0))
    return min(delay, LONGEST_RETRY)


def enqueue(
    uow: UnitOfWork,
    *,
    org_id: str | None,
    kind: str,
    recipients: Sequence[str],
    subject: str,
    body: str,
    now: datetime,
) -> OutboxMessage:
    """Queue a mail in the caller's transaction. With nobody to tell it is kept as a record."""
    message = OutboxMessage(
        id=new_id("msg"),
        org_id=org_id,
        kind=kind,
        recipients=tuple(dict.fromkeys(recipients)),
        subject=subject,
        body_text=body,
        created_at=now,
        status="pending" if recipients else "no_recipients",
        attempts=0,
        next_attempt_at=now if recipients else None,
        last_error=None,
        sent_at=None,
    )
    OutboxRepository(uow.conn).add(message)
    return message


@dataclass(frozen=True, slots=True)
class DispatchResult:
    sent: int
    failed: int


class Mailer:
    def __init__(self, store: Store, clock: Clock, transport: MailTransport, sender: str):
        self.store = store
        self.clock = clock
        self.transport = transport
        self.sender = sender

    def build(self, message: OutboxMessage) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = ", ".join(message.recipients)
        email["Subject"] = message.subject
        email["Date"] = format_datetime(message.created_at)
        # Stable across retries, so a message delivered twice can be recognised as one.
        email["Message-ID"] = f"<{message.id}@commcredits.invalid>"
        email["X-Commcredits-Kind"] = message.kind
        email.set_content(message.body_text)
        return email

    def next_due(self) -> datetime | None:
        with self.store.unit_of_work(read_only=True) as uow:
            return OutboxRepository(uow.conn).next_attempt_at()

    def dispatch_due(self) -> DispatchResult:
        now = self.clock.now()
        with self.store.unit_of_work(read_only=True) as uow:
            due = OutboxRepository(uow.conn).due(now, BATCH)
        sent = failed = 0
        for message in due:
            try:
                self.transport.send(self.build(message))
            except MailDeliveryError as exc:
                failed += 1
                with self.store.unit_of_work() as uow:
                    OutboxRepository(uow.conn).mark_failed(
                        message.id, str(exc), now + retry_delay(message.attempts + 1)
                    )
                    uow.commit()
                continue
            sent += 1
            with self.store.unit_of_work() as uow:
                OutboxRepository(uow.conn).mark_sent(message.id, self.clock.now())
                uow.commit()
        return DispatchResult(sent=sent, failed=failed)

    def list_for_org(
        self, org_id: str, *, kind: str | None = None, limit: int = 100
    ) -> list[OutboxMessage]:
        with self.store.unit_of_work(read_only=True) as uow:
            return OutboxRepository(uow.conn).list_for_org(org_id, kind=kind, limit=limit)
