"""Defects the simulation found, each reduced to its smallest reproduction.

Each was fixed; the test stays so that it cannot come back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest

from commcredits.app import Container
from commcredits.services.calls import CallRequest, CdrRecord
from commcredits.services.orgs import NewOrganization
from commcredits.store.database import Store, UnitOfWork

RATES = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,"
    "currency,effective_from,effective_to,description\n"
    "outbound,,US,any,0.0500,,60,60,USD,2020-01-01,,US\n"
)


def _postpaid_with_overage(container: Container) -> str:
    container.rating.load(RATES)
    org = container.orgs.create(
        NewOrganization("Fabrikam", "US", "USD", "postpaid", overage_enabled=True)
    ).id
    for sku in ("MCOEV", "MCOPSTN_PAYG_1"):
        container.directory.set_subscription(org, sku, 1, actor="t")
    container.directory.create_user(org, "ann@fabrikam.example", "Ann", "US", actor="t")
    container.directory.change_licenses(
        org, "ann@fabrikam.example", ["MCOEV", "MCOPSTN_PAYG_1"], [], actor="t"
    )
    return org


def _cdr(call_id: str, start: datetime) -> CdrRecord:
    return CdrRecord(
        call_id, "user_out", "ann@fabrikam.example", "+12125550100", "+12125550199", start, 120
    )


def test_a_late_overage_record_for_an_invoiced_month_is_billed_and_the_jobs_keep_running(
    sqlite_container: Container,
) -> None:
    """R-04: overage appears on an invoice; a CDR may arrive after its month was invoiced."""
    container = sqlite_container
    org = _postpaid_with_overage(container)
    january = container.clock.now().replace(day=20, hour=12)
    container.jobs.advance_clock(january)
    [first] = container.calls.import_cdrs(org, [_cdr("jan-1", january)])
    assert (first.status, first.record and first.record.funding) == ("charged", "overage")
    container.jobs.advance_clock(datetime(2026, 2, 1, 0, 5, tzinfo=january.tzinfo))
    [late] = container.calls.import_cdrs(org, [_cdr("jan-2", january + timedelta(days=11))])
    assert late.status == "charged"

    container.jobs.run_due()  # raises IntegrityError: UNIQUE invoices.org_id, invoices.number

    assert container.calls.get(org, "jan-2").charge > 0
    billed = [i for i in container.credits.invoices(org) if i.kind == "overage"]
    assert sum(i.amount for i in billed) == 2 * first.charge  # type: ignore[operator]


def test_an_overage_call_over_midnight_at_the_end_of_the_month_is_billed_once(
    sqlite_container: Container,
) -> None:
    """R-04: a call that starts on the last evening of a month belongs to that month."""
    container = sqlite_container
    org = _postpaid_with_overage(container)
    eve = datetime(2026, 1, 31, 23, 58, tzinfo=container.clock.now().tzinfo)
    container.jobs.advance_clock(eve)
    [earlier] = container.calls.import_cdrs(org, [_cdr("jan-1", eve - timedelta(days=2))])
    assert earlier.status == "charged"
    live = container.calls.authorize(
        org,
        CallRequest("midnight", "user_out", "ann@fabrikam.example", "+12125550100", "+12125550199"),
    )
    assert (live.decision, live.funding) == ("allow", "overage")
    container.jobs.advance_clock(eve + timedelta(minutes=4))  # January is invoiced
    container.calls.end(org, "midnight", 200)

    container.jobs.run_due()  # raises IntegrityError: UNIQUE invoices.org_id, invoices.number

    assert container.calls.get(org, "midnight").invoice_id is not None


def test_the_call_writer_never_opens_a_second_connection_inside_its_transaction(
    sqlite_container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A unit of work opened inside another holds two pooled connections at once. When every
    pooled connection belongs to a request waiting for the write lock the writer holds, the
    writer waits for a connection and they wait for the writer, until the pool times out and
    the clients get errors (seen in test_concurrency and ``bench concurrency`` at 128 clients)."""
    container = sqlite_container
    org = _postpaid_with_overage(container)
    nested: list[str] = []
    depth = threading.local()
    opened = Store.unit_of_work

    @contextmanager
    def watched(self: Store, *, read_only: bool = False) -> Iterator[UnitOfWork]:
        if getattr(depth, "n", 0):
            nested.append(threading.current_thread().name)
        depth.n = getattr(depth, "n", 0) + 1
        try:
            with opened(self, read_only=read_only) as uow:
                yield uow
        finally:
            depth.n -= 1

    monkeypatch.setattr(Store, "unit_of_work", watched)
    container.rating.load(RATES, "again")  # a new table: the writer reads it on its next batch
    request = CallRequest("c1", "user_out", "ann@fabrikam.example", "+12125550100", "+12125550199")
    container.calls.authorize(org, request)
    assert nested == []
