"""Calls, CDR batches and messages, decided and charged on SQLite and PostgreSQL (R-28..R-38)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from commcredits.app import Container
from commcredits.domain.usage import CallRecord, SmsRecord
from commcredits.services.calls import CallRequest, CdrRecord, SmsRequest
from commcredits.services.credits import AutoRechargeSettings, NewOrder
from commcredits.services.directory import UserChanges
from commcredits.services.orgs import NewOrganization

pytestmark = pytest.mark.usefixtures("ledger_checked")

HEADER = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,"
    "currency,effective_from,effective_to,description\n"
)
# 5.00 a minute to the US: a 50.00 deposit pays ten minutes, two slices of 300 s.
DEAR = HEADER + "outbound,,US,any,5.00,,60,60,USD,2020-01-01,,US (test)\n"

ANN = "ann@contoso.com"
ANN_NUMBER = "+12125550100"
US_FIXED = "+12125550199"
FR_FIXED = "+33142685300"
GB_USER_NUMBER = "+442079460000"
GB_FIXED = "+442071234567"
TOLL_FREE = "+18002752273"

PAYG = ["MCOEV", "MCOPSTN_PAYG_1", "MCOPSTNPP"]
PLAN = ["MCOEV", "MCOPSTN1", "MCOPSTNPP"]


def _org(
    container: Container,
    *,
    deposit: str | None = "50.00",
    billing: str = "prepaid",
    overage: bool = False,
) -> str:
    org = container.orgs.create(
        NewOrganization("Contoso", "US", "USD", billing, overage_enabled=overage)  # type: ignore[arg-type]
    )
    if deposit:
        method = container.credits.add_agreement(org.id, "EA-1")
        container.credits.place_order(org.id, NewOrder(deposit, method.id))
    for sku in ("MCOEV", "MCOPSTN1", "MCOPSTN_PAYG_1", "MCOMEETADV"):
        container.directory.set_subscription(org.id, sku, 5, actor="t")
    return org.id


def _user(
    container: Container,
    org_id: str,
    licenses: list[str],
    *,
    upn: str = ANN,
    location: str = "US",
) -> str:
    container.directory.create_user(org_id, upn, upn.split("@")[0].title(), location, actor="t")
    container.directory.change_licenses(org_id, upn, licenses, [], actor="t")
    return upn


def _call(
    container: Container,
    org_id: str,
    call_id: str,
    to: str = US_FIXED,
    *,
    user: str | None = ANN,
    call_type: str = "user_out",
    from_number: str = ANN_NUMBER,
) -> CallRecord:
    request = CallRequest(call_id, call_type, user, from_number, to)
    return container.calls.authorize(org_id, request)


def _cdr(
    call_id: str,
    start: datetime,
    seconds: int,
    *,
    user: str = ANN,
    from_number: str = ANN_NUMBER,
    to: str = US_FIXED,
) -> CdrRecord:
    return CdrRecord(call_id, "user_out", user, from_number, to, start, seconds)


def _balance(container: Container, org_id: str) -> Decimal:
    return container.credits.view(org_id).balance


def _pool(container: Container, org_id: str, capability: str, month: str | None = None) -> int:
    """Used minutes (messages) of the organization's one pool of ``capability``."""
    used = [u for key, _, u in container.calls.pools(org_id, month) if key.capability == capability]
    assert len(used) == 1
    return used[0]


# -- pools (R-31, R-32, R-50a) -------------------------------------------------------------------


def test_a_domestic_call_is_drawn_from_the_pool_in_whole_minutes_rounded_up(
    container: Container,
) -> None:
    """R-31: pool minutes per call, whole minutes rounded up; nothing is charged."""
    container.rating.ensure_loaded()
    org_id = _org(container)
    _user(container, org_id, PLAN)
    allowed = _call(container, org_id, "c1")
    assert (allowed.decision, allowed.funding, allowed.capability) == ("allow", "pool", "MCOPSTN1")
    assert allowed.granted_seconds == 300
    ended = container.calls.end(org_id, "c1", 61)
    assert (ended.pool_minutes, ended.charge, ended.capability) == (2, Decimal("0"), "MCOPSTN1")
    assert _pool(container, org_id, "MCOPSTN1") == 2
    assert _balance(container, org_id) == Decimal("50.00")


def test_a_call_crossing_the_end_of_the_pool_is_split_between_pool_and_rate(
    container: Container,
) -> None:
    """R-31, R-33, R-50a: the pool pays its last minute, the rest is charged; one record,
    capability MCOPSTNPP."""
    container.rating.ensure_loaded()
    org_id = _org(container)
    _user(container, org_id, PLAN, location="GB")  # 1200 pooled minutes
    start = container.clock.now() - timedelta(days=1)
    [used] = container.calls.import_cdrs(
        org_id, [_cdr("pre", start, 1199 * 60, from_number=GB_USER_NUMBER, to=GB_FIXED)]
    )
    assert (used.status, used.charge) == ("charged", Decimal("0"))
    allowed = _call(container, org_id, "split", GB_FIXED, from_number=GB_USER_NUMBER)
    assert (allowed.funding, allowed.granted_seconds) == ("pool", 60)
    ended = container.calls.end(org_id, "split", 150)
    # 60 s from the pool, 90 s billed as 2 minutes of GB fixed at 0.0240 = 0.048 -> 0.05.
    assert ended.pool_minutes == 1
    assert ended.charge == Decimal("0.05")
    assert ended.capability == "MCOPSTNPP"
    assert _pool(container, org_id, "MCOPSTN1") == 1200
    assert _balance(container, org_id) == Decimal("49.95")


def test_an_international_call_on_a_domestic_plan_is_charged_at_the_destination_rate(
    container: Container,
) -> None:
    """R-32, R-33: MCOPSTN1 has no international minutes; FR fixed 0.0250 x 3 min = 0.075 ->
    0.08, from credits."""
    container.rating.ensure_loaded()
    org_id = _org(container)
    _user(container, org_id, PLAN)
    allowed = _call(container, org_id, "intl", FR_FIXED)
    assert (allowed.decision, allowed.funding, allowed.capability) == (
        "allow",
        "credits",
        "MCOPSTNPP",
    )
    ended = container.calls.end(org_id, "intl", 125)
    assert ended.charge == Decimal("0.08")
    assert ended.currency == "USD"
    assert _balance(container, org_id) == Decimal("49.92")
    assert _pool(container, org_id, "MCOPSTN1") == 0


def test_an_international_call_without_mcopstnpp_is_refused(container: Container) -> None:
    """R-15: a user without MCOPSTNPP never draws on credits."""
    container.rating.ensure_loaded()
    org_id = _org(container)
    _user(container, org_id, ["MCOEV", "MCOPSTN1"])
    denied = _call(container, org_id, "intl", FR_FIXED)
    assert (denied.decision, denied.reason) == ("deny", "no_license")
    assert container.calls.end(org_id, "intl", 60).charge == Decimal("0")
    assert _balance(container, org_id) == Decimal("50.00")


# -- zero balance, free calls (R-28, R-30) --------------------------------------------------------


def test_at_zero_balance_paid_calls_stop_but_emergency_calls_go_through_free(
    container: Container,
) -> None:
    container.rating.ensure_loaded()
    org_id = _org(container)
    _user(container, org_id, PAYG)
    container.credits.adjust(org_id, "-50.00", "empty it")
    denied = _call(container, org_id, "paid")
    assert (denied.decision, denied.reason) == ("deny", "no_credits")
    for call_id, call_type, to in (("e1", "user_out", "911"), ("e2", "emergency_out", "911")):
        emergency = _call(container, org_id, call_id, to, call_type=call_type)
        assert (emergency.decision, emergency.funding) == ("allow", "free")
        ended = container.calls.end(org_id, call_id, 600)
        assert ended.charge == Decimal("0")
    assert _balance(container, org_id) == Decimal("0.00")


def test_an_incoming_call_to_a_user_is_free(container: Container) -> None:
    """R-30: incoming calls are unlimited and free, even at zero balance."""
    container.rating.ensure_loaded()
    org_id = _org(container, deposit=None)
    _user(container, org_id, ["MCOEV", "MCOPSTN_PAYG_1"])
    container.directory.add_number(org_id, ANN_NUMBER, "user", ANN, actor="t")
    incoming = _call(container, org_id, "in", ANN_NUMBER, call_type="user_in", from_number=US_FIXED)
    assert (incoming.decision, incoming.funding) == ("allow", "free")
    assert container.calls.end(org_id, "in", 3600).charge == Decimal("0")


def test_toll_free_dial_in_is_charged_at_the_toll_free_rate(container: Container) -> None:
    """R-34: the organization's toll-free bridge, US toll_free_in 0.0250 x 3 min = 0.075 -> 0.08."""
    container.rating.ensure_loaded()
    org_id = _org(container)
    _user(container, org_id, ["MCOMEETADV", "MCOPSTNPP"])
    container.directory.add_number(org_id, TOLL_FREE, "conference_toll_free", None, actor="t")
    allowed = _call(container, org_id, "tf", TOLL_FREE, call_type="conf_in", from_number=US_FIXED)
    assert (allowed.decision, allowed.funding, allowed.capability) == (
        "allow",
        "credits",
        "MCOPSTNPP",
    )
    ended = container.calls.end(org_id, "tf", 125)
    assert ended.charge == Decimal("0.08")
    assert _balance(container, org_id) == Decimal("49.92")


# -- postpaid (R-03, R-04) ------------------------------------------------------------------------


def test_postpaid_with_overage_on_allows_the_call_as_overage_without_a_ledger_debit(
    container: Container,
) -> None:
    container.rating.ensure_loaded()
    org_id = _org(container, deposit=None, billing="postpaid", overage=True)
    _user(container, org_id, ["MCOEV", "MCOPSTN_PAYG_1"])
    allowed = _call(container, org_id, "ovg")
    assert (allowed.decision, allowed.funding, allowed.capability) == (
        "allow",
        "overage",
        "MCOPSTNPP",
    )
    ended = container.calls.end(org_id, "ovg", 125)
    assert ended.charge == Decimal("0.04")  # US 0.0120 x 3 min = 0.036 -> 0.04
    assert ended.funding == "overage"
    assert container.credits.transactions(org_id) == []


def test_postpaid_with_overage_off_and_no_balance_refuses_paid_calls(container: Container) -> None:
    """R-04: included minutes used up (PAYG has none) and overage off: refused."""
    container.rating.ensure_loaded()
    org_id = _org(container, deposit=None, billing="postpaid", overage=False)
    _user(container, org_id, ["MCOEV", "MCOPSTN_PAYG_1"])
    denied = _call(container, org_id, "no")
    assert (denied.decision, denied.reason) == ("deny", "no_license")
    assert container.credits.transactions(org_id) == []


# -- slices and reservations ----------------------------------------------------------------------


def test_usage_grants_the_next_slice_and_answers_zero_when_the_money_runs_out(
    container: Container,
) -> None:
    container.rating.load(DEAR)
    org_id = _org(container)
    _user(container, org_id, PAYG)
    first = _call(container, org_id, "long")
    assert (first.funding, first.granted_seconds, first.reserved) == (
        "credits",
        300,
        Decimal("25.00"),
    )
    assert container.calls.usage(org_id, "long", 200) == 400  # a second slice of 300 s
    assert container.credits.view(org_id).reserved == Decimal("50.00")
    assert container.calls.usage(org_id, "long", 500) == 100  # no money for a third
    assert container.calls.usage(org_id, "long", 600) == 0  # hang up
    ended = container.calls.end(org_id, "long", 600)
    assert ended.charge == Decimal("50.00")
    view = container.credits.view(org_id)
    assert (view.balance, view.reserved) == (Decimal("0.00"), Decimal("0.00"))


def test_end_is_idempotent_and_a_call_is_charged_once(container: Container) -> None:
    container.rating.load(DEAR)
    org_id = _org(container)
    _user(container, org_id, PAYG)
    _call(container, org_id, "once")
    first = container.calls.end(org_id, "once", 61)
    entries = len(container.credits.transactions(org_id))
    second = container.calls.end(org_id, "once", 900)
    assert first == second
    assert first.charge == Decimal("10.00")  # 2 minutes at 5.00
    assert _balance(container, org_id) == Decimal("40.00")
    assert len(container.credits.transactions(org_id)) == entries
    assert container.calls.usage(org_id, "once", 1000) == 0


def test_reservations_keep_available_equal_to_balance_minus_reserved_and_never_negative(
    container: Container,
) -> None:
    container.rating.load(DEAR)
    org_id = _org(container)
    _user(container, org_id, PAYG)
    _call(container, org_id, "r1")
    view = container.credits.view(org_id)
    assert (view.balance, view.reserved, view.available) == (
        Decimal("50.00"),
        Decimal("25.00"),
        Decimal("25.00"),
    )
    _call(container, org_id, "r2")
    denied = _call(container, org_id, "r3")
    assert (denied.decision, denied.reason) == ("deny", "no_credits")
    view = container.credits.view(org_id)
    assert (view.reserved, view.available) == (Decimal("50.00"), Decimal("0.00"))
    container.calls.end(org_id, "r1", 30)  # 1 minute: 5.00; the other 20.00 is released
    view = container.credits.view(org_id)
    assert (view.balance, view.reserved, view.available) == (
        Decimal("45.00"),
        Decimal("25.00"),
        Decimal("20.00"),
    )
    container.calls.end(org_id, "r2", 0)
    view = container.credits.view(org_id)
    assert (view.balance, view.reserved, view.available) == (
        Decimal("45.00"),
        Decimal("0.00"),
        Decimal("45.00"),
    )


def test_the_reservation_job_ends_an_abandoned_call_charging_only_confirmed_seconds(
    container: Container,
) -> None:
    container.rating.load(DEAR)
    org_id = _org(container)
    _user(container, org_id, PAYG)
    _call(container, org_id, "lost")
    assert container.calls.usage(org_id, "lost", 90) == 210
    assert container.credits.view(org_id).reserved == Decimal("25.00")
    container.jobs.advance_clock(container.clock.now() + timedelta(minutes=16))
    record = container.calls.get(org_id, "lost")
    assert (record.status, record.duration_seconds) == ("ended", 90)
    assert record.charge == Decimal("10.00")  # 90 s -> 2 minutes at 5.00
    view = container.credits.view(org_id)
    assert (view.balance, view.reserved) == (Decimal("40.00"), Decimal("0.00"))


# -- CDR batches ----------------------------------------------------------------------------------


def test_a_cdr_batch_reports_duplicates_and_rejects_a_bad_record_while_charging_the_rest(
    container: Container,
) -> None:
    container.rating.load(DEAR)
    org_id = _org(container)
    _user(container, org_id, PAYG)
    start = container.clock.now() - timedelta(hours=2)
    first = container.calls.import_cdrs(
        org_id,
        [
            _cdr("a", start, 60),
            _cdr("bad", start + timedelta(minutes=1), 60, to="+999"),
            _cdr("b", start + timedelta(minutes=2), 61),
            _cdr("negative", start + timedelta(minutes=3), -5),
        ],
    )
    assert [(r.call_id, r.status, r.charge) for r in first] == [
        ("a", "charged", Decimal("5.00")),
        ("bad", "rejected", None),
        ("b", "charged", Decimal("10.00")),
        ("negative", "rejected", None),
    ]
    assert (first[1].error, first[3].error) == ("invalid_number", "invalid_request")
    second = container.calls.import_cdrs(
        org_id, [_cdr("a", start, 60), _cdr("c", start + timedelta(minutes=3), 1)]
    )
    assert [(r.call_id, r.status) for r in second] == [("a", "duplicate"), ("c", "charged")]
    assert _balance(container, org_id) == Decimal("30.00")


def test_a_call_id_twice_in_one_batch_is_charged_once(container: Container) -> None:
    container.rating.load(DEAR)
    org_id = _org(container)
    _user(container, org_id, PAYG)
    start = container.clock.now() - timedelta(hours=2)
    container.calls.import_cdrs(
        org_id, [_cdr("x", start, 60), _cdr("x", start + timedelta(minutes=5), 60)]
    )
    record = container.calls.get(org_id, "x")
    assert (record.status, record.charge) == ("ended", Decimal("5.00"))
    assert _balance(container, org_id) == Decimal("45.00")


def test_a_call_id_twice_in_one_batch_is_reported_charged_then_duplicate(
    container: Container,
) -> None:
    container.rating.load(DEAR)
    org_id = _org(container)
    _user(container, org_id, PAYG)
    start = container.clock.now() - timedelta(hours=2)
    results = container.calls.import_cdrs(
        org_id, [_cdr("x", start, 60), _cdr("x", start + timedelta(minutes=5), 60)]
    )
    assert [(r.call_id, r.status, r.charge) for r in results] == [
        ("x", "charged", Decimal("5.00")),
        ("x", "duplicate", None),
    ]


def test_cdrs_arriving_out_of_order_are_charged_in_start_time_order(
    container: Container,
) -> None:
    """The earlier call takes the pool; the later one crosses its end and is split."""
    container.rating.ensure_loaded()
    org_id = _org(container)
    _user(container, org_id, PLAN, location="GB")  # 1200 pooled minutes
    start = container.clock.now() - timedelta(days=2)
    results = container.calls.import_cdrs(
        org_id,
        [
            _cdr(
                "late",
                start + timedelta(hours=1),
                200 * 60,
                from_number=GB_USER_NUMBER,
                to=GB_FIXED,
            ),
            _cdr("early", start, 1100 * 60, from_number=GB_USER_NUMBER, to=GB_FIXED),
        ],
    )
    by_id = {r.call_id: r for r in results}
    assert by_id["early"].charge == Decimal("0")
    assert by_id["late"].charge == Decimal("2.40")  # 100 minutes x 0.0240
    late = container.calls.get(org_id, "late")
    assert (late.pool_minutes, late.capability) == (100, "MCOPSTNPP")
    assert _balance(container, org_id) == Decimal("47.60")


# -- SMS (R-38) ----------------------------------------------------------------------------------


def test_sms_draws_on_the_pool_then_is_charged_beyond_it(container: Container) -> None:
    """MCOPSTN1: 200 messages per user per month; then sms_out 0.0075 per segment."""
    container.rating.ensure_loaded()
    org_id = _org(container)
    _user(container, org_id, PLAN)

    def send(sms_id: str, units: int) -> SmsRecord:
        return container.calls.sms(
            org_id, SmsRequest(sms_id, ANN, "outbound", ANN_NUMBER, US_FIXED, units)
        )

    pooled = send("s1", 199)
    assert (pooled.decision, pooled.funding, pooled.charge) == ("allow", "pool", Decimal("0"))
    assert _pool(container, org_id, "SMS") == 199
    crossing = send("s2", 3)  # 1 from the pool, 2 x 0.0075 = 0.015 -> 0.02
    assert (crossing.funding, crossing.charge) == ("credits", Decimal("0.02"))
    beyond = send("s3", 1)
    assert beyond.charge == Decimal("0.01")  # 0.0075 -> 0.01
    assert _pool(container, org_id, "SMS") == 200
    assert send("s3", 1) == beyond  # the same message id is not charged again
    assert _balance(container, org_id) == Decimal("49.97")


def test_a_pool_resets_on_the_first_of_the_next_month(container: Container) -> None:
    """R-31: pools are per calendar month (UTC)."""
    container.rating.ensure_loaded()
    org_id = _org(container)
    _user(container, org_id, PLAN, location="GB")
    start = container.clock.now() - timedelta(days=1)
    container.calls.import_cdrs(
        org_id, [_cdr("jan", start, 1200 * 60, from_number=GB_USER_NUMBER, to=GB_FIXED)]
    )
    assert _pool(container, org_id, "MCOPSTN1") == 1200
    jan = _call(container, org_id, "jan-2", GB_FIXED, from_number=GB_USER_NUMBER)
    assert jan.funding == "credits"
    container.calls.end(org_id, "jan-2", 0)
    container.clock.set(datetime.fromisoformat("2026-02-01T00:00:00+00:00"))
    feb = _call(container, org_id, "feb", GB_FIXED, from_number=GB_USER_NUMBER)
    assert (feb.funding, feb.capability, feb.granted_seconds) == ("pool", "MCOPSTN1", 300)
    container.calls.end(org_id, "feb", 60)
    assert _pool(container, org_id, "MCOPSTN1") == 1
    assert _pool(container, org_id, "MCOPSTN1", "2026-01") == 1200


# -- limits and recharges (R-37, R-23) -----------------------------------------------------------


def test_a_user_at_the_spend_limit_is_refused(container: Container) -> None:
    container.rating.load(DEAR)
    org_id = _org(container)
    _user(container, org_id, PAYG)
    container.directory.update_user(org_id, ANN, UserChanges(spend_limit="5.00"), actor="t")
    first = _call(container, org_id, "s1")
    assert first.granted_seconds == 60  # what 5.00 of limit pays
    assert container.calls.end(org_id, "s1", 60).charge == Decimal("5.00")
    denied = _call(container, org_id, "s2")
    assert (denied.decision, denied.reason) == ("deny", "spend_limit_reached")
    assert _balance(container, org_id) == Decimal("45.00")


def _auto_recharging(container: Container) -> str:
    """50.00 of credits that recharge by 50.00 when the balance falls below 30.00."""
    container.rating.load(DEAR)
    org_id = _org(container, deposit=None)
    card = container.credits.add_card(
        org_id, number="4242424242424242", exp_month=12, exp_year=2030, cvc="123", holder="Pat"
    )
    container.credits.place_order(
        org_id,
        NewOrder("50.00", card.id, auto_recharge=AutoRechargeSettings(True, "30.00", "50.00")),
    )
    _user(container, org_id, PAYG)
    return org_id


def test_a_debit_leaving_the_balance_under_the_trigger_starts_a_recharge(
    container: Container,
) -> None:
    """R-23: a 5-minute CDR takes 25.00; 25.00 < 30.00 starts exactly one recharge."""
    org_id = _auto_recharging(container)
    start = container.clock.now() - timedelta(hours=1)
    [result] = container.calls.import_cdrs(org_id, [_cdr("big", start, 300)])
    assert result.charge == Decimal("25.00")
    assert _balance(container, org_id) == Decimal("75.00")
    assert len(container.credits.view(org_id).lots) == 2


def test_a_reservation_leaving_the_available_balance_under_the_trigger_starts_a_recharge(
    container: Container,
) -> None:
    org_id = _auto_recharging(container)
    allowed = _call(container, org_id, "live")
    assert allowed.reserved == Decimal("25.00")
    view = container.credits.view(org_id)
    assert (view.balance, view.reserved) == (Decimal("100.00"), Decimal("25.00"))
    container.calls.end(org_id, "live", 60)
    assert _balance(container, org_id) == Decimal("95.00")
