"""A finished call sent days later is charged now, but its ledger entry carries the time the
call ended: daily spend (funding advice, charts) counts it on the day it happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from commcredits.app import Container
from commcredits.services.calls import CdrRecord
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization

pytestmark = pytest.mark.usefixtures("ledger_checked")


def test_a_late_cdr_is_dated_when_the_call_ended(container: Container) -> None:
    container.rating.ensure_loaded()
    org = container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid")).id
    method = container.credits.add_agreement(org, "EA-1")
    container.credits.place_order(org, NewOrder("100.00", method.id))
    for sku in ("MCOEV", "MCOPSTN1"):
        container.directory.set_subscription(org, sku, 5, actor="t")
    container.directory.create_user(org, "pat@contoso.com", "Pat", "US", actor="t")
    container.directory.change_licenses(
        org, "pat@contoso.com", ["MCOEV", "MCOPSTN1", "MCOPSTNPP"], [], actor="t"
    )
    started = container.clock.now() - timedelta(days=3)
    [result] = container.calls.import_cdrs(
        org,
        [
            CdrRecord(
                "late-1",
                "user_out",
                "pat@contoso.com",
                "+14255550100",
                "+442071234567",
                started,
                90,
            )
        ],
    )
    assert result.status == "charged"
    [usage] = [e for e in container.credits.transactions(org) if e.kind == "usage"]
    assert usage.at == started + timedelta(seconds=90)
    assert usage.at < container.clock.now()
    assert usage.at.utcoffset() == timedelta(0)
    assert datetime(2026, 1, 1, tzinfo=UTC) < usage.at
