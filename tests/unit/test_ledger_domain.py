"""Lots, expiry and FIFO consumption, without a database (R-20, R-21, R-22, R-28)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from commcredits.domain.errors import RuleViolation
from commcredits.domain.ledger import (
    Allocation,
    FifoResult,
    Lot,
    allocate_fifo,
    apply_allocations,
    debit,
    expiring_forfeits,
    expiry_for,
    new_lot,
    spendable_balance,
)

D = Decimal
JAN_1 = datetime(2024, 1, 1, 9, 30, tzinfo=UTC)


def lot(
    lot_id: str,
    amount: str,
    *,
    remaining: str | None = None,
    purchased_at: datetime = JAN_1,
    expires_at: datetime | None = None,
) -> Lot:
    return Lot(
        id=lot_id,
        source="deposit",
        amount=D(amount),
        remaining=D(amount if remaining is None else remaining),
        purchased_at=purchased_at,
        expires_at=expiry_for(purchased_at) if expires_at is None else expires_at,
    )


def check_invariants(lots: Iterable[Lot]) -> None:
    """What must hold after every mutation of the lots."""
    seen: set[str] = set()
    for each in lots:
        assert each.id not in seen
        seen.add(each.id)
        assert D(0) <= each.remaining <= each.amount
        assert each.amount > 0
        assert each.expires_at > each.purchased_at


# --- expiry_for -------------------------------------------------------------------------------


def test_a_lot_expires_twelve_months_after_purchase_on_the_same_day_and_time() -> None:
    bought = datetime(2024, 3, 15, 14, 5, 59, 123456, tzinfo=UTC)
    assert expiry_for(bought) == datetime(2025, 3, 15, 14, 5, 59, 123456, tzinfo=UTC)


def test_a_lot_bought_on_a_leap_day_expires_on_28_february_of_the_next_year() -> None:
    bought = datetime(2024, 2, 29, 23, 59, tzinfo=UTC)
    assert expiry_for(bought) == datetime(2025, 2, 28, 23, 59, tzinfo=UTC)


def test_a_lot_bought_on_28_february_before_a_leap_year_expires_on_28_february() -> None:
    bought = datetime(2023, 2, 28, 8, 0, tzinfo=UTC)
    assert expiry_for(bought) == datetime(2024, 2, 28, 8, 0, tzinfo=UTC)


def test_a_lot_bought_on_new_years_eve_expires_on_the_next_new_years_eve() -> None:
    bought = datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert expiry_for(bought) == datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_expiry_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="UTC"):
        expiry_for(datetime(2024, 1, 1))


def test_expiry_refuses_a_datetime_outside_utc() -> None:
    paris = timezone(timedelta(hours=1))
    with pytest.raises(ValueError, match="UTC"):
        expiry_for(datetime(2024, 1, 1, tzinfo=paris))


# --- Lot --------------------------------------------------------------------------------------


def test_a_new_lot_has_its_whole_amount_left_and_expires_a_year_later() -> None:
    fresh = new_lot("lot-1", "recharge", D("25.00"), JAN_1)
    assert fresh.remaining == D("25.00")
    assert fresh.source == "recharge"
    assert fresh.expires_at == datetime(2025, 1, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("amount", "remaining"),
    [
        ("10.00", "10.01"),  # more left than was bought
        ("10.00", "-0.01"),  # a negative remainder
        ("0.00", "0.00"),  # an empty purchase
        ("-5.00", "-5.00"),  # a negative purchase
    ],
)
def test_a_lot_outside_zero_to_amount_is_refused(amount: str, remaining: str) -> None:
    with pytest.raises(ValueError, match="lot-1"):
        lot("lot-1", amount, remaining=remaining)


def test_a_lot_refuses_a_float_amount() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        Lot(
            id="lot-1",
            source="deposit",
            amount=10.0,  # type: ignore[arg-type]
            remaining=D("10.00"),
            purchased_at=JAN_1,
            expires_at=expiry_for(JAN_1),
        )


def test_a_lot_refuses_a_non_finite_amount() -> None:
    with pytest.raises(ValueError, match="finite"):
        lot("lot-1", "Infinity")


def test_a_lot_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="purchased_at"):
        lot("lot-1", "10.00", purchased_at=datetime(2024, 1, 1), expires_at=JAN_1)


def test_a_lot_cannot_expire_before_it_was_bought() -> None:
    with pytest.raises(ValueError, match="expires_at"):
        lot("lot-1", "10.00", expires_at=JAN_1)


def test_a_lot_is_expired_from_the_exact_expiry_instant() -> None:
    bought = lot("lot-1", "10.00")
    assert not bought.is_expired(bought.expires_at - timedelta(microseconds=1))
    assert bought.is_expired(bought.expires_at)


def test_a_lot_with_something_left_is_active() -> None:
    assert lot("lot-1", "10.00", remaining="0.01").status(JAN_1) == "active"


def test_a_lot_with_nothing_left_is_used() -> None:
    assert lot("lot-1", "10.00", remaining="0").status(JAN_1) == "used"


def test_expiry_wins_over_being_used_up() -> None:
    used_up = lot("lot-1", "10.00", remaining="0")
    assert used_up.status(used_up.expires_at) == "expired"


def test_an_expired_lot_with_something_left_is_expired() -> None:
    leftover = lot("lot-1", "10.00", remaining="4.00")
    assert leftover.status(leftover.expires_at + timedelta(days=1)) == "expired"


# --- allocate_fifo ----------------------------------------------------------------------------


def test_the_oldest_lot_is_consumed_first() -> None:
    older = lot("b", "10.00", purchased_at=JAN_1)
    newer = lot("a", "10.00", purchased_at=JAN_1 + timedelta(days=1))
    result = allocate_fifo([newer, older], D("4.00"), JAN_1 + timedelta(days=2))
    assert result.allocations == (Allocation("b", D("4.00")),)
    assert result.shortfall == 0


def test_a_debit_spills_over_into_the_next_lot_once_the_oldest_is_empty() -> None:
    older = lot("old", "10.00", remaining="3.00", purchased_at=JAN_1)
    newer = lot("new", "50.00", purchased_at=JAN_1 + timedelta(hours=1))
    result = allocate_fifo([older, newer], D("5.50"), JAN_1 + timedelta(days=1))
    assert result.allocations == (Allocation("old", D("3.00")), Allocation("new", D("2.50")))
    assert result.covered == D("5.50")


def test_lots_bought_at_the_same_instant_are_consumed_in_id_order() -> None:
    second = lot("lot-b", "1.00")
    first = lot("lot-a", "1.00")
    result = allocate_fifo([second, first], D("1.50"), JAN_1)
    assert [allocation.lot_id for allocation in result.allocations] == ["lot-a", "lot-b"]


def test_an_expired_lot_is_never_drawn_on_even_before_the_sweep() -> None:
    expired = lot("old", "10.00", purchased_at=JAN_1 - timedelta(days=400))
    current = lot("new", "10.00", purchased_at=JAN_1)
    result = allocate_fifo([expired, current], D("12.00"), JAN_1 + timedelta(days=1))
    assert result.allocations == (Allocation("new", D("10.00")),)
    assert result.shortfall == D("2.00")


def test_empty_lots_are_skipped() -> None:
    empty = lot("empty", "10.00", remaining="0", purchased_at=JAN_1 - timedelta(days=1))
    full = lot("full", "10.00")
    result = allocate_fifo([empty, full], D("1.00"), JAN_1)
    assert result.allocations == (Allocation("full", D("1.00")),)


def test_what_the_lots_cannot_cover_is_the_shortfall() -> None:
    result = allocate_fifo([lot("only", "2.50")], D("4.00"), JAN_1)
    assert result.allocations == (Allocation("only", D("2.50")),)
    assert result.shortfall == D("1.50")


def test_no_lots_means_the_whole_debit_is_shortfall() -> None:
    result = allocate_fifo([], D("0.01"), JAN_1)
    assert result == FifoResult(allocations=(), shortfall=D("0.01"))
    assert result.covered == 0


def test_allocations_add_up_exactly_in_decimal() -> None:
    lots = [
        lot("a", "0.10", purchased_at=JAN_1),
        lot("b", "0.20", purchased_at=JAN_1 + timedelta(seconds=1)),
        lot("c", "0.000001", purchased_at=JAN_1 + timedelta(seconds=2)),
    ]
    result = allocate_fifo(lots, D("0.300001"), JAN_1 + timedelta(minutes=1))
    assert result.covered == D("0.300001")
    assert result.shortfall == 0
    assert spendable_balance(apply_allocations(lots, result.allocations), JAN_1) == 0


@pytest.mark.parametrize("amount", [D("0"), D("-1.00")])
def test_a_debit_must_be_positive(amount: Decimal) -> None:
    with pytest.raises(ValueError, match="positive"):
        allocate_fifo([lot("a", "10.00")], amount, JAN_1)


def test_a_float_debit_is_refused() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        allocate_fifo([lot("a", "10.00")], 1.5, JAN_1)  # type: ignore[arg-type]


def test_an_allocation_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Allocation("a", D("0"))


# --- apply_allocations ------------------------------------------------------------------------


def test_applying_allocations_lowers_only_the_lots_that_paid() -> None:
    paid = lot("paid", "10.00")
    untouched = lot("untouched", "5.00", purchased_at=JAN_1 + timedelta(days=1))
    after = apply_allocations([paid, untouched], [Allocation("paid", D("7.25"))])
    assert after == [replace(paid, remaining=D("2.75")), untouched]
    assert paid.remaining == D("10.00")
    check_invariants(after)


def test_an_allocation_larger_than_what_is_left_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        apply_allocations([lot("a", "10.00", remaining="1.00")], [Allocation("a", D("1.01"))])


def test_two_allocations_on_one_lot_cannot_take_more_than_it_holds_together() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        apply_allocations(
            [lot("a", "10.00")], [Allocation("a", D("6.00")), Allocation("a", D("4.01"))]
        )


def test_an_allocation_on_an_unknown_lot_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown lot"):
        apply_allocations([lot("a", "10.00")], [Allocation("b", D("1.00"))])


def test_lots_with_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        apply_allocations([lot("a", "10.00"), lot("a", "5.00")], [])


# --- balance and forfeits ---------------------------------------------------------------------


def test_the_spendable_balance_counts_only_unexpired_lots() -> None:
    expired = lot("old", "30.00", remaining="12.34", purchased_at=JAN_1 - timedelta(days=366))
    active = lot("new", "50.00", remaining="49.99")
    assert spendable_balance([expired, active], JAN_1) == D("49.99")


def test_the_spendable_balance_of_no_lots_is_zero() -> None:
    assert spendable_balance([], JAN_1) == 0


def test_the_sweep_forfeits_expired_lots_with_something_left_oldest_first() -> None:
    now = JAN_1 + timedelta(days=400)
    older_leftover = lot("z", "10.00", remaining="1.00", purchased_at=JAN_1)
    newer_leftover = lot("a", "10.00", remaining="2.00", purchased_at=JAN_1 + timedelta(days=1))
    used_up = lot("used", "10.00", remaining="0", purchased_at=JAN_1)
    still_active = lot("active", "10.00", purchased_at=JAN_1 + timedelta(days=300))
    forfeits = expiring_forfeits([newer_leftover, used_up, still_active, older_leftover], now)
    assert forfeits == [older_leftover, newer_leftover]


# --- debit ------------------------------------------------------------------------------------


def test_a_debit_of_exactly_the_balance_empties_the_lots() -> None:
    lots = [lot("a", "10.00"), lot("b", "0.01", purchased_at=JAN_1 + timedelta(days=1))]
    now = JAN_1 + timedelta(days=2)
    result = debit(lots, D("10.01"), now)
    assert result.shortfall == 0
    assert spendable_balance(apply_allocations(lots, result.allocations), now) == 0


def test_a_debit_larger_than_the_balance_is_refused_whole() -> None:
    with pytest.raises(RuleViolation) as refused:
        debit([lot("a", "10.00")], D("10.01"), JAN_1)
    assert refused.value.code == "insufficient_credits"


def test_a_debit_that_only_expired_lots_could_pay_is_refused() -> None:
    expired = lot("old", "100.00", purchased_at=JAN_1 - timedelta(days=400))
    with pytest.raises(RuleViolation) as refused:
        debit([expired], D("1.00"), JAN_1)
    assert refused.value.code == "insufficient_credits"


# --- properties -------------------------------------------------------------------------------

BASE = datetime(2023, 1, 1, tzinfo=UTC)

# Micro-units, the precision the ledger stores, keep every generated amount exact.
amounts = st.integers(min_value=1, max_value=10**9).map(lambda micros: D(micros).scaleb(-6))


@st.composite
def lot_lists(draw: st.DrawFn) -> list[Lot]:
    count = draw(st.integers(min_value=0, max_value=8))
    lots: list[Lot] = []
    for index in range(count):
        amount = draw(amounts)
        left = draw(st.integers(min_value=0, max_value=int(amount.scaleb(6))))
        # Few distinct purchase times, so ties on purchased_at are common.
        purchased_at = BASE + timedelta(days=draw(st.sampled_from([0, 0, 30, 200, 400, 500])))
        lots.append(
            Lot(
                id=f"lot-{draw(st.integers(0, 99)):02d}-{index}",
                source=draw(st.sampled_from(["deposit", "recharge", "adjustment"])),
                amount=amount,
                remaining=D(left).scaleb(-6),
                purchased_at=purchased_at,
                expires_at=expiry_for(purchased_at),
            )
        )
    return lots


moments = st.integers(min_value=0, max_value=1000).map(lambda days: BASE + timedelta(days=days))


def fifo_key(each: Lot) -> tuple[datetime, str]:
    return (each.purchased_at, each.id)


@given(lots=lot_lists(), amount=amounts, at=moments)
def test_allocations_and_shortfall_add_up_to_the_debit(
    lots: list[Lot], amount: Decimal, at: datetime
) -> None:
    result = allocate_fifo(lots, amount, at)
    assert result.covered + result.shortfall == amount
    assert result.shortfall >= 0
    assert result.shortfall == 0 or result.covered == spendable_balance(lots, at)


@given(lots=lot_lists(), amount=amounts, at=moments)
def test_no_lot_gives_more_than_it_has_left(
    lots: list[Lot], amount: Decimal, at: datetime
) -> None:
    by_id = {each.id: each for each in lots}
    result = allocate_fifo(lots, amount, at)
    paid_ids = [allocation.lot_id for allocation in result.allocations]
    assert len(paid_ids) == len(set(paid_ids))
    for allocation in result.allocations:
        assert 0 < allocation.amount <= by_id[allocation.lot_id].remaining


@given(lots=lot_lists(), amount=amounts, at=moments)
def test_an_expired_lot_is_never_touched(lots: list[Lot], amount: Decimal, at: datetime) -> None:
    #
    by_id = {each.id: each for each in lots}
    result = allocate_fifo(lots, amount, at)
    assert not any(by_id[a.lot_id].is_expired(at) for a in result.allocations)


@given(lots=lot_lists(), amount=amounts, at=moments)
def test_a_newer_lot_is_touched_only_once_every_older_unexpired_lot_is_empty(
    lots: list[Lot], amount: Decimal, at: datetime
) -> None:
    result = allocate_fifo(lots, amount, at)
    after = {each.id: each for each in apply_allocations(lots, result.allocations)}
    touched = [each for each in lots if after[each.id].remaining != each.remaining]
    for newer in touched:
        for older in lots:
            if fifo_key(older) < fifo_key(newer) and not older.is_expired(at):
                assert after[older.id].remaining == 0


@given(lots=lot_lists(), amount=amounts, at=moments)
def test_the_spendable_balance_drops_by_exactly_the_covered_amount(
    lots: list[Lot], amount: Decimal, at: datetime
) -> None:
    result = allocate_fifo(lots, amount, at)
    after = apply_allocations(lots, result.allocations)
    check_invariants(after)
    assert spendable_balance(after, at) == spendable_balance(lots, at) - result.covered


@given(lots=lot_lists(), amount=amounts, at=moments)
def test_a_debit_is_either_covered_in_full_or_refused_whole(
    lots: list[Lot], amount: Decimal, at: datetime
) -> None:
    balance = spendable_balance(lots, at)
    if amount > balance:
        with pytest.raises(RuleViolation) as refused:
            debit(lots, amount, at)
        assert refused.value.code == "insufficient_credits"
    else:
        result = debit(lots, amount, at)
        assert result.shortfall == 0
        assert result.covered == amount


class LedgerMachine(RuleBasedStateMachine):
    """Purchases, debits, the passing of time and the expiry sweep, in any order.

    Every amount that came in is, at all times, either still in a lot, debited or forfeited.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lots: list[Lot] = []
        self.now = BASE
        self.bought = D(0)
        self.debited = D(0)
        self.forfeited = D(0)

    @rule(amount=amounts)
    def buy(self, amount: Decimal) -> None:  # every purchase is its own lot
        self.lots.append(new_lot(f"lot-{len(self.lots)}", "deposit", amount, self.now))
        self.bought += amount

    @rule(amount=amounts)
    def spend(self, amount: Decimal) -> None:
        balance = spendable_balance(self.lots, self.now)
        if amount > balance:
            with pytest.raises(RuleViolation):
                debit(self.lots, amount, self.now)
            return
        result = debit(self.lots, amount, self.now)
        self.lots = apply_allocations(self.lots, result.allocations)
        self.debited += amount

    @rule(days=st.integers(min_value=0, max_value=200))
    def wait(self, days: int) -> None:
        self.now += timedelta(days=days)

    @rule()
    def sweep(self) -> None:  # forfeited, never silently dropped
        forfeits = {each.id for each in expiring_forfeits(self.lots, self.now)}
        for each in self.lots:
            if each.id in forfeits:
                self.forfeited += each.remaining
        self.lots = [
            replace(each, remaining=D(0)) if each.id in forfeits else each for each in self.lots
        ]

    @invariant()
    def lots_hold_their_invariants(self) -> None:
        check_invariants(self.lots)

    @invariant()
    def every_amount_is_accounted_for(self) -> None:
        left = sum((each.remaining for each in self.lots), D(0))
        assert left + self.debited + self.forfeited == self.bought

    @invariant()
    def the_balance_is_what_unexpired_lots_hold(self) -> None:
        unexpired = [each for each in self.lots if each.status(self.now) != "expired"]
        assert spendable_balance(self.lots, self.now) == sum(
            (each.remaining for each in unexpired), D(0)
        )


LedgerMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=30)
test_ledger_operations_keep_every_amount_accounted_for = LedgerMachine.TestCase
