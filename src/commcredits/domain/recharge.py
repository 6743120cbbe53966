"""The auto-recharge policy (R-03, R-23, R-27): when to charge the stored payment method.

The policy is a list of guard clauses, each with a stable reason: at most one recharge in
flight, back off after a declined payment, stop retrying after the last retry until the payment
method or the settings change. The service acts on the decision (it enqueues the charge rather
than charging inline) and reports the outcome back through :func:`after_start`,
:func:`after_success` and :func:`after_failure`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final, Literal

from commcredits.domain.errors import Conflict, RuleViolation
from commcredits.domain.money import minor_units, quantize

MIN_RECHARGE_AMOUNT: Final = Decimal("10.00")
"""R-23, our choice: the smallest recharge amount, in the organization's currency."""

RETRY_DELAYS: Final[tuple[timedelta, ...]] = (
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(hours=24),
)
"""How long to wait after the 1st, 2nd and 3rd declined recharge; after the 4th, stop."""

RechargeStatus = Literal["off", "ok", "pending", "retrying", "failing"]

RechargeReason = Literal[
    "disabled",
    "postpaid",
    "no_payment_method",
    "incomplete_settings",
    "in_flight",
    "failing",
    "backing_off",
    "not_below_trigger",
    "below_trigger",
    "retry_due",
]


@dataclass(frozen=True, slots=True)
class AutoRecharge:
    """An organization's auto-recharge settings and where its recharges stand.

    ``status`` is ``off`` while disabled, ``pending`` while a recharge is in flight,
    ``retrying`` after a decline with retries left (``next_retry_at`` says when), and
    ``failing`` once every retry was declined.
    """

    enabled: bool
    trigger_amount: Decimal | None
    recharge_amount: Decimal | None
    payment_method_id: str | None
    status: RechargeStatus
    failures: int = 0
    next_retry_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.failures < 0:
            raise ValueError(f"failures cannot be negative, got {self.failures}")


def _has_sub_unit_digits(amount: Decimal, currency: str) -> bool:
    return quantize(amount, currency) != amount


def _invalid(message: str, field: str) -> RuleViolation:
    return RuleViolation(message, code="invalid_auto_recharge", field=field)


def validate_settings(
    enabled: bool,
    trigger_amount: Decimal | None,
    recharge_amount: Decimal | None,
    currency: str,
    *,
    postpaid: bool,
) -> None:
    """Refuse auto-recharge settings that break R-03 or R-23; disabled settings always pass.

    Raises ``Conflict(auto_recharge_not_allowed_for_postpaid)`` when a postpaid organization
    turns it on, and ``RuleViolation(invalid_auto_recharge)`` naming the field when the trigger
    is missing or not positive, the recharge amount is missing or below
    :data:`MIN_RECHARGE_AMOUNT`, or either has digits below the currency's minor unit.
    """
    if not enabled:
        return
    if postpaid:
        # on a postpaid organization the balance would refill itself indefinitely and
        # post-usage billing would never start.
        raise Conflict(
            "auto-recharge cannot be turned on for a postpaid organization",
            code="auto_recharge_not_allowed_for_postpaid",
        )
    decimals = minor_units(currency)
    if trigger_amount is None:
        raise _invalid("a trigger amount is required", "trigger_amount")
    if not trigger_amount.is_finite() or trigger_amount <= 0:
        raise _invalid("the trigger amount must be greater than zero", "trigger_amount")
    if _has_sub_unit_digits(trigger_amount, currency):
        raise _invalid(f"{currency} amounts have at most {decimals} decimals", "trigger_amount")
    if recharge_amount is None:
        raise _invalid("a recharge amount is required", "recharge_amount")
    if not recharge_amount.is_finite() or recharge_amount < MIN_RECHARGE_AMOUNT:
        raise _invalid(
            f"the recharge amount must be at least {MIN_RECHARGE_AMOUNT}", "recharge_amount"
        )
    if _has_sub_unit_digits(recharge_amount, currency):
        raise _invalid(f"{currency} amounts have at most {decimals} decimals", "recharge_amount")


@dataclass(frozen=True, slots=True)
class RechargeDecision:
    """Whether to start a recharge now, and the stable reason why (or why not)."""

    recharge: bool
    reason: RechargeReason


def _skip(reason: RechargeReason) -> RechargeDecision:
    return RechargeDecision(recharge=False, reason=reason)


def decide(
    settings: AutoRecharge,
    balance: Decimal,
    now: datetime,
    *,
    in_flight: bool,
    postpaid: bool,
) -> RechargeDecision:
    """Decide whether ``balance`` calls for a recharge of ``settings.recharge_amount`` (R-23).

    Called after each debit. The first guard that holds gives the reason not to recharge; when
    none holds the answer is ``below_trigger``, or ``retry_due`` when a declined recharge is
    being retried. A recharge that leaves the balance below the trigger is followed by another
    at the next debit, since nothing here remembers the previous one beyond its outcome.
    """
    if not settings.enabled:
        return _skip("disabled")
    if postpaid:
        # an organization that switched to postpaid may still carry enabled settings
        # until the switch turns them off; it must never be recharged meanwhile.
        return _skip("postpaid")
    if settings.payment_method_id is None:
        return _skip("no_payment_method")
    if settings.trigger_amount is None or settings.recharge_amount is None:
        return _skip("incomplete_settings")
    if in_flight or settings.status == "pending":
        # At most one recharge in flight per organization; either signal is enough,
        # because charging twice is worse than recharging one debit late.
        return _skip("in_flight")
    if settings.status == "failing":
        # Every retry was declined: charging the same method again would only be declined
        # again. It waits for a new payment method or new settings (reset_on_change).
        return _skip("failing")
    if settings.next_retry_at is not None and now < settings.next_retry_at:
        return _skip("backing_off")
    if balance >= settings.trigger_amount:
        return _skip("not_below_trigger")
    if settings.status == "retrying":
        return RechargeDecision(recharge=True, reason="retry_due")
    return RechargeDecision(recharge=True, reason="below_trigger")


def _resting_status(settings: AutoRecharge) -> RechargeStatus:
    # Disabled settings always read "off", whatever happened to the last recharge.
    return "ok" if settings.enabled else "off"


def after_start(settings: AutoRecharge) -> AutoRecharge:
    """The settings once a recharge is enqueued: ``pending`` until its payment settles.

    The failure count is kept so that a declined retry still moves on to the next delay.
    """
    return replace(settings, status="pending", next_retry_at=None)


def after_failure(settings: AutoRecharge, now: datetime) -> AutoRecharge:
    """The settings after a declined recharge: back off, or give up once retries are used.

    After the 1st, 2nd and 3rd failure the status is ``retrying`` with the next attempt
    :data:`RETRY_DELAYS` later; after the 4th it is ``failing`` with no retry scheduled.
    A decline on settings disabled meanwhile is counted but schedules nothing.
    """
    failures = settings.failures + 1
    if not settings.enabled:
        return replace(settings, status="off", failures=failures, next_retry_at=None)
    if failures <= len(RETRY_DELAYS):
        return replace(
            settings,
            status="retrying",
            failures=failures,
            next_retry_at=now + RETRY_DELAYS[failures - 1],
        )
    return replace(settings, status="failing", failures=failures, next_retry_at=None)


def after_success(settings: AutoRecharge) -> AutoRecharge:
    """The settings after a recharge was paid: ``ok``, no failures, no retry scheduled.

    Settings disabled while the recharge was in flight read ``off`` instead.
    """
    return replace(settings, status=_resting_status(settings), failures=0, next_retry_at=None)


def reset_on_change(settings: AutoRecharge) -> AutoRecharge:
    """The settings after the payment method or the amounts changed: failures forgotten.

    A failing or backing-off policy is back to ``ok`` (``off`` when the change disabled it).
    A recharge still in flight stays ``pending``: its outcome is yet to be reported.
    """
    status: RechargeStatus = _resting_status(settings)
    if settings.enabled and settings.status == "pending":
        status = "pending"
    return replace(settings, status=status, failures=0, next_retry_at=None)
