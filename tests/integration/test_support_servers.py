"""The test-support servers start, answer and clean up as promised."""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from sqlalchemy import create_engine, text

from tests.support.postgres import PostgresAdmin, start_postgres
from tests.support.smtp import SmtpTestServer


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresAdmin]:
    with start_postgres() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def scalar(url: str, query: str) -> object:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(query)).scalar_one()
    finally:
        engine.dispose()


def database_exists(postgres: PostgresAdmin, name: str) -> bool:
    query = f"SELECT count(*) FROM pg_database WHERE datname = '{name}'"
    return scalar(postgres.url, query) == 1


@pytest.mark.postgres
def test_postgres_accepts_connections(postgres: PostgresAdmin) -> None:
    assert "PostgreSQL" in str(scalar(postgres.url, "SELECT version()"))
    assert int(str(scalar(postgres.url, "SHOW server_version_num"))) >= 150000


@pytest.mark.postgres
def test_create_and_drop_database(postgres: PostgresAdmin) -> None:
    name = unique("support_check")
    url = postgres.create_database(name)
    assert url.endswith(f"/{name}")
    assert scalar(url, "SELECT current_database()") == name

    postgres.drop_database(name)
    assert not database_exists(postgres, name)
    postgres.drop_database(name)  # dropping a missing database is not an error


@pytest.mark.postgres
def test_create_database_from_template(postgres: PostgresAdmin) -> None:
    template, copy = unique("support_template"), unique("support_copy")
    engine = create_engine(postgres.create_database(template))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE seed (value text)"))
            conn.execute(text("INSERT INTO seed VALUES ('from the template')"))
    finally:
        engine.dispose()  # a template must have no open connections

    try:
        copy_url = postgres.create_database(copy, template=template)
        assert scalar(copy_url, "SELECT value FROM seed") == "from the template"
    finally:
        postgres.drop_database(copy)
        postgres.drop_database(template)


def make_message(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "billing@example.org"
    message["To"] = "customer@example.org"
    message["Subject"] = subject
    message.set_content("Your credits are running low.")
    return message


def test_smtp_receives_message(smtp: SmtpTestServer) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as client:
        client.send_message(make_message("Low balance"))

    [received] = smtp.wait_for(1)
    assert smtp.url == f"smtp://127.0.0.1:{smtp.port}"
    assert received.mail_from == "billing@example.org"
    assert received.rcpt_tos == ["customer@example.org"]
    assert received.message["Subject"] == "Low balance"
    assert received.message.get_content().strip() == "Your credits are running low."


def test_smtp_fail_next_answers_451_once(smtp: SmtpTestServer) -> None:
    smtp.fail_next(1)
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPResponseException) as failure:
            client.send_message(make_message("First try"))
        assert failure.value.smtp_code == 451
        assert smtp.messages == []

        client.send_message(make_message("Second try"))

    [received] = smtp.wait_for(1)
    assert received.message["Subject"] == "Second try"
