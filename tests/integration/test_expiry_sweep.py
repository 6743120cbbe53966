"""The set-based expiry sweep (R-21) against the per-organization one, with its mails (R-26) and
recharges (R-23). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from commcredits.app import Container
from commcredits.services.expiry import LotExpiry
from commcredits.store.credits import CreditRepository
from tests.integration.test_credits_rules import (
    START,
    add_card,
    auto,
    deposit,
    new_org,
    notices,
    set_clock_without_jobs,
    spend,
)

pytestmark = pytest.mark.usefixtures("ledger_checked")

SWEPT_AT = START + timedelta(days=365 + 31)

# (name, deposits a month apart, spent after the second, auto-recharge)
SHAPES: list[tuple[str, list[str], str, Any]] = [
    ("a live lot stays", ["100.00", "60.00", "50.00"], "120.00", None),
    ("everything expires", ["100.00", "60.00"], "120.00", None),
    ("nothing was left", ["100.00", "60.00"], "160.00", None),
    ("a recharge follows", ["100.00", "60.00", "50.00"], "120.00", auto("60.00", "25.00")),
]


def _orgs(container: Container, sets: int) -> list[list[str]]:
    """``sets`` organizations per shape; lots bought on START, a month and two months later."""
    made: list[list[tuple[str, str, int]]] = []
    for n in range(sets):
        made.append([])
        for shape, (name, amounts, _, settings) in enumerate(SHAPES):
            org = new_org(container, name=f"{name} {n}")
            card = add_card(container, org.id)
            deposit(container, org.id, amounts[0], card.id, auto_recharge=settings)
            made[n].append((org.id, card.id, shape))
    for month in (1, 2):
        set_clock_without_jobs(container, START + timedelta(days=30 * month))
        for org_id, card_id, shape in (org for orgs in made for org in orgs):
            _, amounts, spent, _ = SHAPES[shape]
            if len(amounts) > month:
                deposit(container, org_id, amounts[month], card_id)
            if month == 1:
                spend(container, org_id, spent)
    return [[org_id for org_id, _, _ in orgs] for orgs in made]


def _state(container: Container, org_id: str) -> dict[str, Any]:
    with container.store.unit_of_work(read_only=True) as uow:
        repo = CreditRepository(uow.conn)
        lots = repo.all_lots(org_id)
        index = {lot.id: n for n, lot in enumerate(lots)}
        entries = [
            (
                e.seq,
                e.kind,
                e.amount,
                index.get(e.lot_id or ""),
                e.balance_after,
                e.at,
                index.get(e.reference or "") if e.kind == "expiry" else None,
                e.description if e.kind == "expiry" else None,
                e.id.startswith("txn_") and len(e.id) == 30,
            )
            for e in repo.all_entries(org_id)
        ]
        account = repo.account(org_id)
    assert account is not None
    return {
        "entries": entries,
        "lots": [(lot.source, lot.amount, lot.remaining, lot.expires_at) for lot in lots],
        "account": (
            account.balance,
            account.reserved,
            account.zero_notified,
            account.next_expiry_at,
            account.auto_recharge.status,
        ),
        "orders": [
            (o.kind, o.status, o.amount) for o in container.credits.orders(org_id, kind="recharge")
        ],
        "mail": sorted(m.kind for m in container.mailer.list_for_org(org_id, limit=1000)),
    }


def test_the_set_based_sweep_leaves_every_organization_as_sweeping_it_alone_does(
    container: Container,
) -> None:
    """R-21: one expiry entry per lot with money left, oldest first, with the running balance;
    R-26: the zero mail when the sweep took the balance to zero; R-23: the recharge it starts."""
    alone, together = _orgs(container, 2)
    set_clock_without_jobs(container, SWEPT_AT)
    for org_id in alone:
        container.credits.pay_if_started(container.credits._expire_org(org_id))

    swept = LotExpiry(
        container.store, container.clock, container.credits, orgs_per_transaction=2
    ).sweep()

    assert swept == len([shape for shape in SHAPES if shape[1][1:] and shape[2] != "160.00"])
    for reference, org_id in zip(alone, together, strict=True):
        assert _state(container, org_id) == _state(container, reference)


def test_the_forfeit_is_recorded_and_the_balance_zero_mail_sent_once(
    container: Container,
) -> None:
    """R-21: what was left is forfeited with an entry naming the lot; R-26: the balance reached
    zero, so one mail; a second sweep finds nothing more to do."""
    org_id = _orgs(container, 1)[0][1]  # everything expires
    set_clock_without_jobs(container, SWEPT_AT)
    expiry = LotExpiry(container.store, container.clock, container.credits)

    assert expiry.sweep() == 3  # every shape but the one with nothing left
    assert expiry.sweep() == 0

    state = _state(container, org_id)
    forfeits = [e for e in state["entries"] if e[1] == "expiry"]
    assert [(e[2], e[3], e[4]) for e in forfeits] == [(-40, 1, 0)]
    assert state["account"][:3] == (0, 0, True)
    assert len(notices(container, org_id, "balance_zero")) == 1


def test_the_expiry_job_sweeps_through_the_set_based_sweep(container: Container) -> None:
    """The job runner's credit_expiry job forfeits expired lots of every organization."""
    [orgs] = _orgs(container, 1)
    container.jobs.advance_clock(SWEPT_AT)
    for org_id in orgs:
        with container.store.unit_of_work(read_only=True) as uow:
            repo = CreditRepository(uow.conn)
            assert not [
                lot for lot in repo.all_lots(org_id) if lot.is_expired(SWEPT_AT) and lot.remaining
            ]
