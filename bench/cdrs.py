"""CDR batches and the expiry sweep on the embedded default (SQLite, WAL, synchronous=FULL).

Figures, each beside a baseline measured in the same run:

* CDRs charged per second: 1,000,000 finished calls (100,000 with ``--quick``) of one
  organization with 1,000 users, through the batched CDR path (``services.cdr_batch``) in
  requests of 100,000 (the API's largest), durable commits. The users hold a realistic mix:
  60% a domestic calling plan with credits (US), 15% domestic and international (GB), 10%
  pay-as-you-go (US), 10% E5 with credits (meeting dial-out), 5% a plan without credits. The
  calls: 60% outbound, of which a quarter international, 20% inbound, 8% meeting dial-out, 4%
  to the organization's toll-free number, the rest emergency, unknown users and bad numbers;
  each user calls from a book of 30 numbers, so some 30,000 distinct destinations. Baseline: a
  plain batched insert (``CallRepository.add_many``) of the first 200,000 of the same call rows
  into a fresh database, same chunks, same durability. Inserting gets slower as a table grows,
  so a baseline of 200,000 rows is if anything faster than one of a million: the ratio is not
  flattered (the full million took a minute of the run). Target: 100,000 calls/s and at
  least 0.25x the baseline.
* Expired lots swept per second: 1,000,000 expired lots (100,000 with ``--quick``) of 100,000
  organizations (10,000), ten expired lots and one live lot each, and one organization in a
  hundred with no live lot, whose balance the sweep takes to zero (the zero-balance mail). Many
  small organizations is the harder case: one big organization is one group of statements, many
  need the per-organization follow-ups. Swept through the ``credit_expiry`` job, then
  ``ledger verify`` must be clean (not timed). Baseline: the floor, the same rows written by
  the bare driver on a copy of the database (:data:`FLOOR_SQL`: the expiry entries, the
  accounts, the lots, in one transaction with one durable commit), with no grouping, no
  follow-ups and no Python in between. Target: under 5 s.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.bare import bare_connection
from bench.report import Figure
from commcredits.app import Container, build
from commcredits.domain.ids import new_id
from commcredits.domain.usage import CallRecord
from commcredits.jobs.catalog import CreditExpiryJob
from commcredits.services.calls import CdrRecord
from commcredits.services.cdr_batch import CdrBatches
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization
from commcredits.services.verify import verify_ledger
from commcredits.settings import Settings
from commcredits.store.tables import (
    user_licenses,
    users,
)
from commcredits.store.usage import CallRepository

SEED = 20261127
REQUEST = 100_000
PLAIN_ROWS = 200_000
"""Rows of the plain-insert baseline: the first charged calls, as many as the quick run's."""
USERS = 1_000
MIX: list[tuple[int, str, tuple[str, ...]]] = [
    (600, "US", ("MCOEV", "MCOPSTN1", "MCOPSTNPP")),
    (150, "GB", ("MCOEV", "MCOPSTN2", "MCOPSTNPP")),
    (100, "US", ("MCOEV", "MCOPSTN_PAYG_1", "MCOPSTNPP")),
    (100, "US", ("SPE_E5", "MCOPSTNPP")),
    (50, "US", ("MCOEV", "MCOPSTN1")),
]
TOLL_FREE = "+18002752273"
DOMESTIC = {"US": "+1212555", "GB": "+44207946"}
ABROAD = ["+3314268", "+4930123", "+3491234", "+390612", "+8130123", "+52551234", "+1416555"]


def _container(folder: Path, name: str) -> Container:
    return build(
        Settings(
            database_url=f"sqlite:///{folder / f'{name}.db'}",
            sandbox_journal=None,
            mail_spool_dir=folder / f"mail-{name}",
        )
    )


def _organization(container: Container) -> tuple[str, list[tuple[str, str]]]:
    """The funded organization and its users as (upn, usage location)."""
    org = container.orgs.create(NewOrganization("Bench", "US", "USD", "prepaid")).id
    method = container.credits.add_agreement(org, "EA-BENCH")
    container.credits.place_order(org, NewOrder("5000000.00", method.id))
    for sku in ("MCOEV", "MCOPSTN1", "MCOPSTN2", "MCOPSTN_PAYG_1", "SPE_E5"):
        container.directory.set_subscription(org, sku, USERS, actor="bench")
    container.directory.add_number(org, TOLL_FREE, "service_toll_free", None, actor="bench")
    now = container.clock.now()
    people: list[tuple[str, str]] = []
    user_rows: list[dict[str, Any]] = []
    license_rows: list[dict[str, Any]] = []
    for count, location, skus in MIX:
        for _ in range(count):
            user_id, upn = new_id("usr"), f"user{len(people):04d}@bench.example"
            people.append((upn, location))
            user_rows.append(
                {
                    "org_id": org,
                    "id": user_id,
                    "upn": upn,
                    "display_name": upn.split("@")[0],
                    "usage_location": location,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            license_rows += [
                {"org_id": org, "user_id": user_id, "sku": sku, "assigned_at": now} for sku in skus
            ]
    with container.store.engine.begin() as conn:
        conn.execute(insert(users), user_rows)
        conn.execute(insert(user_licenses), license_rows)
    return org, people


def _records(people: list[tuple[str, str]], count: int, start: datetime) -> list[CdrRecord]:
    rng = random.Random(SEED)
    books = []
    for _, location in people:
        home = DOMESTIC[location]
        books.append(
            [f"{home}{rng.randint(1000, 9999)}" for _ in range(22)]
            + [f"{rng.choice(ABROAD)}{rng.randint(1000, 9999)}" for _ in range(8)]
        )
    step = timedelta(days=27) / count
    records = []
    for n in range(count):
        who = rng.randrange(len(people))
        upn: str | None = people[who][0]
        mine = f"{DOMESTIC[people[who][1]]}{who:04d}"
        other = rng.choice(books[who])
        roll = rng.random()
        call_type, source, target = "user_out", mine, other
        if roll < 0.20:
            call_type, source, target = "user_in", other, mine
        elif roll < 0.28:
            call_type = "conf_out"
        elif roll < 0.32:
            call_type, source, target, upn = "unassigned_in", other, TOLL_FREE, None
        elif roll < 0.33:
            call_type, target = "emergency_out", "911"
        elif roll < 0.34:
            upn = "nobody@bench.example"
        elif roll < 0.35:
            target = "12"
        elif roll < 0.50:
            target = f"{rng.choice(ABROAD)}{rng.randint(1000, 9999)}"
        duration = int(rng.expovariate(1 / 180)) if rng.random() < 0.95 else 0
        records.append(
            CdrRecord(f"cdr-{n:08d}", call_type, upn, source, target, start + step * n, duration)
        )
    rng.shuffle(records)  # switches send late and out of order
    return records


def _cdr_figures(folder: Path, count: int, say: Callable[..., Any]) -> tuple[float, float]:
    container = _container(folder, "cdrs")
    container.rating.ensure_loaded()
    org, people = _organization(container)
    start = container.clock.now() - timedelta(days=28)
    records = _records(people, count, start)
    batches = CdrBatches(
        container.store, container.clock, container.catalogue, container.rating, container.credits
    )
    plain = _container(folder, "plain")
    plain_org = plain.orgs.create(NewOrganization("Bench", "US", "USD", "prepaid")).id
    say(f"  {count:,} finished calls in requests of {REQUEST:,}")
    charging = inserting = 0.0
    inserted = 0
    statuses: dict[str, int] = {}
    for first in range(0, count, REQUEST):
        began = time.perf_counter()
        results = batches.import_cdrs(org, records[first : first + REQUEST])
        charging += time.perf_counter() - began
        rows: list[CallRecord] = []
        for result in results:
            statuses[result.status] = statuses.get(result.status, 0) + 1
            record = result.record if result.status == "charged" else None
            if record is not None and inserted + len(rows) < PLAIN_ROWS:
                rows.append(replace(record, org_id=plain_org))
        began = time.perf_counter()
        for chunk in range(0, len(rows), 20_000):
            with plain.store.unit_of_work() as uow:
                CallRepository(uow.conn).add_many(rows[chunk : chunk + 20_000])
                uow.commit()
        inserting += time.perf_counter() - began
        inserted += len(rows)
    say(f"  outcomes: {statuses}")
    container.close()
    plain.close()
    return count / charging, inserted / inserting


_EXPIRED = "lots.remaining_micros > 0 AND lots.expires_at <= :now"
FLOOR_SQL = (
    # One entry per expired lot, oldest purchase first, numbered after the account's last.
    "INSERT INTO ledger_entries (org_id, seq, id, at, kind, amount_micros, lot_id,"
    " balance_after_micros, reference, description) SELECT lots.org_id,"
    " credit_accounts.entry_seq + row_number() OVER (PARTITION BY lots.org_id ORDER BY"
    " lots.purchased_at, lots.id), 'txn_' || substr(lots.id, 5), :now, 'expiry',"
    " -lots.remaining_micros, lots.id, credit_accounts.balance_micros -"
    " sum(lots.remaining_micros) OVER (PARTITION BY lots.org_id ORDER BY lots.purchased_at,"
    " lots.id ROWS UNBOUNDED PRECEDING), lots.id, 'lot expired' FROM lots JOIN credit_accounts"
    f" ON credit_accounts.org_id = lots.org_id WHERE {_EXPIRED}",
    "UPDATE credit_accounts SET balance_micros = balance_micros - gone.micros,"
    " entry_seq = entry_seq + gone.count FROM (SELECT org_id, sum(remaining_micros) AS micros,"
    f" count(*) AS count FROM lots WHERE {_EXPIRED} GROUP BY org_id) AS gone"
    " WHERE credit_accounts.org_id = gone.org_id",
    f"UPDATE lots SET remaining_micros = 0 WHERE {_EXPIRED}",
)
"""The expiry sweep's writes as bare SQL: what the sweep cannot do with less."""


def _expiry_floor(database: Path, now: str) -> float:
    """Seconds :data:`FLOOR_SQL` takes on ``database`` with the store's settings, committed."""
    with bare_connection(database) as cursor:
        began = time.perf_counter()
        cursor.execute("BEGIN IMMEDIATE")
        for statement in FLOOR_SQL:
            cursor.execute(statement, {"now": now})
        cursor.execute("COMMIT")
        return time.perf_counter() - began


def _expiry_figure(
    folder: Path, lots_count: int, say: Callable[..., Any]
) -> tuple[float, float, int]:
    container = _container(folder, "expiry")
    now = container.clock.now()
    orgs = lots_count // 10
    bought = now - timedelta(days=400)
    say(f"  {lots_count:,} expired lots of {orgs:,} organizations")

    # Made by SQLite itself from two counters (organization n, lot k), in one transaction with
    # the bare driver: building a million-lot database is not what is measured. Times are the
    # text the store writes (naive UTC with microseconds); purchase times are whole seconds, so
    # SQLite's datetime() arithmetic on them is exact. Lot k of an organization: bought k hours
    # after the first, 50 + k credits, its deposit entry k + 1 with the running balance; lot 10
    # (one organization in a hundred has none) was bought ten days ago and is live.
    def stamp(at: datetime) -> str:
        return at.astimezone(UTC).isoformat(" ", "microseconds")[:26]

    first = bought.replace(microsecond=0)
    live_at = now - timedelta(days=10)
    values = {
        "orgs": orgs,
        "first": stamp(first)[:19],
        "live_at": stamp(live_at),
        "live_expires": stamp(live_at + timedelta(days=365)),
        "first_expires": stamp(first + timedelta(days=365)),
    }
    counters = (
        "WITH RECURSIVE o(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM o WHERE n + 1 < :orgs),"
        " k(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM k WHERE k < 10),"
        " lot(n, k, at, expires) AS (SELECT n, k,"
        " CASE WHEN k < 10 THEN datetime(:first, printf('+%d hours', k)) || '.000000'"
        " ELSE :live_at END,"
        " CASE WHEN k < 10 THEN datetime(:first, printf('+%d hours', k), '+365 days')"
        " || '.000000' ELSE :live_expires END"
        " FROM o, k WHERE k < 10 OR n % 100 != 0) "
    )
    organization = "printf('org_bench%07d', n)"
    # The balance after deposit k: (k + 1) x 50 credits + (0 + 1 + ... + k) credits.
    running = "(k + 1) * 50000000 + 1000000 * k * (k + 1) / 2"
    statements = (
        "INSERT INTO organizations (id, name, country, currency, billing, overage_enabled,"
        f" created_at, updated_at) WITH RECURSIVE o(n) AS (SELECT 0 UNION ALL SELECT n + 1"
        f" FROM o WHERE n + 1 < :orgs) SELECT {organization}, 'Bench ' || n, 'US', 'USD',"
        " 'prepaid', 0, :first || '.000000', :first || '.000000' FROM o",
        "INSERT INTO credit_accounts (org_id, balance_micros, reserved_micros, entry_seq,"
        " invoice_seq, next_expiry_at, zero_notified, recharge_enabled, recharge_status,"
        f" recharge_failures, updated_at) WITH RECURSIVE o(n) AS (SELECT 0 UNION ALL SELECT"
        f" n + 1 FROM o WHERE n + 1 < :orgs) SELECT {organization},"
        " CASE WHEN n % 100 != 0 THEN 605000000 ELSE 545000000 END, 0,"
        " CASE WHEN n % 100 != 0 THEN 11 ELSE 10 END, 0, :first_expires, 0, 0, 'off', 0,"
        " :first || '.000000' FROM o",
        "INSERT INTO lots (org_id, id, source, amount_micros, remaining_micros, purchased_at,"
        f" expires_at) {counters}SELECT {organization},"
        " printf('lot_%07d%02dLOT00000000000000', n, k), 'adjustment',"
        " 50000000 + k * 1000000, 50000000 + k * 1000000, at, expires FROM lot",
        "INSERT INTO ledger_entries (org_id, seq, id, at, kind, amount_micros, lot_id,"
        f" balance_after_micros, reference, description) {counters}SELECT {organization},"
        " k + 1, printf('txn_%07d%02dDEPOSIT00000000000', n, k), at, 'adjustment',"
        f" 50000000 + k * 1000000, printf('lot_%07d%02dLOT00000000000000', n, k), {running},"
        " NULL, 'bench credit' FROM lot",
    )
    began = time.perf_counter()
    raw = container.store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN")  # the store's connections leave transactions to the caller
        for statement in statements:
            cursor.execute(statement, values)
        raw.commit()
        (expired,) = cursor.execute(
            "SELECT count(*) FROM lots WHERE expires_at <= ?", (stamp(now),)
        ).fetchone()
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # the file alone holds it
        cursor.close()
    finally:
        raw.close()
    floor_copy = folder / "expiry-floor.db"
    shutil.copyfile(folder / "expiry.db", floor_copy)
    say(f"  built in {time.perf_counter() - began:.1f} s")
    floor = _expiry_floor(floor_copy, stamp(now))
    floor_copy.unlink()
    say(f"  floor: the same writes as bare SQL in {floor:.2f} s")
    job = CreditExpiryJob(container.credits)
    began = time.perf_counter()
    swept = job.run()
    seconds = time.perf_counter() - began
    assert swept == orgs
    began = time.perf_counter()
    problems, _ = verify_ledger(container.store)
    for problem in problems[:5]:
        say(f"  ledger verify: {problem}")
    say(
        f"  swept {expired:,} lots in {seconds:.2f} s; ledger verify: {len(problems)} problems"
        f" ({time.perf_counter() - began:.1f} s)"
    )
    container.close()
    return seconds, floor, len(problems) + (0 if expired == lots_count else 1)


def run(*, quick: bool, say: Callable[..., Any]) -> list[Figure]:
    calls = 100_000 if quick else 1_000_000
    expired = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rate, plain = _cdr_figures(folder, calls, say)
        seconds, floor, problems = _expiry_figure(folder, expired, say)
    return [
        Figure(
            f"CDRs charged/s ({calls:,} calls, 1,000 users, one org)",
            rate,
            "calls/s",
            plain,
            ">= 100,000/s and >= 0.25x plain batched insert",
            rate >= 100_000 and rate / plain >= 0.25,
        ),
        Figure(
            f"expired lots swept/s ({expired:,} lots, {expired // 10:,} orgs)",
            expired / seconds,
            "lots/s",
            expired / floor,
            "1,000,000 lots under 5 s, ledger verify clean",
            expired / seconds >= 200_000 and problems == 0,
        ),
    ]
