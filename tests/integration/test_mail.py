"""Mail: the outbox, real SMTP delivery to a local server, retries, the spool folder."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from commcredits.adapters.mail import MailDeliveryError, SmtpTransport, SpoolTransport
from commcredits.app import Container, build
from commcredits.services import mail
from commcredits.store.outbox import OutboxRepository
from tests.conftest import make_settings
from tests.support.smtp import SmtpTestServer


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def smtp_container(database_url: str, tmp_path: Path, smtp: SmtpTestServer) -> Iterator[Container]:
    built = build(make_settings(database_url, tmp_path, smtp_url=smtp.url))
    yield built
    built.close()


def _queue(container: Container, recipients: list[str], subject: str = "Recharge succeeded") -> str:
    with container.store.unit_of_work() as uow:
        message = mail.enqueue(
            uow,
            org_id=None,
            kind="recharge_succeeded",
            recipients=recipients,
            subject=subject,
            body="Your balance was recharged with 100.00 USD.",
            now=container.clock.now(),
        )
        uow.commit()
    return message.id


def _stored(container: Container, message_id: str) -> mail.OutboxMessage:
    with container.store.unit_of_work(read_only=True) as uow:
        found = OutboxRepository(uow.conn).get(message_id)
    assert found is not None
    return found


def test_a_queued_mail_reaches_the_smtp_server(
    smtp_container: Container, smtp: SmtpTestServer
) -> None:
    message_id = _queue(smtp_container, ["billing@contoso.example", "cfo@contoso.example"])
    smtp_container.jobs.run_due()
    [received] = smtp.wait_for(1)
    assert sorted(received.rcpt_tos) == ["billing@contoso.example", "cfo@contoso.example"]
    assert received.message["Subject"] == "Recharge succeeded"
    assert received.message["Message-ID"] == f"<{message_id}@commcredits.invalid>"
    assert "100.00 USD" in received.message.get_content()
    stored = _stored(smtp_container, message_id)
    assert stored.status == "sent"
    assert stored.sent_at is not None


def test_a_refused_delivery_is_kept_and_retried_until_it_arrives(
    smtp_container: Container, smtp: SmtpTestServer
) -> None:
    smtp.fail_next(1)
    message_id = _queue(smtp_container, ["billing@contoso.example"])
    smtp_container.jobs.run_due()
    stored = _stored(smtp_container, message_id)
    assert stored.status == "pending"
    assert stored.attempts == 1
    assert stored.last_error is not None
    assert "451" in stored.last_error
    assert smtp.messages == []
    smtp_container.jobs.advance_clock(smtp_container.clock.now() + timedelta(minutes=5))
    assert len(smtp.wait_for(1)) == 1
    assert _stored(smtp_container, message_id).status == "sent"


def test_a_mail_with_nobody_to_tell_is_recorded_but_never_sent(
    smtp_container: Container, smtp: SmtpTestServer
) -> None:
    message_id = _queue(smtp_container, [])
    assert smtp_container.jobs.run_due() == []
    assert _stored(smtp_container, message_id).status == "no_recipients"
    assert smtp.messages == []


def test_an_unreachable_server_is_a_delivery_error_not_a_crash() -> None:
    transport = SmtpTransport("smtp://127.0.0.1:9", timeout=1)
    with pytest.raises(MailDeliveryError):
        transport.send(EmailMessage())


def test_without_smtp_mail_is_written_to_the_spool_folder(
    database_url: str, tmp_path: Path
) -> None:
    container = build(make_settings(database_url, tmp_path))
    assert isinstance(container.mailer.transport, SpoolTransport)
    message_id = _queue(container, ["billing@contoso.example"])
    container.jobs.run_due()
    written = tmp_path / "mail" / f"{message_id}@commcredits.invalid.eml"
    assert written.exists()
    assert "Subject: Recharge succeeded" in written.read_text()
    container.close()


def test_smtp_urls_carry_credentials_and_tls_choices() -> None:
    plain = SmtpTransport("smtp://mailer:s%40cret@mail.example:2525?starttls=true")
    assert (plain.host, plain.port, plain.username, plain.password) == (
        "mail.example",
        2525,
        "mailer",
        "s@cret",
    )
    assert plain.starttls
    assert not plain.implicit_tls
    implicit = SmtpTransport("smtps://mail.example")
    assert implicit.implicit_tls
    assert implicit.port == 465
    with pytest.raises(ValueError, match="smtp://"):
        SmtpTransport("http://mail.example")
