"""A call authorized while a recharge is being paid waits for it rather than being refused
(our choice, with a short limit)."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from commcredits.adapters.payments import ChargeResult, SandboxGateway
from commcredits.app import build
from commcredits.services.calls import CallRequest
from commcredits.services.credits import AutoRechargeSettings, NewOrder
from commcredits.services.orgs import NewOrganization
from tests.conftest import CollectingTransport, assert_ledger_clean, make_settings

RATES = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,currency,"
    "effective_from,effective_to,description\n"
    "outbound,44,,,1.00,,60,60,USD,,,test\n"
)


class SlowGateway(SandboxGateway):
    """Answers a charge only after a pause, like a processor under load."""

    def charge(self, **kwargs: object) -> ChargeResult:  # type: ignore[override]
        time.sleep(0.4)
        return super().charge(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
def slow(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    container = build(
        make_settings(database_url, tmp_path, call_slice_seconds=60),
        transport=CollectingTransport(),
        gateway=SlowGateway(),
    )
    yield container
    assert_ledger_clean(container)
    container.close()


def test_a_call_waits_for_a_recharge_in_flight_instead_of_being_refused(slow) -> None:  # type: ignore[no-untyped-def]
    container = slow
    container.rating.load(RATES, "test")
    org = container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid")).id
    card = container.credits.add_card(
        org, number="4242424242424242", exp_month=12, exp_year=2030, cvc="123", holder="Pat"
    )
    container.credits.place_order(
        org, NewOrder("50.00", card.id, auto_recharge=AutoRechargeSettings(True, "10.00", "50.00"))
    )
    for sku in ("MCOEV", "MCOPSTN1"):
        container.directory.set_subscription(org, sku, 5, actor="t")
    container.directory.create_user(org, "pat@contoso.com", "Pat", "US", actor="t")
    container.directory.change_licenses(
        org, "pat@contoso.com", ["MCOEV", "MCOPSTN1", "MCOPSTNPP"], [], actor="t"
    )
    # Spend everything: the recharge starts and takes a while to be paid.
    spender = threading.Thread(target=container.credits.adjust, args=(org, "-50.00", "spend"))
    spender.start()
    time.sleep(0.1)
    decided = container.calls.authorize(
        org, CallRequest("c1", "user_out", "pat@contoso.com", "+14255550100", "+442071234567")
    )
    spender.join()
    assert (decided.decision, decided.funding) == ("allow", "credits")
    assert container.credits.view(org).balance == Decimal("50.00")
