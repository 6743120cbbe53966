"""The credits ledger as a state machine: the real service on a real database, checked step by
step against a small model of lots written here from the rules (R-20..R-24, R-27, R-28).

Deposits by a good or a declined card, adjustments both ways (sometimes more than is there),
auto-recharge settings, time passing with and without the jobs, and billing switches, in any
order. The model knows every lot's amount, remaining, purchase and expiry time and spends them
oldest first; it never borrows the service's ledger functions, so a wrong FIFO order or a debit
drawing on an expired lot shows up as a disagreement. After every step the invariants compare
the two and run ``ledger verify``.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from commcredits.adapters.clock import SimulatedClock
from commcredits.adapters.payments import SandboxGateway
from commcredits.app import Container, build
from commcredits.domain.errors import Conflict, RuleViolation
from commcredits.domain.ledger import Lot
from commcredits.domain.organizations import Billing
from commcredits.services.credits import AutoRechargeSettings, NewOrder
from commcredits.services.orgs import NewOrganization, OrganizationChanges
from commcredits.services.verify import verify_ledger
from tests.conftest import TEMPLATE, CollectingTransport, make_settings
from tests.support.postgres import PostgresAdmin

ZERO = Decimal(0)
CARDS = {"good": "4242424242424242", "declined": "4000000000000002"}
CARD_EXPIRY = (12, 2099)  # far beyond the furthest simulated date a run can reach
EVERYTHING = 1_000_000


def cents(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def twelve_months_after(moment: datetime) -> datetime:
    """R-21: a lot expires 12 months after purchase; 29 February rolls back to the 28th."""
    try:
        return moment.replace(year=moment.year + 1)
    except ValueError:
        return moment.replace(year=moment.year + 1, day=28)


# --- the model -------------------------------------------------------------------------------


@dataclass
class ModelLot:
    id: str
    source: str
    amount: Decimal
    remaining: Decimal
    purchased_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Wanted:
    """Auto-recharge settings as the buyer asks for them; ``card`` is a key of ``CARDS``."""

    enabled: bool
    trigger: Decimal | None = None
    recharge: Decimal | None = None
    card: str | None = None


RECHARGE_OFF = Wanted(enabled=False)

deposit_amounts = st.integers(min_value=5_000, max_value=50_000).map(cents)
adjustment_amounts = st.integers(min_value=1, max_value=30_000).map(cents)
# "Occasionally" declined: one draw in four, and the good card is what shrinking goes to.
deposit_cards = st.sampled_from(["good", "good", "good", "declined"])
recharge_cards = st.sampled_from(["good", "good", "declined"])
wanted_settings = st.one_of(
    st.just(RECHARGE_OFF),
    st.builds(
        Wanted,
        enabled=st.just(True),
        trigger=st.integers(min_value=100, max_value=20_000).map(cents),
        recharge=st.integers(min_value=1_000, max_value=30_000).map(cents),
        card=recharge_cards,
    ),
)
time_steps = st.one_of(
    st.integers(min_value=1, max_value=180).map(lambda n: timedelta(minutes=n)),
    st.integers(min_value=1, max_value=72).map(lambda n: timedelta(hours=n)),
    st.integers(min_value=1, max_value=400).map(lambda n: timedelta(days=n)),
)


# --- databases -------------------------------------------------------------------------------


@dataclass
class Backend:
    """Session fixtures reach the machine through here: examples outlive function fixtures."""

    sqlite_template: Path | None = None
    postgres: PostgresAdmin | None = None


BACKEND = Backend()


class FreshDatabase:
    """One new, migrated database per example, removed again at teardown."""

    def __init__(self, kind: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="credits-machine-"))
        self.pg_name: str | None = None
        if kind == "sqlite":
            assert BACKEND.sqlite_template is not None
            path = self.folder / "commcredits.db"
            shutil.copyfile(BACKEND.sqlite_template, path)
            self.url = f"sqlite:///{path}"
        else:
            assert BACKEND.postgres is not None
            self.pg_name = f"sm_{uuid.uuid4().hex[:16]}"
            self.url = BACKEND.postgres.create_database(self.pg_name, template=TEMPLATE)

    def remove(self) -> None:
        if self.pg_name is not None and BACKEND.postgres is not None:
            BACKEND.postgres.drop_database(self.pg_name)
        shutil.rmtree(self.folder, ignore_errors=True)


# --- the machine -----------------------------------------------------------------------------


class CreditsMachine(RuleBasedStateMachine):
    database_kind = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.database = FreshDatabase(self.database_kind)
        self.mail = CollectingTransport()
        self.gateway = SandboxGateway()
        self.container: Container = build(
            make_settings(self.database.url, self.database.folder),
            transport=self.mail,
            gateway=self.gateway,
        )
        assert isinstance(self.container.clock, SimulatedClock)
        self.clock = self.container.clock
        org = self.container.orgs.create(
            NewOrganization(name="Ledger Machine", country="US", currency="USD", billing="prepaid")
        )
        self.org_id = org.id
        self.container.orgs.add_admin(org.id, "billing@example.com", "Billing", ["billing_admin"])
        self.cards = {
            name: self.container.credits.add_card(
                org.id,
                number=number,
                exp_month=CARD_EXPIRY[0],
                exp_year=CARD_EXPIRY[1],
                cvc="123",
                holder="Pat Payer",
            ).id
            for name, number in CARDS.items()
        }
        # The model.
        self.now = self.clock.now()
        self.lots: dict[str, ModelLot] = {}
        self.auto = RECHARGE_OFF
        self.postpaid = False
        self.credited = self.spent = self.forfeited = ZERO
        self.deposits_paid = self.deposits_failed = 0

    def teardown(self) -> None:
        self.container.close()
        self.database.remove()

    # -- model helpers ---------------------------------------------------------------------------

    def spendable(self, at: datetime) -> Decimal:
        """R-21: the balance counts unexpired lots only, swept or not."""
        return sum((lot.remaining for lot in self.lots.values() if lot.expires_at > at), ZERO)

    def sweep(self, at: datetime) -> Decimal:
        """Forfeit what is left in every lot expired at ``at``; returns the amount forfeited."""
        forfeited = ZERO
        for lot in self.lots.values():
            if lot.expires_at <= at and lot.remaining > 0:
                forfeited += lot.remaining
                lot.remaining = ZERO
        self.forfeited += forfeited
        return forfeited

    def spend_fifo(self, amount: Decimal, at: datetime) -> list[tuple[str, Decimal]]:
        """R-22: the oldest purchase pays first (ties by lot id); expired lots never pay."""
        still_due = amount
        paid: list[tuple[str, Decimal]] = []
        for lot in sorted(self.lots.values(), key=lambda lot: (lot.purchased_at, lot.id)):
            if still_due == 0:
                break
            if lot.expires_at <= at or lot.remaining == 0:
                continue
            part = min(lot.remaining, still_due)
            lot.remaining -= part
            still_due -= part
            paid.append((lot.id, part))
        assert still_due == 0, f"the model cannot pay {amount}"
        self.spent += amount
        return paid

    def adopt(self, lot: Lot, source: str, amount: Decimal | None) -> None:
        """Take a lot the service just created into the model, after checking it.

        Whole, as bought: a recharge bought while the jobs ran may since have expired and been
        swept, which the model replays afterwards; the invariants then compare what is left."""
        assert lot.source == source, f"lot {lot.id} is a {lot.source} lot, expected {source}"
        assert lot.amount == amount, f"{source} lot {lot.id} holds {lot.amount}, expected {amount}"
        assert lot.purchased_at == self.now or source == "recharge"
        assert lot.expires_at == twelve_months_after(lot.purchased_at), "R-21 expiry"
        self.lots[lot.id] = ModelLot(
            lot.id, source, lot.amount, lot.amount, lot.purchased_at, lot.expires_at
        )
        self.credited += lot.amount

    @property
    def recharges_armed(self) -> bool:
        """Auto-recharge can produce a lot: on, prepaid, and charging the card that pays."""
        return self.auto.enabled and not self.postpaid and self.auto.card == "good"

    def expect_recharges(
        self, new: list[Lot], at: datetime, *, debited: bool, required: bool
    ) -> None:
        """R-23: a recharge follows a debit that leaves the balance below the trigger, once.

        Takes the recharge lots bought at ``at`` out of ``new``. With ``required`` the service
        must recharge exactly when the rule says so; otherwise it may, but only then.
        """
        here = [lot for lot in new if lot.purchased_at == at]
        balance = self.spendable(at)
        trigger = self.auto.trigger
        due = debited and self.recharges_armed and trigger is not None and balance < trigger
        situation = (
            f"at {at}: balance {balance}, settings {self.auto}, postpaid {self.postpaid}, "
            f"money went out {debited}; new lots {[(x.source, str(x.amount)) for x in here]}"
        )
        if required:
            assert len(here) == int(due), f"expected {int(due)} recharge(s) {situation}"
        else:
            assert len(here) <= int(due), f"unexplained recharge {situation}"
        for lot in here:
            new.remove(lot)
            self.adopt(lot, "recharge", self.auto.recharge)

    def service_lots(self) -> dict[str, Lot]:
        return {lot.id: lot for lot in self.container.credits.view(self.org_id).lots}

    def new_service_lots(self) -> list[Lot]:
        fresh = [lot for lot in self.service_lots().values() if lot.id not in self.lots]
        return sorted(fresh, key=lambda lot: (lot.purchased_at, lot.id))

    def take(self, new: list[Lot], lot_id: str | None) -> Lot:
        found = [lot for lot in new if lot.id == lot_id]
        assert len(found) == 1, f"no new lot {lot_id} among {[lot.id for lot in new]}"
        new.remove(found[0])
        return found[0]

    def snapshot(self) -> tuple[object, ...]:
        """Everything a refused operation must leave as it was."""
        view = self.container.credits.view(self.org_id)
        last = self.container.credits.transactions(self.org_id, limit=1)
        orders = self.container.credits.orders(self.org_id, limit=EVERYTHING)
        return (view.lots, view.account, [e.id for e in last], [(o.id, o.status) for o in orders])

    def jobs_ran_until(self, target: datetime) -> None:
        """Replay what the jobs did up to ``target`` in time order: each expiry sweep is a debit
        and may be followed by one recharge at that same moment."""
        new = self.new_service_lots()
        for lot in new:
            assert self.now <= lot.purchased_at <= target, f"lot {lot.id} bought out of window"
        while True:
            expiring = [
                lot.expires_at
                for lot in self.lots.values()
                if lot.remaining > 0 and lot.expires_at <= target
            ]
            if not expiring:
                break
            at = max(min(expiring), self.now)
            assert self.sweep(at) > 0
            self.expect_recharges(new, at, debited=True, required=True)
        assert new == [], f"recharges with no debit before them: {new}"
        self.now = target

    def wanted_to_service(self, wanted: Wanted) -> AutoRechargeSettings:
        if not wanted.enabled:
            return AutoRechargeSettings(enabled=False)
        assert wanted.card is not None
        return AutoRechargeSettings(
            enabled=True,
            trigger_amount=str(wanted.trigger),
            recharge_amount=str(wanted.recharge),
            payment_method_id=self.cards[wanted.card],
        )

    # -- rules -----------------------------------------------------------------------------------

    @initialize(amount=deposit_amounts, wanted=wanted_settings)
    def open_the_account(self, amount: Decimal, wanted: Wanted) -> None:
        """Every run starts with money in the account, and perhaps auto-recharge on."""
        self.deposit(amount, "good", wanted)

    @rule(
        amount=deposit_amounts,
        card=deposit_cards,
        wanted=st.none() | wanted_settings,
    )
    def deposit(self, amount: Decimal, card: str, wanted: Wanted | None) -> None:
        new_order = NewOrder(
            amount=str(amount),
            payment_method_id=self.cards[card],
            auto_recharge=self.wanted_to_service(wanted) if wanted else None,
        )
        if self.postpaid:  # a postpaid organization cannot buy credits
            before = self.snapshot()
            with pytest.raises(Conflict) as refused:
                self.container.credits.place_order(self.org_id, new_order)
            assert refused.value.code == "credits_not_available_for_postpaid"
            assert self.snapshot() == before
            return
        order = self.container.credits.place_order(self.org_id, new_order)
        forfeited = self.sweep(self.now)  # settling opens the account, which sweeps
        new = self.new_service_lots()
        if card == "good":
            assert (order.status, order.kind, order.amount) == ("paid", "deposit", amount)
            assert order.invoice_id is not None
            self.adopt(self.take(new, order.lot_id), "deposit", amount)
            self.deposits_paid += 1
            if wanted is not None:
                self.auto = wanted
        else:  # a failed payment adds nothing
            assert order.status == "failed"
            assert order.failure_code == "card_declined"
            assert order.lot_id is None
            assert order.invoice_id is None
            self.deposits_failed += 1
        self.expect_recharges(new, self.now, debited=forfeited > 0, required=False)
        assert new == [], f"lots nobody bought: {new}"

    @rule(amount=adjustment_amounts)
    def add_credits(self, amount: Decimal) -> None:
        adjustment = self.container.credits.adjust(self.org_id, str(amount), "goodwill")
        forfeited = self.sweep(self.now)
        credits = [e for e in adjustment.entries if e.kind == "adjustment"]
        assert [e.amount for e in credits] == [amount]
        new = self.new_service_lots()
        self.adopt(self.take(new, credits[0].lot_id), "adjustment", amount)
        self.expect_recharges(new, self.now, debited=forfeited > 0, required=True)
        assert new == []

    @rule(data=st.data())
    def take_credits(self, data: st.DataObject) -> None:
        self.spend_some(data)

    def spend_some(self, data: st.DataObject) -> None:
        """Part of the balance, all of it, or more than there is."""
        available = self.spendable(self.now)
        whole_cents = int(available * 100)
        plans = ["some", "all", "more than there is"] if whole_cents else ["more than there is"]
        plan = data.draw(st.sampled_from(plans), label="plan")
        if plan == "some":
            self.debit(cents(data.draw(st.integers(1, whole_cents), label="cents")))
        elif plan == "all":
            self.debit(available)
        else:
            beyond = cents(data.draw(st.integers(1, 10_000), label="beyond"))
            self.refused_debit(available + beyond)

    @precondition(
        lambda self: (
            self.auto.enabled
            and self.auto.trigger is not None
            and self.spendable(self.now) > self.auto.trigger
        )
    )
    @rule(data=st.data())
    def spend_down_to_the_trigger(self, data: st.DataObject) -> None:
        """Leave exactly the trigger (no recharge) or anything below it (one recharge)."""
        assert self.auto.trigger is not None
        at_most = int(self.auto.trigger * 100)
        left = cents(data.draw(st.just(at_most) | st.integers(0, at_most), label="left"))
        self.debit(self.spendable(self.now) - left)

    def refused_debit(self, amount: Decimal) -> None:
        """R-28: more than the balance is refused whole, the expiry sweep included."""
        before = self.snapshot()
        with pytest.raises(RuleViolation) as refused:
            self.container.credits.adjust(self.org_id, f"-{amount}", "correction")
        assert refused.value.code == "insufficient_credits"
        assert self.snapshot() == before, "a refused debit changed something"

    def debit(self, amount: Decimal) -> None:
        adjustment = self.container.credits.adjust(self.org_id, f"-{amount}", "correction")
        self.sweep(self.now)
        expected = self.spend_fifo(amount, self.now)
        paid = [(e.lot_id, -e.amount) for e in adjustment.entries if e.kind == "adjustment"]
        assert paid == expected, "the debit did not take the oldest unexpired lots first"
        service = self.service_lots()
        for lot_id, _ in paid:
            assert lot_id is not None
            assert not service[lot_id].is_expired(self.now), f"debit drew on expired {lot_id}"
        new = self.new_service_lots()
        self.expect_recharges(new, self.now, debited=True, required=True)
        assert new == []

    @rule(wanted=wanted_settings)
    def configure_auto_recharge(self, wanted: Wanted) -> None:
        if wanted.enabled and self.postpaid:
            before = self.snapshot()
            with pytest.raises(Conflict) as refused:
                self.container.credits.set_auto_recharge(
                    self.org_id, self.wanted_to_service(wanted)
                )
            assert refused.value.code == "auto_recharge_not_allowed_for_postpaid"
            assert self.snapshot() == before
            return
        self.container.credits.set_auto_recharge(self.org_id, self.wanted_to_service(wanted))
        forfeited = self.sweep(self.now)
        self.auto = wanted
        new = self.new_service_lots()
        self.expect_recharges(new, self.now, debited=forfeited > 0, required=False)
        assert new == []

    @rule(step=time_steps)
    def let_time_pass(self, step: timedelta) -> None:
        target = self.now + step
        self.container.jobs.advance_clock(target)
        self.jobs_ran_until(target)

    @rule(step=time_steps)
    def move_clock_without_jobs(self, step: timedelta) -> None:
        self.clock.set(self.now + step)
        self.now += step
        assert self.new_service_lots() == []

    def expiries_ahead(self) -> list[datetime]:
        """When lots with money left expire, from now on.

        A list of moments rather than of lots: which of two lots bought at the same moment the
        service drained first depends on their random ids, what is left of them together does
        not, so every example replays exactly."""
        ahead = (lot for lot in self.lots.values() if lot.expires_at > self.now)
        return sorted({lot.expires_at for lot in ahead if lot.remaining > 0})

    @precondition(lambda self: bool(self.expiries_ahead()))
    @rule(
        data=st.data(),
        offset=st.sampled_from([timedelta(seconds=-1), timedelta(0), timedelta(seconds=1)]),
        with_jobs=st.booleans(),
    )
    def reach_an_expiry(self, data: st.DataObject, offset: timedelta, with_jobs: bool) -> None:
        """Stop a second before, at, or a second after lots with money left expire."""
        expiry = data.draw(st.sampled_from(self.expiries_ahead()), label="expiry")
        target = max(self.now, expiry + offset)
        if with_jobs:
            self.container.jobs.advance_clock(target)
            self.jobs_ran_until(target)
        else:
            self.clock.set(target)
            self.now = target
            assert self.new_service_lots() == []

    def expiries_with_money_beyond(self) -> list[datetime]:
        """The moments in :meth:`expiries_ahead` after which younger lots still hold money."""
        return [at for at in self.expiries_ahead() if self.spendable(at) > 0]

    @precondition(lambda self: bool(self.expiries_with_money_beyond()))
    @rule(
        data=st.data(),
        offset=st.sampled_from([timedelta(0), timedelta(seconds=1), timedelta(hours=1)]),
    )
    def spend_after_an_expiry_nothing_swept(self, data: st.DataObject, offset: timedelta) -> None:
        """R-21: the clock passes an expiry with no job running; the debit must skip the
        expired lots all the same (and a refused one must not even sweep them)."""
        expiry = data.draw(st.sampled_from(self.expiries_with_money_beyond()), label="expiry")
        target = expiry + offset
        self.clock.set(target)
        self.now = target
        assert self.new_service_lots() == []
        assert any(lot.expires_at <= self.now and lot.remaining > 0 for lot in self.lots.values())
        self.spend_some(data)

    @rule()
    def run_due_jobs(self) -> None:
        self.container.jobs.run_due()
        self.jobs_ran_until(self.now)

    @rule()
    def switch_billing(self) -> None:  # postpaid turns auto-recharge off
        billing: Billing = "prepaid" if self.postpaid else "postpaid"
        self.container.orgs.update(self.org_id, OrganizationChanges(billing=billing))
        self.postpaid = not self.postpaid
        if self.postpaid:
            self.auto = replace(self.auto, enabled=False)
        assert self.new_service_lots() == []

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def ledger_agrees_with_the_model(self) -> None:
        problems, totals = verify_ledger(self.container.store)
        assert [str(problem) for problem in problems] == []

        view = self.container.credits.view(self.org_id)
        assert view.at == self.now
        assert view.balance == self.spendable(self.now)
        assert view.balance >= 0
        service = {lot.id: lot for lot in view.lots}
        assert service.keys() == self.lots.keys()
        for lot_id, mine in self.lots.items():
            theirs = service[lot_id]
            assert (theirs.source, theirs.amount, theirs.remaining) == (
                mine.source,
                mine.amount,
                mine.remaining,
            ), f"lot {lot_id}"
            assert (theirs.purchased_at, theirs.expires_at) == (mine.purchased_at, mine.expires_at)

        if totals:
            (total,) = totals
            assert total.credited == total.spent + total.forfeited + total.balance
            assert (total.credited, total.spent, total.forfeited) == (
                self.credited,
                self.spent,
                self.forfeited,
            )
            assert total.balance == sum((lot.remaining for lot in self.lots.values()), ZERO)
        else:
            assert self.lots == {}

        orders = self.container.credits.orders(self.org_id, limit=EVERYTHING)
        recharges = [order for order in orders if order.kind == "recharge"]
        assert len([order for order in recharges if order.status == "pending"]) <= 1
        paid_recharges = [order for order in recharges if order.status == "paid"]
        recharge_ids = {order.id for order in recharges}
        invoices = self.container.credits.invoices(self.org_id, limit=EVERYTHING)
        recharge_invoices = [inv for inv in invoices if inv.order_id in recharge_ids]
        assert len(recharge_invoices) == len(paid_recharges)
        assert len(paid_recharges) == sum(lot.source == "recharge" for lot in self.lots.values())
        deposits = [order for order in orders if order.kind == "deposit"]
        assert sum(order.status == "paid" for order in deposits) == self.deposits_paid
        assert sum(order.status == "failed" for order in deposits) == self.deposits_failed
        # only the good card pays, and each paid order was charged exactly once.
        card_of = {method_id: name for name, method_id in self.cards.items()}
        for order in orders:
            # The sandbox answers at once, so nothing is ever left pending here.
            assert order.status != "pending", f"order {order.id} left pending"
            paid_by = card_of[order.payment_method_id]
            assert (order.status == "paid") == (paid_by == "good"), f"{order} by {paid_by}"
        charged = [c for c in self.gateway.charges() if c.result.succeeded]
        assert sorted((c.idempotency_key, c.amount) for c in charged) == sorted(
            (order.id, order.amount) for order in orders if order.status == "paid"
        )

        settings_now = view.account.auto_recharge
        assert settings_now.enabled == self.auto.enabled
        if self.auto.enabled:
            assert self.auto.card is not None
            assert (
                settings_now.trigger_amount,
                settings_now.recharge_amount,
                settings_now.payment_method_id,
            ) == (self.auto.trigger, self.auto.recharge, self.cards[self.auto.card])


class PostgresCreditsMachine(CreditsMachine):
    database_kind = "postgres"


# No example database: every run starts from a seed, which Hypothesis prints on failure together
# with the shrunk steps (and a @reproduce_failure blob). Shrinking replays whole examples on a
# fresh database, up to Hypothesis' own five-minute cap, so the timeout leaves room for it.
COMMON = settings(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
SHRINKING_ROOM = pytest.mark.timeout(600)


@pytest.fixture
def sqlite_backend(sqlite_template: Path) -> Iterator[None]:
    BACKEND.sqlite_template = sqlite_template
    yield
    BACKEND.sqlite_template = None


@pytest.fixture
def postgres_backend(postgres: PostgresAdmin) -> Iterator[None]:
    BACKEND.postgres = postgres
    yield
    BACKEND.postgres = None


@SHRINKING_ROOM
@pytest.mark.usefixtures("sqlite_backend")
def test_the_credits_ledger_agrees_with_its_model_whatever_happens_on_sqlite() -> None:
    run_state_machine_as_test(
        CreditsMachine, settings=settings(COMMON, max_examples=25, stateful_step_count=30)
    )


@SHRINKING_ROOM
@pytest.mark.postgres
@pytest.mark.usefixtures("postgres_backend")
def test_the_credits_ledger_agrees_with_its_model_whatever_happens_on_postgres() -> None:
    run_state_machine_as_test(
        PostgresCreditsMachine, settings=settings(COMMON, max_examples=8, stateful_step_count=20)
    )
