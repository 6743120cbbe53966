"""The jobs the service runs; ``app.build`` lists them in the order they run."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from commcredits.adapters.clock import Clock
from commcredits.domain.credits import EXPIRY_WARNINGS_DAYS
from commcredits.services.advice import Advisor
from commcredits.services.calls import Calls
from commcredits.services.credits import Credits
from commcredits.services.expiry import LotExpiry
from commcredits.services.mail import Mailer
from commcredits.services.overage import OverageInvoicing
from commcredits.services.signin import SignIn
from commcredits.store.database import Store
from commcredits.store.idempotency import IdempotencyRepository
from commcredits.store.tables import idempotency_records
from commcredits.store.types import as_utc

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
        oldest = as_utc(oldest)
        return None if oldest is None else oldest + IDEMPOTENCY_RETENTION

    def run(self) -> int:
        with self.store.unit_of_work() as uow:
            purged = IdempotencyRepository(uow.conn).purge_before(
                self.clock.now() - IDEMPOTENCY_RETENTION
            )
            uow.commit()
        return purged


class CreditExpiryJob:
    """R-21: forfeits what is left in lots whose 12 months are over, every organization's in
    a few set-based statements (``services.expiry``)."""

    name = "credit_expiry"

    def __init__(self, credits: Credits):
        self.credits = credits
        self.expiry = LotExpiry(credits.store, credits.clock, credits)

    def next_due(self) -> datetime | None:
        return self.credits.next_expiry_at()

    def run(self) -> int:
        return self.expiry.sweep()


class ExpiryWarningJob:
    """R-26 (our addition): mails 30 and 7 days before lots with money left expire."""

    name = "lot_expiry_warnings"

    def __init__(self, credits: Credits):
        self.credits = credits

    def next_due(self) -> datetime | None:
        return self.credits.next_warning_at(EXPIRY_WARNINGS_DAYS)

    def run(self) -> int:
        return self.credits.warn_expiring_lots(EXPIRY_WARNINGS_DAYS)


class PendingOrderJob:
    """Pays recharges that were enqueued, and settles payments whose outcome was unknown."""

    name = "credit_orders"

    def __init__(self, credits: Credits):
        self.credits = credits

    def next_due(self) -> datetime | None:
        return self.credits.next_pending_order_at()

    def run(self) -> int:
        return self.credits.pay_pending_orders()


class RechargeRetryJob:
    """R-23 (our choice): retries a declined recharge after 1 h, 6 h and 24 h."""

    name = "recharge_retries"

    def __init__(self, credits: Credits):
        self.credits = credits

    def next_due(self) -> datetime | None:
        return self.credits.next_retry_at()

    def run(self) -> int:
        return self.credits.retry_recharges()


class CallReservationJob:
    """Ends calls whose switch stopped reporting, releasing what they held (reservations)."""

    name = "call_reservations"

    def __init__(self, calls: Calls):
        self.calls = calls

    def next_due(self) -> datetime | None:
        return self.calls.next_expiry()

    def run(self) -> int:
        return self.calls.release_expired()


class OverageInvoiceJob:
    """R-04: at the end of each month, one overage invoice per postpaid organization."""

    name = "overage_invoices"

    def __init__(self, invoicing: OverageInvoicing):
        self.invoicing = invoicing

    def next_due(self) -> datetime | None:
        return self.invoicing.next_due()

    def run(self) -> int:
        return self.invoicing.run()


class ForecastJob:
    """R-26 (our addition): once a day, mails organizations whose balance runs out within a
    week and that have auto-recharge off (R-55's forecast)."""

    name = "balance_forecast"

    def __init__(self, advisor: Advisor):
        self.advisor = advisor

    def next_due(self) -> datetime | None:
        return self.advisor.next_forecast_at()

    def run(self) -> int:
        return self.advisor.forecast_notices()


class ConsolePurgeJob:
    """Deletes console sessions, invitations and sign-in failures a month after they stopped
    mattering (``SignIn.purge``)."""

    name = "console_purge"

    def __init__(self, signin: SignIn):
        self.signin = signin

    def next_due(self) -> datetime | None:
        return self.signin.next_purge_at()

    def run(self) -> int:
        return self.signin.purge()
