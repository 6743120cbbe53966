"""Call charging on the embedded default (SQLite, WAL, synchronous=FULL).

Figures, each beside a baseline measured in the same run:

* authorize+end cycles per second against one organization from 64 concurrent callers,
  in-process and durable: each caller is answered only once the commit holding its request
  is on disk. Through the real service (decision, reservation, rating, ledger entry) and its
  group-commit writer; baseline: the raw group-commit ceiling, the same number of conditional
  balance updates (one per request, two per cycle) through the bare driver, batched 1,000 to a
  commit, as cycles per second.
* the same cycles from 64 callers that each keep ``IN_FLIGHT`` calls going at once (the
  futures of ``authorize_async``/``end_async``, as a switch with many calls on one connection
  would), beside the same raw ceiling.
* CDR batches: finished calls charged per second for one organization, through
  ``import_cdrs`` in batches of 1,000; baseline: a plain batched insert of the same rows.

The targets come from the charging capability: 50,000 cycles/s and 0.15x the ceiling; 100,000
CDRs/s and 0.25x the plain insert. Read the call figure with its bound in mind: a caller has one
request in flight, so 64 callers can put at most 64 requests into a commit, and by Little's law
the cycle rate can never pass 64 / (2 x the time of one durable commit) however little the rest
costs. The run prints the mean batch size and the commit time that set this bound on the
machine it ran on. With calls in flight the bound is the writer's CPU per request instead.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.bare import bare_connection
from bench.report import Figure
from commcredits.app import Container, build
from commcredits.services.calls import CallRequest, CdrRecord
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization
from commcredits.settings import Settings
from commcredits.store.database import create_store_engine

CALLERS = 64
IN_FLIGHT = 16
"""Calls each caller keeps going at once in the second call figure."""
RATES = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,currency,"
    "effective_from,effective_to,description\n"
    "outbound,44,,,0.0100,,60,60,USD,,,bench\n"
)


def _org(folder: Path, name: str) -> tuple[Container, str]:
    container = build(
        Settings(
            database_url=f"sqlite:///{folder / f'{name}.db'}",
            sandbox_journal=None,
            mail_spool_dir=folder / "mail",
        )
    )
    container.rating.load(RATES, "bench")
    org = container.orgs.create(NewOrganization("Bench", "US", "USD", "prepaid")).id
    method = container.credits.add_agreement(org, "EA-BENCH")
    container.credits.place_order(org, NewOrder("1000000", method.id))
    for sku in ("MCOEV", "MCOPSTN1"):
        container.directory.set_subscription(org, sku, 10, actor="bench")
    container.directory.create_user(org, "pat@bench.example", "Pat", "US", actor="bench")
    container.directory.change_licenses(
        org, "pat@bench.example", ["MCOEV", "MCOPSTN1", "MCOPSTNPP"], [], actor="bench"
    )
    return container, org


def _parallel(count: int, work: Callable[[int], None]) -> float:
    per = count // CALLERS
    start = threading.Barrier(CALLERS + 1)

    def run(offset: int) -> None:
        start.wait()
        for i in range(per):
            work(offset * per + i)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(CALLERS)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return per * CALLERS / (time.perf_counter() - began)


def _parallel_in_flight(container: Container, org: str, count: int) -> float:
    """Cycles per second from CALLERS threads each keeping IN_FLIGHT cycles in flight: a
    cycle's end is submitted right behind its authorization, and a caller waits only when
    its window is full."""
    per = count // CALLERS
    start = threading.Barrier(CALLERS + 1)
    failures: list[BaseException] = []

    def run(offset: int) -> None:
        window: deque[Future[Any]] = deque()
        start.wait()
        for i in range(per):
            if len(window) == IN_FLIGHT:
                window.popleft().result()
            call_id = f"f{offset * per + i}"
            call = CallRequest(
                call_id, "user_out", "pat@bench.example", "+14255550100", "+442071234567"
            )
            container.calls.authorize_async(org, call)
            window.append(container.calls.end_async(org, call_id, 61))
        for future in window:
            error = future.exception()
            if error is not None:
                failures.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(CALLERS)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    rate = per * CALLERS / (time.perf_counter() - began)
    if failures:
        raise failures[0]
    return rate


def _commit_time(folder: Path, count: int = 50) -> float:
    """Seconds one durable commit of a one-row update takes on this disk."""
    engine = create_store_engine(f"sqlite:///{folder / 'commit.db'}")
    with engine.connect() as connection:
        connection.execute(text("CREATE TABLE balance (id INTEGER PRIMARY KEY, micros BIGINT)"))
        connection.execute(text("INSERT INTO balance VALUES (1, :m)"), {"m": 10**15})
        connection.commit()
        began = time.perf_counter()
        for _ in range(count):
            connection.execute(
                text("UPDATE balance SET micros = micros - 1 WHERE id = 1 AND micros >= 1")
            )
            connection.commit()
        seconds = (time.perf_counter() - began) / count
    engine.dispose()
    return seconds


CONDITIONAL_UPDATE = "UPDATE balance SET micros = micros - 1 WHERE id = 1 AND micros >= 1"


def _ceiling(folder: Path, cycles: int, batch: int) -> float:
    """The raw group-commit ceiling, in cycles per second: two conditional balance updates a
    cycle (the reservation of its authorize and the settlement of its end), each its own
    statement, ``batch`` of them to a durable commit, through the bare driver on a connection
    with the store's own settings (WAL, synchronous=FULL): no Python but the loop."""
    with bare_connection(folder / "ceiling.db") as cursor:
        cursor.execute("CREATE TABLE balance (id INTEGER PRIMARY KEY, micros BIGINT)")
        cursor.execute("INSERT INTO balance VALUES (1, 1000000000000000)")
        updates = 2 * cycles
        began = time.perf_counter()
        for start in range(0, updates, batch):
            cursor.execute("BEGIN IMMEDIATE")
            for _ in range(min(batch, updates - start)):
                cursor.execute(CONDITIONAL_UPDATE)
            cursor.execute("COMMIT")
        return cycles / (time.perf_counter() - began)


def _plain_insert(folder: Path, count: int) -> float:
    engine = create_store_engine(f"sqlite:///{folder / 'plain.db'}")
    with engine.connect() as connection:
        connection.execute(text("CREATE TABLE c (org TEXT, id TEXT, secs INT, micros BIGINT)"))
        connection.commit()
        rows = [{"org": "o", "id": f"c{n}", "secs": 60, "micros": 10000} for n in range(count)]
        began = time.perf_counter()
        for start in range(0, count, 1000):
            connection.execute(
                text("INSERT INTO c VALUES (:org, :id, :secs, :micros)"), rows[start : start + 1000]
            )
            connection.commit()
        rate = count / (time.perf_counter() - began)
    engine.dispose()
    return rate


def run(*, quick: bool, say: Callable[..., Any]) -> list[Figure]:
    cycles = 640 if quick else 3_200
    cdrs = 2_000 if quick else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        container, org = _org(folder, "calls")

        def cycle(n: int) -> None:
            call = CallRequest(
                f"b{n}", "user_out", "pat@bench.example", "+14255550100", "+442071234567"
            )
            container.calls.authorize(org, call)
            container.calls.end(org, f"b{n}", 61)

        say(f"  {cycles} authorize+end cycles from {CALLERS} callers")
        committer = container.calls.committer
        before = (committer.batches, committer.requests)
        cycle_rate = _parallel(cycles, cycle)
        batches = committer.batches - before[0]
        requests = committer.requests - before[1]
        container.close()

        flight_cycles = cycles * IN_FLIGHT // 2
        container, org = _org(folder, "calls_in_flight")
        say(f"  {flight_cycles} cycles from {CALLERS} callers x {IN_FLIGHT} calls in flight each")
        committer = container.calls.committer
        flight_before = (committer.batches, committer.requests)
        flight_rate = _parallel_in_flight(container, org, flight_cycles)
        flight_batches = committer.batches - flight_before[0]
        flight_requests = committer.requests - flight_before[1]
        max_batch = committer.max_batch
        container.close()

        ceiling = _ceiling(folder, max(requests, flight_requests, 100_000) // 2, 1_000)
        commit = _commit_time(folder)
        say(
            f"  synchronous: {requests} requests in {batches} commits"
            f" (mean batch {requests / batches:.1f}); one durable commit takes"
            f" {commit * 1000:.2f} ms here, so by Little's law {CALLERS} callers with one"
            f" request in flight each cannot pass {CALLERS / (2 * commit):,.0f} cycles/s"
        )
        say(
            f"  in flight: {flight_requests} requests in {flight_batches} commits"
            f" (mean batch {flight_requests / flight_batches:.1f}, at most {max_batch});"
            f" {CALLERS * IN_FLIGHT} requests in flight cap it at"
            f" {min(CALLERS * IN_FLIGHT, max_batch) / (2 * commit):,.0f} cycles/s from commit"
            f" latency alone, so what bounds it here is the writer's CPU per request"
            f" ({1e6 / (2 * flight_rate):,.0f} us of wall time per request)"
        )
        container, org = _org(folder, "cdrs")
        start = datetime(2026, 11, 1, tzinfo=UTC)
        records = [
            CdrRecord(
                f"d{n}",
                "user_out",
                "pat@bench.example",
                "+14255550100",
                "+442071234567",
                start + timedelta(seconds=n),
                61,
            )
            for n in range(cdrs)
        ]
        say(f"  {cdrs} finished calls in batches of 1,000")
        began = time.perf_counter()
        for first in range(0, cdrs, 1000):
            container.calls.import_cdrs(org, records[first : first + 1000])
        cdr_rate = cdrs / (time.perf_counter() - began)
        container.close()
        plain = _plain_insert(folder, cdrs)
    return [
        Figure(
            "call cycles/s (authorize+end, 64 callers, one org)",
            cycle_rate,
            "cycles/s",
            ceiling,
            ">= 50,000/s and >= 0.15x group-commit ceiling",
            cycle_rate >= 50_000 and cycle_rate / ceiling >= 0.15,
        ),
        Figure(
            f"call cycles/s (authorize+end, 64 callers x {IN_FLIGHT} in flight, one org)",
            flight_rate,
            "cycles/s",
            ceiling,
            ">= 50,000/s and >= 0.15x group-commit ceiling",
            flight_rate >= 50_000 and flight_rate / ceiling >= 0.15,
        ),
        Figure(
            "CDRs charged/s (batches of 1,000, one org)",
            cdr_rate,
            "calls/s",
            plain,
            ">= 100,000/s and >= 0.25x plain batched insert",
            cdr_rate >= 100_000 and cdr_rate / plain >= 0.25,
        ),
    ]
