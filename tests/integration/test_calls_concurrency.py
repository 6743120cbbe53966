"""Concurrent calls against one balance, on SQLite and on PostgreSQL (R-28, R-33)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from commcredits.app import Container, build
from commcredits.services.calls import CallRequest, CdrRecord
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization
from tests.conftest import CollectingTransport, assert_ledger_clean, make_settings

HEADER = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,"
    "currency,effective_from,effective_to,description\n"
)
# 2.50 a minute, whole minutes: a 50.00 deposit (the minimum, R-20) pays exactly 20 minutes.
RATES = HEADER + "outbound,,US,any,2.50,,60,60,USD,2020-01-01,,US (test)\n"
CALLS = 200
THREADS = 32


@pytest.fixture
def calls_container(
    database_url: str, tmp_path: Path, mail: CollectingTransport
) -> Iterator[Container]:
    """The service with one-minute slices, so each allowed call reserves exactly one rate."""
    built = build(make_settings(database_url, tmp_path, call_slice_seconds=60), transport=mail)
    yield built
    assert_ledger_clean(built)
    built.close()


def _payg_org(container: Container) -> str:
    """A US organization with 50.00 of credits and one PAYG user holding MCOPSTNPP."""
    container.rating.load(RATES)
    org = container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid"))
    method = container.credits.add_agreement(org.id, "EA-1")
    container.credits.place_order(org.id, NewOrder("50.00", method.id))
    directory = container.directory
    directory.set_subscription(org.id, "MCOEV", 1, actor="t")
    directory.set_subscription(org.id, "MCOPSTN_PAYG_1", 1, actor="t")
    directory.create_user(org.id, "ann@contoso.com", "Ann", "US", actor="t")
    directory.change_licenses(
        org.id, "ann@contoso.com", ["MCOEV", "MCOPSTN_PAYG_1", "MCOPSTNPP"], [], actor="t"
    )
    return org.id


def _in_threads(count: int, threads: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(0..count-1)`` on ``threads`` threads released together by a barrier."""
    results: list[object] = [RuntimeError("did not run")] * count
    start = threading.Barrier(threads)

    def run(worker: int) -> None:
        start.wait()
        for index in range(worker, count, threads):
            try:
                results[index] = work(index)
            except BaseException as exc:  # collected for the assertions
                results[index] = exc

    pool = [threading.Thread(target=run, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return results


def test_200_concurrent_calls_against_a_balance_that_funds_20_allow_exactly_20(
    calls_container: Container,
) -> None:
    """R-28: the balance minus reservations never goes below zero, whatever the concurrency."""
    container = calls_container
    org_id = _payg_org(container)

    def call(index: int) -> object:
        request = CallRequest(
            f"call-{index:03d}", "user_out", "ann@contoso.com", "+12125550100", "+12125550199"
        )
        return container.calls.authorize(org_id, request)

    results = _in_threads(CALLS, THREADS, call)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    allowed = [r for r in results if getattr(r, "decision", None) == "allow"]
    denied = [r for r in results if getattr(r, "decision", None) == "deny"]
    assert len(allowed) == 20
    assert len(denied) == CALLS - 20
    assert {(r.funding, r.capability, r.granted_seconds) for r in allowed} == {  # type: ignore[attr-defined]
        ("credits", "MCOPSTNPP", 60)
    }
    assert {r.reason for r in denied} == {"no_credits"}  # type: ignore[attr-defined]
    view = container.credits.view(org_id)
    assert view.balance == Decimal("50.00")
    assert view.reserved == Decimal("50.00")
    assert view.available == Decimal("0.00")

    for record in allowed:
        ended = container.calls.end(org_id, record.call_id, 60)  # type: ignore[attr-defined]
        assert ended.charge == Decimal("2.50")
    view = container.credits.view(org_id)
    assert view.balance == Decimal("0.00")
    assert view.reserved == Decimal("0.00")
    assert all(lot.remaining >= 0 for lot in view.lots)


def test_two_concurrent_cdr_batches_with_overlapping_call_ids_charge_each_call_once(
    calls_container: Container,
) -> None:
    container = calls_container
    org_id = _payg_org(container)
    start = container.clock.now() - timedelta(hours=1)

    def cdr(n: int) -> CdrRecord:
        return CdrRecord(
            f"cdr-{n}",
            "user_out",
            "ann@contoso.com",
            "+12125550100",
            "+12125550199",
            start + timedelta(minutes=n),
            30,
        )

    batches = [[cdr(n) for n in range(0, 6)], [cdr(n) for n in range(3, 9)]]
    results = _in_threads(2, 2, lambda i: container.calls.import_cdrs(org_id, batches[i]))
    assert not [r for r in results if isinstance(r, BaseException)], results
    statuses: dict[str, list[str]] = {}
    for batch in results:
        for result in batch:  # type: ignore[attr-defined]
            statuses.setdefault(result.call_id, []).append(result.status)
    assert sorted(statuses) == [f"cdr-{n}" for n in range(9)]
    for call_id, seen in statuses.items():
        assert seen.count("charged") == 1, (call_id, seen)
        assert set(seen) <= {"charged", "duplicate"}
    # Nine calls of 30 s, each billed one whole minute at 2.50, charged once each.
    view = container.credits.view(org_id)
    assert view.balance == Decimal("50.00") - 9 * Decimal("2.50")
    assert view.reserved == Decimal("0.00")
