"""The ledger's write path on the embedded default (SQLite, WAL, synchronous=FULL).

Figure: credit debits per second, one transaction each, through the real service (lock,
FIFO over lots, entries, account row, invariants) from 4 threads against one organization.
Baseline: the same number of bare durable transactions, each a single conditional
``UPDATE`` of one balance row, on the same kind of database in the same run: the ceiling of
one-commit-per-operation on this disk. Group commit (many operations per commit) is how the
call-charging path goes past that ceiling; this figure shows what one commit per movement
costs.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.report import Figure
from commcredits.app import build
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization
from commcredits.settings import Settings
from commcredits.store.database import create_store_engine

THREADS = 4


def _parallel(count: int, work: Callable[[int], None]) -> float:
    per_thread = count // THREADS
    start = threading.Barrier(THREADS + 1)

    def runner(offset: int) -> None:
        start.wait()
        for i in range(per_thread):
            work(offset * per_thread + i)

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return per_thread * THREADS / (time.perf_counter() - began)


def _baseline(folder: Path, count: int) -> float:
    engine = create_store_engine(f"sqlite:///{folder / 'baseline.db'}")
    with engine.connect() as connection:
        connection.execute(text("CREATE TABLE balance (id INTEGER PRIMARY KEY, micros BIGINT)"))
        connection.execute(text("INSERT INTO balance VALUES (1, :m)"), {"m": 10**15})
        connection.commit()

    def debit(_: int) -> None:
        with engine.connect() as connection:
            connection.execute(
                text("UPDATE balance SET micros = micros - 10000 WHERE id = 1 AND micros >= 10000")
            )
            connection.commit()

    rate = _parallel(count, debit)
    engine.dispose()
    return rate


def run(*, quick: bool, say: Callable[..., Any]) -> list[Figure]:
    count = 400 if quick else 4000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        container = build(
            Settings(
                database_url=f"sqlite:///{folder / 'bench.db'}",
                sandbox_journal=None,
                mail_spool_dir=folder / "mail",
            )
        )
        org = container.orgs.create(NewOrganization("Bench", "US", "USD", "prepaid"))
        method = container.credits.add_agreement(org.id, "EA-BENCH")
        for _ in range(4):
            container.credits.place_order(org.id, NewOrder("1000000", method.id))
        say(f"  {count} debits through the service, {THREADS} threads")
        service = _parallel(count, lambda _: container.credits.adjust(org.id, "-0.01", "bench"))
        container.close()
        say(f"  {count} bare durable updates, {THREADS} threads")
        baseline = _baseline(folder, count)
    ratio = service / baseline
    return [
        Figure(
            figure="ledger debits/s (one commit each, SQLite FULL)",
            value=service,
            unit="debits/s",
            baseline=baseline,
            target=">= 0.25x bare durable updates",
            met=ratio >= 0.25,
        )
    ]
