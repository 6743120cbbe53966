"""Kamailio with the shipped configuration enforces credits on real SIP traffic."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from tests.sip.conftest import Phones, new_org

pytestmark = pytest.mark.sip

LONDON = "+442071234567"


def test_an_allowed_call_of_ten_seconds_is_in_the_usage_report_with_its_charge(
    phones: Phones, operator: httpx.Client
) -> None:
    (pat,) = new_org(operator, "50.00")
    done = phones.call([(pat.number, LONDON)], hangup_after_ms=10_000)
    assert done.returncode == 0, done.stdout + phones.logs()
    (row,) = pat.calls()
    assert row["Duration Seconds"] == 10
    assert row["Charge"] == "0.10"  # 0.60 a minute, per second
    assert row["Capability"] == "MCOPSTNPP"
    assert pat.balance() == "49.90"


def test_a_user_with_no_credits_and_no_pool_minutes_gets_402_and_nothing_is_charged(
    phones: Phones, operator: httpx.Client
) -> None:
    (pat,) = new_org(operator, "0.00")
    done = phones.call([(pat.number, LONDON)], refused_with=402)
    assert done.returncode == 0, done.stdout + phones.logs()
    assert "reason=no_credits" in phones.logs()
    assert pat.balance() == "0.00"
    assert all(row["Charge"] == "0.00" for row in pat.calls())


def test_a_call_the_credit_covers_for_seven_seconds_is_cut_by_bye_and_charged_what_it_used(
    phones: Phones, operator: httpx.Client
) -> None:
    (pat,) = new_org(operator, "0.07")  # 7 seconds at 0.01 a second
    done = phones.call([(pat.number, LONDON)], hangup_after_ms=30_000)
    assert done.returncode == 0, done.stdout + phones.logs()
    (row,) = pat.calls()
    # The phone would have stayed 30 s: the BYE came from the network at the granted time
    # (the dialog timer ticks once a second).
    assert 6 <= row["Duration Seconds"] <= 8
    assert Decimal(row["Charge"]) == min(Decimal(row["Duration Seconds"]) / 100, Decimal("0.07"))
    assert Decimal(pat.balance()) == Decimal("0.07") - Decimal(row["Charge"])
    assert Decimal(pat.balance()) >= 0


def test_fifty_simultaneous_calls_never_overdraw_a_balance_that_funds_ten_minutes(
    phones: Phones, operator: httpx.Client
) -> None:
    users = new_org(operator, "6.00", users=50)  # 600 s at 0.01 a second
    calls = [(user.number, LONDON) for user in users]
    done = phones.call(calls, hangup_after_ms=20_000, concurrent=50, rate=50)
    assert done.returncode == 0, done.stdout + phones.logs()
    rows = users[0].calls()
    assert len(rows) == 50
    charged = sum(Decimal(row["Charge"]) for row in rows)
    assert charged <= Decimal("6.00")
    assert Decimal(users[0].balance()) == Decimal("6.00") - charged
    assert Decimal(users[0].balance()) >= 0
    # 50 calls of 20 s would need 1000 s: the money ran out and calls were cut.
    assert sum(row["Duration Seconds"] for row in rows) < 50 * 20
