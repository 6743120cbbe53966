"""Throughput as clients grow: 1, 2, 4, ... 128 concurrent clients on many organizations.

Eight organizations, one of them hot (70% of the traffic); each client is a thread calling the
services as the HTTP handlers do, in a loop: mostly a live call (authorize, then end), sometimes
a CDR batch of five finished calls or a signed adjustment. For each number of clients the
figure is operations per second over a fixed time, on a fresh database; its baseline is the
one-client figure of the same run, so the ratio is the scaling. The target is that no client
ever sees an error other than a refusal by a rule (no "database is locked", no deadlock, no
connection-pool time-out) and that the ledger verifies clean afterwards.

SQLite always; PostgreSQL too when ``BENCH_POSTGRES_URL`` names a server (a database is created
per step) or when the PostgreSQL binaries are installed (a throwaway server is started).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import Figure
from commcredits.app import Container, build
from commcredits.domain.errors import CommcreditsError
from commcredits.services.calls import CallRequest, CdrRecord
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization
from commcredits.services.verify import verify_ledger
from commcredits.settings import Settings

ORGS = 8
HOT_SHARE = 0.7
RATES = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,"
    "currency,effective_from,effective_to,description\n"
    "outbound,,US,any,0.0100,,60,60,USD,2020-01-01,,bench\n"
)


@dataclass
class Step:
    clients: int
    operations: int = 0
    refusals: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    ledger_clean: bool = True

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0


def _setup(container: Container) -> list[str]:
    container.rating.load(RATES, "bench")
    orgs = []
    for n in range(ORGS):
        org = container.orgs.create(NewOrganization(f"Bench {n}", "US", "USD", "prepaid")).id
        method = container.credits.add_agreement(org, f"EA-{n}")
        container.credits.place_order(org, NewOrder("1000000.00", method.id))
        for sku in ("MCOEV", "MCOPSTN_PAYG_1"):
            container.directory.set_subscription(org, sku, 2, actor="bench")
        container.directory.create_user(org, f"pat@o{n}.example", "Pat", "US", actor="bench")
        container.directory.change_licenses(
            org, f"pat@o{n}.example", ["MCOEV", "MCOPSTN_PAYG_1", "MCOPSTNPP"], [], actor="bench"
        )
        orgs.append(org)
    return orgs


def _client(
    container: Container, orgs: list[str], step: Step, seed: int, lock: threading.Lock
) -> Callable[[threading.Barrier, threading.Event], None]:
    rng = random.Random(seed)

    def one(n: int) -> None:
        org = orgs[0] if rng.random() < HOT_SHARE else rng.choice(orgs[1:])
        user = f"pat@o{orgs.index(org)}.example"
        tag = f"{seed}-{n}"
        roll = rng.random()
        if roll < 0.8:
            request = CallRequest(tag, "user_out", user, "+12125550100", "+12125550199")
            if container.calls.authorize(org, request).decision == "allow":
                container.calls.end(org, tag, rng.randint(1, 300))
        elif roll < 0.9:
            start = container.clock.now()
            container.calls.import_cdrs(
                org,
                [
                    CdrRecord(
                        f"{tag}-{i}", "user_out", user, "+12125550100", "+12125550199", start, 90
                    )
                    for i in range(5)
                ],
            )
        else:
            container.credits.adjust(org, f"{rng.choice('-+')}{rng.randint(1, 9)}.00", "bench")

    def run(start: threading.Barrier, stop: threading.Event) -> None:
        start.wait()
        n = 0
        while not stop.is_set():
            n += 1
            began = time.perf_counter()
            try:
                one(n)
            except CommcreditsError:
                with lock:
                    step.refusals += 1
                continue
            except Exception as exc:  # what a client would get as a 500
                with lock:
                    step.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            took = time.perf_counter() - began
            with lock:
                step.operations += 1
                step.latencies.append(took)

    return run


def _measure(url: str, folder: Path, clients: int, seconds: float) -> Step:
    container = build(
        Settings(
            database_url=url,
            sandbox_journal=None,
            mail_spool_dir=folder / "mail",
            call_slice_seconds=300,
        )
    )
    try:
        orgs = _setup(container)
        step = Step(clients)
        lock = threading.Lock()
        start = threading.Barrier(clients + 1)
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=_client(container, orgs, step, seed, lock), args=(start, stop), daemon=True
            )
            for seed in range(clients)
        ]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        step.seconds = time.perf_counter() - began
        step.ledger_clean = not verify_ledger(container.store)[0]
        return step
    finally:
        container.close()


@contextmanager
def _databases(folder: Path, say: Callable[..., Any]) -> Iterator[list[tuple[str, Any]]]:
    """(name, make_url) pairs: SQLite, and PostgreSQL when one is at hand."""

    def sqlite_url(clients: int) -> str:
        return f"sqlite:///{folder / f'c{clients}.db'}"

    found: list[tuple[str, Any]] = [("sqlite", sqlite_url)]
    server = None
    try:
        from tests.support.postgres import PostgresAdmin, start_postgres

        url = os.environ.get("BENCH_POSTGRES_URL")
        server = PostgresAdmin(url) if url else start_postgres()
    except Exception as exc:  # no PostgreSQL here: SQLite alone
        say(f"  PostgreSQL not available ({exc}); SQLite only")
    if server is not None:
        admin = server

        def pg_url(clients: int) -> str:
            return admin.create_database(f"bench_c{clients}_{uuid.uuid4().hex[:8]}")

        found.append(("postgresql", pg_url))
    try:
        yield found
    finally:
        if server is not None:
            server.stop()


def run(*, quick: bool = False, say: Callable[..., Any] = print) -> list[Figure]:
    seconds = 1.5 if quick else 2.0
    counts = [1, 2, 4, 8, 16, 32, 64, 128]
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp:
        folder = Path(tmp)
        with _databases(folder, say) as databases:
            for name, make_url in databases:
                baseline = None
                for clients in counts:
                    step = _measure(make_url(clients), folder, clients, seconds)
                    latencies = sorted(step.latencies) or [0.0]
                    p99 = latencies[int(len(latencies) * 0.99) - 1 if len(latencies) > 1 else 0]
                    say(
                        f"  {name} {clients:>3} clients: {step.per_second:8.1f} ops/s,"
                        f" p50 {statistics.median(latencies) * 1000:7.1f} ms,"
                        f" p99 {p99 * 1000:7.1f} ms, {step.refusals} refused,"
                        f" {len(step.errors)} errors"
                        + (f" (first: {step.errors[0]})" if step.errors else "")
                        + ("" if step.ledger_clean else ", LEDGER NOT CLEAN")
                    )
                    baseline = baseline or step.per_second
                    figures.append(
                        Figure(
                            figure=f"concurrency {name}, {clients} clients",
                            value=step.per_second,
                            unit="ops/s",
                            baseline=baseline,
                            target="no errors reach clients; ledger clean",
                            met=not step.errors and step.ledger_clean,
                        )
                    )
    return figures
