"""Crash safety: the real server, killed with SIGKILL at random moments while clients move money.

Clients in threads place orders and adjustments (with ``Idempotency-Key``), run calls
(authorize, usage, end; some never ended, as when a switch dies) and send CDR batches. A killer
sends SIGKILL at random moments and starts the server again; clients retry with the same key
or call id until they get an answer, or give up (then the request is *unacknowledged*: it may
have happened once, never twice). Afterwards the clock moves an hour so the jobs release the
reservations of dead calls and settle orders whose payment was cut off, and then:

* ``commcredits ledger verify`` is clean, and money in = money out + balance + forfeited;
* every acknowledged charge (order, adjustment, call, CDR) is in the ledger exactly once, as
  acknowledged; every card charge in the processor's journal is one paid order (R-27);
* nothing unacknowledged is applied twice; no lot is negative; nothing stays reserved.

``STRESS_CRASH_KILLS`` sets the kills per database (10 by default: 20 in a run on both).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from commcredits.domain.money import from_micros
from commcredits.store import tables
from commcredits.store.database import Store
from tests.conftest import TEMPLATE
from tests.stress.invariants import deep_check
from tests.stress.server import OPERATOR_KEY, Server
from tests.support.postgres import PostgresAdmin

KILLS = int(os.environ.get("STRESS_CRASH_KILLS", "10"))
CLIENTS = 6
RATES = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,"
    "currency,effective_from,effective_to,description\n"
    "outbound,,US,any,0.0500,,60,60,USD,2020-01-01,,US\n"
    "outbound,,GB,any,0.1234,0.0300,30,6,USD,2020-01-01,,GB\n"
)
DESTINATIONS = ["+12125550199", "+442071234567"]
ZERO = Decimal(0)


class GaveUp(Exception):
    """The client stopped retrying: the request is unacknowledged."""


@dataclass
class Ledgerbook:
    """What the clients were told, and what they sent without being told anything."""

    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> response
    adjustments: dict[str, Decimal] = field(default_factory=dict)  # reason -> amount
    adjustments_sent: dict[str, Decimal] = field(default_factory=dict)
    calls: dict[str, Decimal] = field(default_factory=dict)  # call id -> charge
    cdrs: dict[str, str] = field(default_factory=dict)  # call id -> first answer
    unacknowledged: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Client:
    def __init__(self, server: Server, book: Ledgerbook, orgs: list[dict[str, str]], seed: int):
        self.server = server
        self.book = book
        self.orgs = orgs
        self.rng = random.Random(seed)
        self.http = httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
            timeout=30,
        )
        self.name = f"c{seed}"
        self.counter = 0

    def send(self, path: str, body: Any, key: str | None = None) -> httpx.Response:
        """POST until the server answers (it may be dead or restarting); a client that meets a
        dead server may give up, leaving the request unacknowledged."""
        headers = {"Idempotency-Key": key} if key else {}
        patient: bool | None = None
        while True:
            try:
                response = self.http.post(path, json=body, headers=headers)
            except httpx.TransportError:
                if patient is None:
                    patient = self.rng.random() < 0.8  # decided once, at the first failure
                if not patient:
                    raise GaveUp(path) from None
                time.sleep(self.rng.uniform(0.05, 0.3))
                continue
            if response.status_code >= 500:
                with self.book.lock:
                    self.book.server_errors.append(
                        f"{path}: {response.status_code} {response.text}"
                    )
                time.sleep(0.1)
                continue
            return response

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            org = self.rng.choices(self.orgs, [6] + [1] * (len(self.orgs) - 1))[0]
            self.counter += 1
            tag = f"{self.name}-{self.counter}"
            try:
                self.rng.choices([self.order, self.adjust, self.call, self.cdrs], [1, 2, 6, 2])[0](
                    org, tag
                )
            except GaveUp:
                with self.book.lock:
                    self.book.unacknowledged.append(tag)

    def order(self, org: dict[str, str], tag: str) -> None:
        card = org["timeout_card"] if self.rng.random() < 0.3 else org["card"]
        amount = f"{self.rng.randint(50, 200)}.00"
        body = {"amount": amount, "payment_method": card}
        response = self.send(f"/v1/orgs/{org['id']}/credits/orders", body, key=tag)
        assert response.status_code == 201, response.text
        with self.book.lock:
            self.book.orders[tag] = response.json()

    def adjust(self, org: dict[str, str], tag: str) -> None:
        amount = Decimal(self.rng.randint(1, 3000)).scaleb(-2)
        if self.rng.random() < 0.5:
            amount = -amount
        reason = f"crash test {tag}"
        with self.book.lock:
            self.book.adjustments_sent[reason] = amount
        body = {"amount": str(amount), "reason": reason}
        response = self.send(f"/v1/orgs/{org['id']}/credits/adjustments", body, key=tag)
        if response.status_code == 422:
            assert response.json()["error"]["code"] == "insufficient_credits", response.text
            return
        assert response.status_code == 201, response.text
        with self.book.lock:
            self.book.adjustments[reason] = amount

    def call(self, org: dict[str, str], tag: str) -> None:
        base = f"/v1/orgs/{org['id']}/calls"
        body = {
            "call_id": tag,
            "call_type": "user_out",
            "user": org["user"],
            "from": "+12125550100",
            "to": self.rng.choice(DESTINATIONS),
        }
        decision = self.send(base, body)
        assert decision.status_code == 201, decision.text
        if decision.json()["decision"] != "allow":
            return
        used = 0
        for _ in range(self.rng.randint(0, 2)):
            used += self.rng.randint(10, 50)
            answer = self.send(f"{base}/{tag}/usage", {"used_seconds": used})
            assert answer.status_code == 200, answer.text
        if self.rng.random() < 0.1:
            raise GaveUp("the switch died mid-call")  # never ended: the job must release it
        duration = used + self.rng.randint(0, 90)
        ended = self.send(f"{base}/{tag}/end", {"duration_seconds": duration})
        assert ended.status_code == 200, ended.text
        with self.book.lock:
            self.book.calls[tag] = Decimal(ended.json()["charge"])

    def cdrs(self, org: dict[str, str], tag: str) -> None:
        records = [
            {
                "call_id": f"{tag}-{n}",
                "call_type": "user_out",
                "user": org["user"],
                "from": "+12125550100",
                "to": self.rng.choice(DESTINATIONS),
                "start_time": "2026-03-10T08:00:00Z",
                "duration_seconds": self.rng.randint(0, 600),
            }
            for n in range(self.rng.randint(1, 6))
        ]
        response = self.send(f"/v1/orgs/{org['id']}/cdrs", {"records": records})
        assert response.status_code == 200, response.text
        with self.book.lock:
            for result in response.json()["results"]:
                self.book.cdrs[result["call_id"]] = result["status"]


def _setup(server: Server) -> list[dict[str, str]]:
    http = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {OPERATOR_KEY}"}, timeout=30
    )

    def ok(response: httpx.Response) -> Any:
        assert response.status_code < 300, response.text
        return response.json()

    ok(http.put("/v1/rates", content=RATES, headers={"Content-Type": "text/csv"}))
    orgs = []
    for n in range(3):
        org = ok(
            http.post(
                "/v1/orgs",
                json={
                    "name": f"Crash {n}",
                    "country": "US",
                    "currency": "USD",
                    "billing": "prepaid",
                },
            )
        )["id"]

        def card(number: str, org: str = org) -> str:
            body = {
                "type": "card",
                "number": number,
                "exp_month": 12,
                "exp_year": 2099,
                "cvc": "123",
                "holder": "Pat",
            }
            return str(ok(http.post(f"/v1/orgs/{org}/payment-methods", json=body))["id"])

        good, slow = card("4242424242424242"), card("4000000000000119")
        ok(
            http.post(
                f"/v1/orgs/{org}/credits/orders", json={"amount": "100.00", "payment_method": good}
            )
        )
        for sku in ("MCOEV", "MCOPSTN_PAYG_1"):
            ok(http.post(f"/v1/orgs/{org}/subscriptions", json={"sku": sku, "quantity": 5}))
        user = f"ann@crash{n}.example"
        ok(
            http.post(
                f"/v1/orgs/{org}/users",
                json={"upn": user, "display_name": "Ann", "usage_location": "US"},
            )
        )
        ok(
            http.post(
                f"/v1/orgs/{org}/users/{user}/licenses",
                json={"add": ["MCOEV", "MCOPSTN_PAYG_1", "MCOPSTNPP"], "remove": []},
            )
        )
        orgs.append({"id": org, "card": good, "timeout_card": slow, "user": user})
    return orgs


@dataclass
class Run:
    url: str
    folder: Path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def run(request: pytest.FixtureRequest, sqlite_template: Path) -> Iterator[Run]:
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"commcredits-crash-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    if request.param == "sqlite":
        shutil.copyfile(sqlite_template, folder / "commcredits.db")
        yield Run(f"sqlite:///{folder / 'commcredits.db'}", folder)
    else:
        server: PostgresAdmin = request.getfixturevalue("postgres")
        name = f"crash_{uuid.uuid4().hex[:12]}"
        yield Run(server.create_database(name, template=TEMPLATE), folder)
        server.drop_database(name)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(900 if KILLS <= 20 else 0)
def test_sigkill_at_random_moments_loses_nothing_and_charges_nothing_twice(run: Run) -> None:
    """R-27, R-28: durable acknowledgements, idempotent retries, no money invented or lost."""
    rng = random.Random(KILLS)
    server = Server(run.url, run.folder, call_slice_seconds="60", call_reservation_minutes="15")
    server.start()
    try:
        orgs = _setup(server)
        book = Ledgerbook()
        stop = threading.Event()
        clients = [Client(server, book, orgs, seed) for seed in range(CLIENTS)]
        threads = [threading.Thread(target=c.run, args=(stop,)) for c in clients]
        for thread in threads:
            thread.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 1.5))
            server.kill()
            server.start()
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        http = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {OPERATOR_KEY}"}, timeout=60
        )
        now = http.get("/v1/system/clock").json()["now"]
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_epoch(now) + 3600))
        moved = http.post("/v1/system/clock", json={"now": later})
        assert moved.status_code == 200, moved.text
    finally:
        server.stop()

    print(
        f"\n{server.starts - 1} SIGKILLs; acknowledged: {len(book.orders)} orders,"
        f" {len(book.adjustments)} adjustments, {len(book.calls)} calls, {len(book.cdrs)} CDRs;"
        f" {len(book.unacknowledged)} unacknowledged"
    )
    assert server.starts - 1 >= KILLS
    assert book.server_errors == []
    assert len(book.calls) > KILLS  # the traffic really ran between the kills

    verified = server.cli("ledger", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True

    store = Store.from_url(run.url)
    try:
        assert deep_check(store) == []
        _check_acknowledged(store, book, run.folder / "sandbox-payments.jsonl")
    finally:
        store.dispose()


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _check_acknowledged(store: Store, book: Ledgerbook, journal: Path) -> None:
    with store.unit_of_work(read_only=True) as uow:
        conn = uow.conn
        orders = {
            row.idempotency_key: row
            for row in conn.execute(select(tables.credit_orders))
            if row.idempotency_key
        }
        all_orders = list(conn.execute(select(tables.credit_orders)))
        adjustments: dict[str, list[int]] = {}
        for row in conn.execute(
            select(tables.ledger_entries).where(tables.ledger_entries.c.kind == "adjustment")
        ):
            adjustments.setdefault(row.description, []).append(row.amount_micros)
        calls = {row.call_id: row for row in conn.execute(select(tables.calls))}
        accounts = list(conn.execute(select(tables.credit_accounts)))
        lots_negative = conn.execute(
            select(tables.lots.c.id).where(tables.lots.c.remaining_micros < 0)
        ).all()

    charges = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    keys = [c["idempotency_key"] for c in charges]
    assert len(keys) == len(set(keys)), "a card was charged twice under one key"
    succeeded = {
        c["idempotency_key"]: Decimal(c["amount"]) for c in charges if c["status"] == "succeeded"
    }
    for order in all_orders:
        assert order.status != "pending", f"order {order.id} never settled"
        if order.status == "paid" and order.payment_method_id:
            assert succeeded.pop(order.id, None) == from_micros(order.amount_micros), order.id
    assert succeeded == {}, f"money taken for no paid order: {succeeded}"

    for key, answer in book.orders.items():
        stored = orders[key]
        assert stored.id == answer["id"]
        if answer["status"] != "pending":
            assert stored.status == answer["status"], key

    for reason, amount in book.adjustments.items():
        assert [from_micros(sum(adjustments.get(reason, [])))] == [amount], reason
    for reason, moves in adjustments.items():
        # Acknowledged or not, an adjustment moved its amount once, never twice.
        assert from_micros(sum(moves)) == book.adjustments_sent[reason], reason

    for call_id, charge in book.calls.items():
        assert from_micros(calls[call_id].charge_micros) == charge, call_id
    for call_id, status in book.cdrs.items():
        if status in ("charged", "duplicate"):
            assert calls[call_id].status == "ended", call_id
    assert [c.call_id for c in calls.values() if c.status == "active"] == []
    assert [a.org_id for a in accounts if a.reserved_micros != 0] == []
    assert lots_negative == []
