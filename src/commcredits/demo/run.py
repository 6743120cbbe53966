"""Running the demo in-process: which database it may use, the run itself, the read-back.

The scenario talks HTTP to the real application through Litestar's ``TestClient``: the same
guards, validation, serialization and services as a request from outside, without a socket,
so the demo needs no free port and is deterministic; the same container then serves it.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from litestar.testing import TestClient
from sqlalchemy import make_url

from commcredits.adapters.clock import SystemClock
from commcredits.api.app import create_app
from commcredits.app import Container
from commcredits.demo.api import DemoApi
from commcredits.demo.people import ORG_NAME
from commcredits.demo.scenario import (
    SIGNUP,
    DemoOptions,
    DemoResult,
    Progress,
    Scenario,
    end_of_demo,
)
from commcredits.demo.summary import DemoSummary, LedgerCheck, read_summary
from commcredits.services.keys import IssuedKey, Keys
from commcredits.services.orgs import Organizations
from commcredits.services.verify import verify_ledger
from commcredits.settings import Settings
from commcredits.store import migrate
from commcredits.store.database import Store

OPERATOR_KEY_NAME = "demo operator"
DEFAULT_DATABASE_URL = "sqlite:///var/demo.db"  # also in cli/demo.py, which loads no demo module
DEMO_SLICE_SECONDS = 900
"""The demo's switch takes 15-minute slices of call control (``call_slice_seconds``): the
same decisions and charges as the default 5 minutes, with a third of the requests."""


def demo_settings(database_url: str = DEFAULT_DATABASE_URL, **overrides: Any) -> Settings:
    """Settings for a demo database: the operator's own (environment, ``commcredits.toml``)
    where they cannot change the story (host, port, log level), and the demo's everywhere
    else: a simulated clock that starts at the sign-up, the packaged SKU catalogue, the
    default minimum deposit, mail spooled beside the database and never sent over SMTP, and
    the sandbox card gateway without a journal."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "clock": "simulated",
        "clock_start": SIGNUP.isoformat(),
        "call_slice_seconds": DEMO_SLICE_SECONDS,
        "sku_catalogue": None,
        "minimum_deposit": Decimal("50.00"),
        "smtp_url": None,
        "payment_gateway": "sandbox",
        "sandbox_journal": None,
        "mail_spool_dir": _beside(database_url, "demo-mail"),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


def _beside(database_url: str, name: str) -> Path:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).parent / name
    return Path("var") / name


class DatabaseState(enum.Enum):
    EMPTY = "empty"
    DEMO = "demo"
    FOREIGN = "foreign"
    """Holds something the demo did not make: the demo never writes to it."""


def inspect_database(url: str) -> DatabaseState:
    """What the database at ``url`` holds, read without changing anything."""
    store = Store.from_url(url)
    try:
        if migrate.current_revision(store.engine) is None:
            return DatabaseState.EMPTY
        clock = SystemClock()
        try:
            orgs = Organizations(store, clock).list_orgs(limit=1000)
            platform_keys = Keys(store, clock).list_keys(None)
        except Exception:
            # A schema this version cannot read is certainly not a demo it made.
            return DatabaseState.FOREIGN
    finally:
        store.dispose()
    if any(org.name != ORG_NAME for org in orgs):
        return DatabaseState.FOREIGN
    if any(key.name != OPERATOR_KEY_NAME for key in platform_keys):
        return DatabaseState.FOREIGN
    return DatabaseState.DEMO if orgs else DatabaseState.EMPTY


@dataclass(frozen=True, slots=True)
class DemoOutcome:
    org_id: str
    months: int
    summary: DemoSummary
    operator_key: IssuedKey
    result: DemoResult | None
    """What was sent, when this run built the demo; None when it was built earlier."""


@contextlib.contextmanager
def _quiet_access_log() -> Iterator[None]:
    """Thousands of demo requests would drown the terminal; the log is back for serving."""
    loggers = [logging.getLogger(name) for name in ("commcredits.access", "httpx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class LedgerVerifier:
    """``commcredits ledger verify`` for one organization, in the summary's terms."""

    def __init__(self, store: Store):
        self.store = store

    def __call__(self, org_id: str) -> LedgerCheck:
        problems, [total] = verify_ledger(self.store, org_id)
        return LedgerCheck(
            tuple(str(p) for p in problems),
            total.credited,
            total.spent,
            total.forfeited,
            total.balance,
        )


def built_months(container: Container) -> int:
    """How many whole simulated months the demo in this database has run."""
    now = container.clock.now()
    months = 0
    while months < 12 and end_of_demo(months + 1) <= now:
        months += 1
    return months


def demo_org_id(container: Container) -> str | None:
    found = [org for org in container.orgs.list_orgs(limit=1000) if org.name == ORG_NAME]
    return found[0].id if found else None


def run_demo(
    container: Container, options: DemoOptions, progress: Progress | None = None
) -> DemoOutcome:
    """Build the demo organization and run its months of traffic, or, when this database
    already holds a finished demo, read its summary again."""
    container.rating.ensure_loaded()
    operator = container.keys.create_operator_key(OPERATOR_KEY_NAME)
    with _quiet_access_log(), TestClient(create_app(container)) as client:
        api = DemoApi(client, operator.secret)
        existing = demo_org_id(container)
        result: DemoResult | None = None
        if existing is None:
            result = Scenario(api, options, progress).run()
            org_id, months = result.org_id, options.months
        else:
            org_id, months = existing, built_months(container)
            if months == 0:
                raise UnfinishedDemo(
                    "this demo database holds a run that did not finish; start again with --fresh"
                )
        summary = read_summary(api, org_id, months, LedgerVerifier(container.store))
    return DemoOutcome(org_id, months, summary, operator, result)


class UnfinishedDemo(RuntimeError):
    """The database holds a demo organization whose months were never all simulated."""
