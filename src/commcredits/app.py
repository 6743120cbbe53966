"""The composition root: the one place that wires settings, store, adapters and services.

Entrypoints (HTTP, CLI, jobs) receive a :class:`Container`; tests build one with their own
transport, gateway or clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from commcredits.adapters.clock import Clock, SimulatedClock, SystemClock
from commcredits.adapters.mail import MailTransport, SmtpTransport, SpoolTransport
from commcredits.adapters.payments import PaymentGateway, SandboxGateway
from commcredits.domain.licensing import Catalogue
from commcredits.jobs.catalog import (
    CallReservationJob,
    ConsolePurgeJob,
    CreditExpiryJob,
    ExpiryWarningJob,
    ForecastJob,
    IdempotencyPurgeJob,
    MailDispatchJob,
    OverageInvoiceJob,
    PendingOrderJob,
    RechargeRetryJob,
)
from commcredits.jobs.runner import JobRunner
from commcredits.services.advice import Advisor
from commcredits.services.calls import Calls
from commcredits.services.credits import Credits
from commcredits.services.directory import Directory
from commcredits.services.keys import Keys
from commcredits.services.mail import Mailer
from commcredits.services.orgs import Organizations
from commcredits.services.overage import OverageInvoicing
from commcredits.services.rating import Rating
from commcredits.services.signin import SignIn
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
    credits: Credits
    directory: Directory
    catalogue: Catalogue
    rating: Rating
    calls: Calls
    advisor: Advisor
    gateway: PaymentGateway
    jobs: JobRunner
    signin: SignIn

    def close(self) -> None:
        self.calls.close()
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


def make_gateway(settings: Settings) -> PaymentGateway:
    return SandboxGateway(journal_path=settings.sandbox_journal)


def build(
    settings: Settings | None = None,
    *,
    transport: MailTransport | None = None,
    gateway: PaymentGateway | None = None,
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
    gateway = gateway or make_gateway(settings)
    credits = Credits(store, clock, gateway, minimum_deposit=settings.minimum_deposit)
    orgs.billing_listeners.append(credits.on_billing_changed)
    catalogue = Catalogue.load(settings.sku_catalogue)
    directory = Directory(store, clock, catalogue)
    rating = Rating(store, clock)
    calls = Calls(
        store,
        clock,
        catalogue,
        rating,
        credits,
        slice_seconds=settings.call_slice_seconds,
        reservation_ttl=timedelta(minutes=settings.call_reservation_minutes),
    )
    advisor = Advisor(store, clock, catalogue, rating, minimum_deposit=settings.minimum_deposit)
    signin = SignIn(store, clock, keys)
    jobs = JobRunner(
        store,
        clock,
        # In this order: money first (expiry before warnings, so a lot that just expired is not
        # announced), then the mail the money jobs wrote.
        [
            CallReservationJob(calls),
            CreditExpiryJob(credits),
            ExpiryWarningJob(credits),
            RechargeRetryJob(credits),
            OverageInvoiceJob(OverageInvoicing(store, clock)),
            PendingOrderJob(credits),
            ForecastJob(advisor),
            MailDispatchJob(mailer),
            IdempotencyPurgeJob(store, clock),
            ConsolePurgeJob(signin),
        ],
    )
    return Container(
        settings=settings,
        store=store,
        clock=clock,
        mailer=mailer,
        orgs=orgs,
        keys=keys,
        credits=credits,
        directory=directory,
        catalogue=catalogue,
        rating=rating,
        calls=calls,
        advisor=advisor,
        gateway=gateway,
        jobs=jobs,
        signin=signin,
    )
