"""The conferencing dial-out pool: 60 minutes per MCOMEETADV license, notices at 80% and 100%
(R-35), once each per month."""

from __future__ import annotations

import pytest

from commcredits.app import Container
from commcredits.services.calls import CallRequest
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization

pytestmark = pytest.mark.usefixtures("ledger_checked")


def _org_with_organizers(container: Container) -> str:
    container.rating.ensure_loaded()
    org = container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid")).id
    container.orgs.add_admin(org, "billing@contoso.example", "Bill", ["billing_admin"])
    method = container.credits.add_agreement(org, "EA-1")
    container.credits.place_order(org, NewOrder("100.00", method.id))
    container.directory.set_subscription(org, "MCOMEETADV", 2, actor="t")
    for upn in ("ann@contoso.com", "bo@contoso.com"):
        container.directory.create_user(org, upn, upn, "US", actor="t")
        container.directory.change_licenses(org, upn, ["MCOMEETADV", "MCOPSTNPP"], [], actor="t")
    return org


def _dial_out(container: Container, org: str, call_id: str, minutes: int) -> None:
    call = CallRequest(
        call_id,
        "conf_out",
        "ann@contoso.com",
        "+14255550100",
        "+442071234567",
        conference_id="meeting-1",
    )
    decided = container.calls.authorize(org, call)
    assert (decided.funding, decided.capability) == ("pool", "MCOMEETADD")
    container.calls.end(org, call_id, minutes * 60)


def _notices(container: Container, org: str) -> list[str]:
    return sorted(m.kind for m in container.mailer.list_for_org(org) if m.kind.startswith("dial"))


def test_the_dialout_pool_warns_at_80_and_100_percent_once_each(container: Container) -> None:
    org = _org_with_organizers(container)
    [pool] = [p for p in container.calls.pools(org) if p[0].capability == "MCOMEETADD"]
    assert pool[1] == 120  # two MCOMEETADV licenses x 60 minutes
    _dial_out(container, org, "c1", 90)
    assert _notices(container, org) == []
    _dial_out(container, org, "c2", 10)  # 100 of 120: past 80%
    assert _notices(container, org) == ["dialout_pool_80"]
    _dial_out(container, org, "c3", 5)
    assert _notices(container, org) == ["dialout_pool_80"]
    _dial_out(container, org, "c4", 15)  # 120 of 120
    assert _notices(container, org) == ["dialout_pool_100", "dialout_pool_80"]
    recipients = {r for m in container.mailer.list_for_org(org) for r in m.recipients}
    assert recipients == {"billing@contoso.example"}
