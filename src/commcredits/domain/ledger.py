"""Credit lots and their first-in, first-out consumption (R-20, R-21, R-22, R-28).

Every deposit, recharge and positive adjustment is a :class:`Lot` with a ``remaining`` amount.
A debit is paid from the oldest unexpired lots first; :func:`allocate_fifo` says which lots pay
how much, and :func:`apply_allocations` returns the lots as they are afterwards. Nothing here
touches a database or a clock: every function is handed the lots and the moment it reasons about.

Amounts are ``Decimal`` in the organization's currency; datetimes are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from commcredits.domain.errors import RuleViolation

LotSource = Literal["deposit", "recharge", "adjustment"]
LotStatus = Literal["active", "used", "expired"]

_ZERO = Decimal(0)


def _require_utc(moment: datetime, name: str) -> None:
    # A naive or non-UTC datetime would make "same day and time" and expiry comparisons depend
    # on where the code runs; refusing it here keeps every lot on one timeline.
    if moment.tzinfo is None or moment.utcoffset() != timedelta(0):
        raise ValueError(f"{name} must be a timezone-aware UTC datetime, got {moment!r}")


def _require_decimal(value: object, name: str) -> None:
    # bool is an int, and a float has already lost the exact value: only Decimal is money here.
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite amount, got {value}")


def expiry_for(purchased_at: datetime) -> datetime:
    """When a lot bought at ``purchased_at`` expires: 12 months later, same day and time (R-21).

    A lot bought on 29 February expires on 28 February of the next year. Rolling back to the
    28th rather than forward to 1 March keeps the expiry inside the twelfth month and never
    gives a lot more than twelve months of life.
    """
    _require_utc(purchased_at, "purchased_at")
    try:
        return purchased_at.replace(year=purchased_at.year + 1)
    except ValueError:
        # Only 29 February has no counterpart in the next year.
        return purchased_at.replace(year=purchased_at.year + 1, day=28)


@dataclass(frozen=True, slots=True)
class Lot:
    """One purchase of credits and what is left of it.

    A lot is ``expired`` from ``expires_at`` on, whatever its remaining amount; otherwise it is
    ``used`` once nothing remains and ``active`` before that.
    """

    id: str
    source: LotSource
    amount: Decimal
    remaining: Decimal
    purchased_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        _require_decimal(self.amount, "amount")
        _require_decimal(self.remaining, "remaining")
        # Invariant 0 <= remaining <= amount, amount > 0. It lives three times: here, in the
        # database CHECK constraint lots_remaining_within_amount, and in this comment that ties
        # them together. Change one and the other two must follow.
        if self.amount <= _ZERO:
            raise ValueError(f"lot {self.id}: amount must be positive, got {self.amount}")
        if not _ZERO <= self.remaining <= self.amount:
            raise ValueError(
                f"lot {self.id}: remaining {self.remaining} must lie within 0 and {self.amount}"
            )
        _require_utc(self.purchased_at, "purchased_at")
        _require_utc(self.expires_at, "expires_at")
        if self.expires_at <= self.purchased_at:
            raise ValueError(f"lot {self.id}: expires_at must come after purchased_at")

    def is_expired(self, at: datetime) -> bool:
        """True from ``expires_at`` on: expired lots are never drawn on, even before the sweep."""
        return at >= self.expires_at

    def status(self, at: datetime) -> LotStatus:
        """The lot's status at ``at``; expiry wins over being used up."""
        if self.is_expired(at):
            return "expired"
        if self.remaining == _ZERO:
            return "used"
        return "active"


def new_lot(lot_id: str, source: LotSource, amount: Decimal, purchased_at: datetime) -> Lot:
    """A freshly bought lot: nothing used yet, expiring 12 months after purchase (R-21)."""
    return Lot(
        id=lot_id,
        source=source,
        amount=amount,
        remaining=amount,
        purchased_at=purchased_at,
        expires_at=expiry_for(purchased_at),
    )


@dataclass(frozen=True, slots=True)
class Allocation:
    """The part of a debit paid by one lot."""

    lot_id: str
    amount: Decimal

    def __post_init__(self) -> None:
        _require_decimal(self.amount, "amount")
        if self.amount <= _ZERO:
            raise ValueError(f"an allocation must be positive, got {self.amount}")


@dataclass(frozen=True, slots=True)
class FifoResult:
    """Which lots pay for a debit, oldest first, and what the lots could not cover."""

    allocations: tuple[Allocation, ...]
    shortfall: Decimal

    @property
    def covered(self) -> Decimal:
        """The part of the debit the lots pay: the sum of the allocations."""
        return sum((allocation.amount for allocation in self.allocations), _ZERO)


def _fifo_order(lot: Lot) -> tuple[datetime, str]:
    # Ties on the purchase time are broken by id so the same lots always pay in the same order.
    return (lot.purchased_at, lot.id)


def allocate_fifo(lots: Iterable[Lot], amount: Decimal, at: datetime) -> FifoResult:
    """Spread a debit of ``amount`` over ``lots``, oldest purchase first (R-22).

    Expired lots are skipped even if the expiry sweep has not run yet (R-21), as are empty ones;
    no lot gives more than its remaining amount. Whatever the lots cannot pay is the shortfall,
    zero when the debit is fully covered. This only plans the debit; see :func:`debit` for the
    refusal of a debit larger than the balance and :func:`apply_allocations` to carry it out.
    """
    _require_decimal(amount, "amount")
    if amount <= _ZERO:
        raise ValueError(f"a debit must be positive, got {amount}")
    allocations: list[Allocation] = []
    still_due = amount
    for lot in sorted(lots, key=_fifo_order):
        if still_due == _ZERO:
            break
        if lot.is_expired(at) or lot.remaining == _ZERO:
            continue
        paid = min(lot.remaining, still_due)
        allocations.append(Allocation(lot_id=lot.id, amount=paid))
        still_due -= paid
    return FifoResult(allocations=tuple(allocations), shortfall=still_due)


def apply_allocations(lots: Iterable[Lot], allocations: Iterable[Allocation]) -> list[Lot]:
    """The lots after paying ``allocations``, in their original order.

    Raises ``ValueError`` when an allocation names a lot that is not among ``lots`` or takes
    more than the lot has left; the lots themselves are immutable, so nothing is half-applied.
    """
    by_id: dict[str, Lot] = {}
    for lot in lots:
        if lot.id in by_id:
            raise ValueError(f"lot {lot.id} appears twice")
        by_id[lot.id] = lot
    for allocation in allocations:
        paying = by_id.get(allocation.lot_id)
        if paying is None:
            raise ValueError(f"allocation names unknown lot {allocation.lot_id}")
        if allocation.amount > paying.remaining:
            raise ValueError(
                f"allocation of {allocation.amount} exceeds the {paying.remaining} "
                f"left in lot {paying.id}"
            )
        by_id[paying.id] = replace(paying, remaining=paying.remaining - allocation.amount)
    return list(by_id.values())


def spendable_balance(lots: Iterable[Lot], at: datetime) -> Decimal:
    """The balance at ``at``: the remaining amounts of the lots not yet expired."""
    return sum((lot.remaining for lot in lots if not lot.is_expired(at)), _ZERO)


def expiring_forfeits(lots: Iterable[Lot], at: datetime) -> list[Lot]:
    """The lots the expiry sweep forfeits at ``at``: expired with something left (R-21).

    Oldest first, so the sweep records forfeits in the order the lots were bought.
    """
    return sorted(
        (lot for lot in lots if lot.is_expired(at) and lot.remaining > _ZERO), key=_fifo_order
    )


def debit(lots: Iterable[Lot], amount: Decimal, at: datetime) -> FifoResult:
    """Plan a debit of ``amount`` that the lots must cover in full.

    A debit larger than the spendable balance is refused whole with ``insufficient_credits``
    (R-28): nothing is taken, rather than emptying the lots and leaving a debt.
    """
    result = allocate_fifo(lots, amount, at)
    if result.shortfall > _ZERO:
        raise RuleViolation(
            f"a debit of {amount} exceeds the spendable balance of {result.covered}",
            code="insufficient_credits",
        )
    return result
