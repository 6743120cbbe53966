"""The auto-recharge policy, without a database (R-03, R-23, R-27)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from commcredits.domain.errors import Conflict, RuleViolation
from commcredits.domain.recharge import (
    MIN_RECHARGE_AMOUNT,
    RETRY_DELAYS,
    AutoRecharge,
    after_failure,
    after_start,
    after_success,
    decide,
    reset_on_change,
    validate_settings,
)

D = Decimal
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)

ON = AutoRecharge(
    enabled=True,
    trigger_amount=D("20.00"),
    recharge_amount=D("50.00"),
    payment_method_id="pm-card-1",
    status="ok",
)


# --- validate_settings ------------------------------------------------------------------------


def test_valid_settings_are_accepted() -> None:
    validate_settings(True, D("20.00"), D("50.00"), "USD", postpaid=False)


def test_the_minimum_recharge_amount_itself_is_accepted() -> None:
    assert D("10.00") == MIN_RECHARGE_AMOUNT
    validate_settings(True, D("0.01"), MIN_RECHARGE_AMOUNT, "EUR", postpaid=False)


def test_disabled_settings_are_never_checked() -> None:
    validate_settings(False, None, None, "USD", postpaid=True)
    validate_settings(False, D("-1"), D("1"), "USD", postpaid=False)


def test_turning_auto_recharge_on_for_a_postpaid_organization_is_a_conflict() -> None:
    with pytest.raises(Conflict) as refused:
        validate_settings(True, D("20.00"), D("50.00"), "USD", postpaid=True)
    assert refused.value.code == "auto_recharge_not_allowed_for_postpaid"


@pytest.mark.parametrize(
    ("trigger", "recharge", "currency", "field_name"),
    [
        pytest.param(None, "50.00", "USD", "trigger_amount", id="missing trigger"),
        pytest.param("0", "50.00", "USD", "trigger_amount", id="zero trigger"),
        pytest.param("-5.00", "50.00", "USD", "trigger_amount", id="negative trigger"),
        pytest.param("20.001", "50.00", "USD", "trigger_amount", id="trigger below the cent"),
        pytest.param("NaN", "50.00", "USD", "trigger_amount", id="trigger not a number"),
        pytest.param("20.00", None, "USD", "recharge_amount", id="missing recharge"),
        pytest.param("20.00", "9.99", "USD", "recharge_amount", id="recharge below minimum"),
        pytest.param("20.00", "0", "USD", "recharge_amount", id="zero recharge"),
        pytest.param("20.00", "50.005", "USD", "recharge_amount", id="recharge below the cent"),
        pytest.param("20.00", "Infinity", "USD", "recharge_amount", id="infinite recharge"),
        pytest.param("500.5", "5000", "JPY", "trigger_amount", id="JPY trigger with sen"),
        pytest.param("500", "5000.50", "JPY", "recharge_amount", id="JPY recharge with sen"),
        pytest.param("1.0001", "10.000", "BHD", "trigger_amount", id="BHD below the fils"),
    ],
)
def test_invalid_settings_are_refused_naming_the_field(
    trigger: str | None, recharge: str | None, currency: str, field_name: str
) -> None:
    with pytest.raises(RuleViolation) as refused:
        validate_settings(
            True,
            None if trigger is None else D(trigger),
            None if recharge is None else D(recharge),
            currency,
            postpaid=False,
        )
    assert refused.value.code == "invalid_auto_recharge"
    assert refused.value.field == field_name


@pytest.mark.parametrize(
    ("trigger", "recharge", "currency"),
    [
        pytest.param("500", "5000", "JPY", id="whole yen"),
        pytest.param("500.00", "10.00", "JPY", id="yen written with zero decimals"),
        pytest.param("1.125", "10.125", "BHD", id="three-decimal dinar"),
    ],
)
def test_amounts_within_the_currency_minor_unit_are_accepted(
    trigger: str, recharge: str, currency: str
) -> None:
    validate_settings(True, D(trigger), D(recharge), currency, postpaid=False)


# --- decide -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One row of the decision table: ON with ``changes``, then what decide() must answer."""

    name: str
    reason: str
    recharge: bool = False
    changes: dict[str, Any] = field(default_factory=dict)
    balance: str = "0"
    in_flight: bool = False
    postpaid: bool = False


RETRYING = {"status": "retrying", "failures": 1}

DECISIONS = [
    Case("below the trigger", "below_trigger", recharge=True, balance="19.99"),
    Case("at zero balance", "below_trigger", recharge=True),
    Case("exactly at the trigger", "not_below_trigger", balance="20.00"),
    Case("above the trigger", "not_below_trigger", balance="100.00"),
    Case("disabled", "disabled", changes={"enabled": False, "status": "off"}),
    Case("postpaid", "postpaid", postpaid=True),
    Case("no payment method", "no_payment_method", changes={"payment_method_id": None}),
    Case("no trigger", "incomplete_settings", changes={"trigger_amount": None}),
    Case("no recharge amount", "incomplete_settings", changes={"recharge_amount": None}),
    Case("one already in flight", "in_flight", in_flight=True),
    Case("status pending", "in_flight", changes={"status": "pending"}),
    Case("all retries declined", "failing", changes={"status": "failing", "failures": 4}),
    Case(
        "backing off",
        "backing_off",
        changes={**RETRYING, "next_retry_at": NOW + timedelta(seconds=1)},
    ),
    Case("retry due now", "retry_due", recharge=True, changes={**RETRYING, "next_retry_at": NOW}),
    Case(
        "retry overdue",
        "retry_due",
        recharge=True,
        changes={**RETRYING, "failures": 2, "next_retry_at": NOW - timedelta(hours=3)},
        balance="5.00",
    ),
    Case(
        "retry due but the balance was topped up",
        "not_below_trigger",
        changes={**RETRYING, "next_retry_at": NOW},
        balance="25.00",
    ),
    # Guard order: the first guard that holds gives the reason.
    Case("disabled and postpaid", "disabled", changes={"enabled": False}, postpaid=True),
    Case("postpaid and in flight", "postpaid", in_flight=True, postpaid=True),
    Case("in flight while failing", "in_flight", changes={"status": "failing"}, in_flight=True),
    Case(
        "failing even when the old retry time passed",
        "failing",
        changes={"status": "failing", "failures": 4, "next_retry_at": NOW - timedelta(days=1)},
    ),
]


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in DECISIONS])
def test_decide_follows_its_guard_clauses_in_order(case: Case) -> None:
    decision = decide(
        replace(ON, **case.changes),
        D(case.balance),
        NOW,
        in_flight=case.in_flight,
        postpaid=case.postpaid,
    )
    assert (decision.recharge, decision.reason) == (case.recharge, case.reason)


def test_a_recharge_that_leaves_the_balance_below_the_trigger_is_followed_by_another() -> None:
    # the next debit triggers the next recharge.
    settings = after_success(after_start(replace(ON, trigger_amount=D("100.00"))))
    decision = decide(settings, D("60.00"), NOW, in_flight=False, postpaid=False)
    assert decision.recharge


# --- after_start / after_failure / after_success / reset_on_change ----------------------------


def test_a_started_recharge_is_pending_and_blocks_another() -> None:
    pending = after_start(ON)
    assert pending.status == "pending"
    assert decide(pending, D("0"), NOW, in_flight=False, postpaid=False).reason == "in_flight"


def test_the_retry_delays_grow_from_one_hour_to_a_day() -> None:
    assert (timedelta(hours=1), timedelta(hours=6), timedelta(hours=24)) == RETRY_DELAYS


@pytest.mark.parametrize(
    ("failures_before", "delay"),
    [(0, timedelta(hours=1)), (1, timedelta(hours=6)), (2, timedelta(hours=24))],
)
def test_a_declined_recharge_with_retries_left_backs_off(
    failures_before: int, delay: timedelta
) -> None:
    after = after_failure(replace(ON, status="pending", failures=failures_before), NOW)
    assert after.status == "retrying"
    assert after.failures == failures_before + 1
    assert after.next_retry_at == NOW + delay


def test_the_fourth_decline_stops_retrying() -> None:
    after = after_failure(replace(ON, status="pending", failures=3), NOW)
    assert after.status == "failing"
    assert after.failures == 4
    assert after.next_retry_at is None


def test_a_decline_after_disabling_schedules_no_retry() -> None:
    after = after_failure(replace(ON, enabled=False, status="off"), NOW)
    assert (after.status, after.failures, after.next_retry_at) == ("off", 1, None)


def test_a_card_declined_every_time_is_tried_four_times_then_waits() -> None:
    settings = ON
    now = NOW
    attempts: list[datetime] = []
    while True:
        decision = decide(settings, D("0"), now, in_flight=False, postpaid=False)
        if decision.reason == "backing_off":
            now += timedelta(minutes=30)
            continue
        if not decision.recharge:
            break
        attempts.append(now)
        settings = after_failure(after_start(settings), now)
    assert attempts == [
        NOW,
        NOW + timedelta(hours=1),
        NOW + timedelta(hours=7),
        NOW + timedelta(hours=31),
    ]
    assert settings.status == "failing"
    assert (
        decide(settings, D("0"), now + timedelta(days=30), in_flight=False, postpaid=False).reason
        == "failing"
    )


def test_a_success_clears_failures_and_the_retry_time() -> None:
    retrying = replace(ON, status="pending", failures=2, next_retry_at=NOW)
    assert after_success(retrying) == ON


def test_a_success_after_disabling_reads_off() -> None:
    assert after_success(replace(ON, enabled=False, status="pending")).status == "off"


def test_a_new_payment_method_lifts_a_failing_policy() -> None:
    failing = replace(ON, status="failing", failures=4)
    changed = reset_on_change(replace(failing, payment_method_id="pm-card-2"))
    assert changed == replace(ON, payment_method_id="pm-card-2")
    assert decide(changed, D("0"), NOW, in_flight=False, postpaid=False).recharge


def test_changed_settings_end_a_back_off() -> None:
    backing_off = replace(ON, status="retrying", failures=1, next_retry_at=NOW + timedelta(hours=1))
    changed = reset_on_change(replace(backing_off, recharge_amount=D("80.00")))
    assert (changed.status, changed.failures, changed.next_retry_at) == ("ok", 0, None)


def test_a_change_that_disables_auto_recharge_reads_off() -> None:
    assert reset_on_change(replace(ON, enabled=False, status="failing")).status == "off"


def test_a_change_keeps_a_recharge_in_flight_pending() -> None:
    changed = reset_on_change(replace(ON, status="pending", failures=1))
    assert (changed.status, changed.failures) == ("pending", 0)


def test_negative_failure_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="failures"):
        replace(ON, failures=-1)
