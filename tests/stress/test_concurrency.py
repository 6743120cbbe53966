"""Many organizations and many clients at once, one organization taking most of the traffic, on
SQLite and PostgreSQL: no overdraft (R-28), and no lock error ("database is locked", deadlock,
serialization failure, an exhausted connection pool) ever reaches a client; a request is either
done or refused by a rule.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from commcredits.app import Container, build
from commcredits.domain.errors import CommcreditsError
from commcredits.services.calls import CallRequest, CdrRecord
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization
from commcredits.services.verify import verify_ledger
from tests.conftest import CollectingTransport, make_settings
from tests.stress.invariants import deep_check

RATES = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,"
    "currency,effective_from,effective_to,description\n"
    "outbound,,US,any,2.5000,,60,60,USD,2020-01-01,,US\n"
)
ORGS = 8
CLIENTS = 48
OPS_PER_CLIENT = 12
ZERO = Decimal(0)
# What a rule may answer under contention; anything else reaching a client is a failure.
REFUSALS = {"insufficient_credits"}


@dataclass
class Tally:
    errors: list[str] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def busy(database_url: str, tmp_path: Path) -> Iterator[Container]:
    built = build(
        make_settings(database_url, tmp_path, call_slice_seconds=60, clock="system"),
        transport=CollectingTransport(),
    )
    yield built
    built.close()


def _orgs(container: Container) -> list[str]:
    container.rating.load(RATES)
    orgs = []
    for n in range(ORGS):
        org = container.orgs.create(NewOrganization(f"Org {n}", "US", "USD", "prepaid")).id
        method = container.credits.add_agreement(org, f"EA-{n}")
        # The hot organization starts with little, so its callers race for the last credits.
        container.credits.place_order(org, NewOrder("60.00" if n == 0 else "500.00", method.id))
        for sku in ("MCOEV", "MCOPSTN_PAYG_1"):
            container.directory.set_subscription(org, sku, 2, actor="t")
        container.directory.create_user(org, f"ann@o{n}.example", "Ann", "US", actor="t")
        container.directory.change_licenses(
            org, f"ann@o{n}.example", ["MCOEV", "MCOPSTN_PAYG_1", "MCOPSTNPP"], [], actor="t"
        )
        orgs.append(org)
    return orgs


def _client(
    container: Container, orgs: list[str], tally: Tally, seed: int
) -> Callable[[threading.Barrier], None]:
    rng = random.Random(seed)

    def one(org: str, n: int) -> None:
        user = f"ann@o{orgs.index(org)}.example"
        kind = rng.choices(["call", "cdrs", "debit", "credit", "order"], [6, 2, 2, 1, 1])[0]
        tag = f"{seed}-{n}"
        if kind == "call":
            request = CallRequest(tag, "user_out", user, "+12125550100", "+12125550199")
            record = container.calls.authorize(org, request)
            if record.decision == "allow":
                container.calls.usage(org, tag, 30)
                container.calls.end(org, tag, rng.randint(1, 150))
        elif kind == "cdrs":
            start = container.clock.now()
            records = [
                CdrRecord(f"{tag}-{i}", "user_out", user, "+12125550100", "+12125550199", start, 61)
                for i in range(3)
            ]
            container.calls.import_cdrs(org, records)
        elif kind == "debit":
            container.credits.adjust(org, f"-{rng.randint(1, 40)}.00", f"debit {tag}")
        elif kind == "credit":
            container.credits.adjust(org, f"{rng.randint(1, 20)}.00", f"credit {tag}")
        else:
            method = container.credits.payment_methods(org)[0]
            container.credits.place_order(org, NewOrder("50.00", method.id))

    def run(start: threading.Barrier) -> None:
        start.wait()
        for n in range(OPS_PER_CLIENT):
            org = orgs[0] if rng.random() < 0.7 else rng.choice(orgs[1:])
            try:
                one(org, n)
            except CommcreditsError as exc:
                with tally.lock:
                    tally.refusals[exc.code] = tally.refusals.get(exc.code, 0) + 1
                    if exc.code not in REFUSALS:
                        tally.errors.append(f"{exc.code}: {exc}")
            except Exception as exc:  # a lock error, a pool time-out, a 500 in the making
                with tally.lock:
                    tally.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                with tally.lock:
                    tally.done += 1

    return run


def test_many_clients_on_many_organizations_never_overdraw_and_never_see_a_lock_error(
    busy: Container,
) -> None:
    container = busy
    orgs = _orgs(container)
    tally = Tally()
    start = threading.Barrier(CLIENTS)
    threads = [
        threading.Thread(target=_client(container, orgs, tally, seed), args=(start,))
        for seed in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert tally.errors == [], (
        len(tally.errors),
        tally.done,
        sorted(set(e[:120] for e in tally.errors)),
    )
    assert tally.done + sum(tally.refusals.values()) == CLIENTS * OPS_PER_CLIENT
    assert tally.refusals.get("insufficient_credits", 0) > 0  # the hot balance really ran dry
    problems, totals = verify_ledger(container.store)
    assert [str(p) for p in problems] == []
    assert deep_check(container.store) == []
    for total in totals:
        # never more spent than came in; the balance is what is left.
        assert total.balance >= ZERO
        assert total.spent <= total.credited
        assert total.credited == total.spent + total.forfeited + total.balance
    for org in orgs:
        view = container.credits.view(org)
        assert view.reserved == ZERO
        assert all(lot.remaining >= ZERO for lot in view.lots)
