"""The composition root: the one place that wires settings, store, adapters and services.

Entrypoints (HTTP, CLI, jobs) receive a :class:`Container`; tests build one with their own
transport, gateway or clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from commcredits.adapters.clock import Clock, SimulatedClock, SystemClock
from commcredits.adapters.mail import MailTransport, SmtpTransport, SpoolTransport
from commcredits.jobs.catalog import IdempotencyPurgeJob, MailDispatchJob
from commcredits.jobs.runner import JobRunner
from commcredits.services.keys import Keys
from commcredits.services.mail import Mailer
from commcredits.services.orgs import Organizations
from commcredits.settings import Settings
from commcredits.store import migrate
from commcredits.store.database import Store


@dataclass
class Container:
    settings: Settings
    store: Store
    clock: Clock
    mailer: Mailer
    orgs: Organizations
    keys: Keys
    jobs: JobRunner

    def close(self) -> None:
        self.store.dispose()


def make_clock(settings: Settings, store: Store, *, initialise: bool = True) -> Clock:
    if settings.clock == "simulated":
        start = datetime.fromisoformat(settings.clock_start) if settings.clock_start else None
        clock = SimulatedClock(store, start)
        if initialise:
            # Stored now, so later reads never write (they may run inside a transaction).
            clock.now()
        return clock
    return SystemClock()


def make_transport(settings: Settings) -> MailTransport:
    if settings.smtp_url:
        return SmtpTransport(settings.smtp_url)
    return SpoolTransport(settings.mail_spool_dir)


def build(
    settings: Settings | None = None,
    *,
    transport: MailTransport | None = None,
    upgrade: bool = True,
) -> Container:
    """Wire everything. With ``upgrade`` the database schema is brought to the latest version."""
    settings = settings or Settings()
    store = Store.from_url(settings.database_url)
    if upgrade:
        migrate.upgrade(store.engine)
    clock = make_clock(settings, store, initialise=upgrade)
    mailer = Mailer(store, clock, transport or make_transport(settings), settings.mail_from)
    operator_key = settings.operator_key.get_secret_value() if settings.operator_key else None
    orgs = Organizations(store, clock)
    keys = Keys(store, clock, settings_operator_key=operator_key)
    jobs = JobRunner(store, clock, [MailDispatchJob(mailer), IdempotencyPurgeJob(store, clock)])
    return Container(
        settings=settings, store=store, clock=clock, mailer=mailer, orgs=orgs, keys=keys, jobs=jobs
    )
