"""Shared fixtures: databases (SQLite and a real PostgreSQL), the container, the HTTP client."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from litestar.testing import TestClient

from commcredits.adapters.mail import MailDeliveryError
from commcredits.api.app import create_app
from commcredits.app import Container, build
from commcredits.services.verify import verify_ledger
from commcredits.settings import Settings
from commcredits.store import migrate
from commcredits.store.database import create_store_engine
from tests.support.postgres import PostgresAdmin, start_postgres

# Tests never read an operator's commcredits.toml or environment.
os.environ["COMMCREDITS_CONFIG"] = "/nonexistent/commcredits.toml"
for name in list(os.environ):
    if name.startswith("COMMCREDITS_") and name not in {
        "COMMCREDITS_CONFIG",
        "COMMCREDITS_TEST_POSTGRES_URL",
    }:
        del os.environ[name]

OPERATOR_KEY = "test-operator-key"
CLOCK_START = "2026-01-15T09:00:00+00:00"
TEMPLATE = "commcredits_template"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresAdmin]:
    """One PostgreSQL server for the session, with a migrated template database."""
    server = start_postgres()
    server.drop_database(TEMPLATE)
    engine = create_store_engine(server.create_database(TEMPLATE))
    migrate.upgrade(engine)
    engine.dispose()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "commcredits.db"
    engine = create_store_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


def _sqlite_url(template: Path, directory: Path) -> str:
    path = directory / "commcredits.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database: each test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield _sqlite_url(request.getfixturevalue("sqlite_template"), tmp_path)
        return
    server: PostgresAdmin = request.getfixturevalue("postgres")
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = server.create_database(name, template=TEMPLATE)
    yield url
    server.drop_database(name)


class CollectingTransport:
    """A mail transport that keeps what it is given (and can be told to fail)."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.failures_left = 0

    def send(self, message: EmailMessage) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise MailDeliveryError("421 try again later")
        self.sent.append(message)


@pytest.fixture
def mail() -> CollectingTransport:
    return CollectingTransport()


def make_settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "clock": "simulated",
        "clock_start": CLOCK_START,
        "operator_key": OPERATOR_KEY,
        "mail_spool_dir": tmp_path / "mail",
        "sandbox_journal": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def container(database_url: str, tmp_path: Path, mail: CollectingTransport) -> Iterator[Container]:
    """The whole service on both databases, with a simulated clock and collected mail."""
    built = build(make_settings(database_url, tmp_path), transport=mail)
    yield built
    built.close()


@pytest.fixture
def sqlite_container(
    tmp_path: Path, mail: CollectingTransport, sqlite_template: Path
) -> Iterator[Container]:
    """The whole service on SQLite only, for tests of behaviour above the store."""
    url = _sqlite_url(sqlite_template, tmp_path)
    built = build(make_settings(url, tmp_path), transport=mail)
    yield built
    built.close()


@pytest.fixture
def client(sqlite_container: Container) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """An HTTP client authenticated as the operator."""
    with TestClient(create_app(sqlite_container)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {OPERATOR_KEY}"
        yield test_client


@pytest.fixture
def db_client(container: Container) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """An HTTP client as the operator, on both databases."""
    with TestClient(create_app(container)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {OPERATOR_KEY}"
        yield test_client


def assert_ledger_clean(container: Container) -> None:
    """`commcredits ledger verify` on everything: the check every money test ends with."""
    problems, _ = verify_ledger(container.store)
    assert [str(p) for p in problems] == []


@pytest.fixture
def ledger_checked(container: Container) -> Iterator[None]:
    """Use in every test that moves money: the ledger must verify clean afterwards."""
    yield
    assert_ledger_clean(container)


@pytest.fixture
def sqlite_ledger_checked(sqlite_container: Container) -> Iterator[None]:
    yield
    assert_ledger_clean(sqlite_container)
