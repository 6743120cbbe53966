"""Organizations with one of everything, for the fuzzing and security suites.

Each organization gets users, seats, numbers, a card and an enterprise agreement, a paid order
(with its lot and invoice), an ended call, a live call, a message, an extra API key and an admin,
so requests that name an object hit a real one. Two of them (with different numbers) let a test
point one organization's key at the other's objects.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from commcredits.app import Container, build
from commcredits.services.calls import CallRequest, SmsRequest
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization
from tests.conftest import OPERATOR_KEY, CollectingTransport, make_settings

CARD_NUMBER = "4242424242424242"
CARD_CVC = "737"
ORG_KEY_ROLES = ("admin", "billing", "telephony", "reader")


@dataclass(frozen=True, slots=True)
class World:
    """One seeded organization: its ids, and a secret key of each role."""

    org: str
    name: str
    upn: str
    user_id: str
    number: str
    card: str
    agreement: str
    order: str
    invoice: str
    lot: str
    call: str
    live_call: str
    sms: str
    key_id: str
    admin_email: str
    keys: dict[str, str]

    def identifiers(self) -> dict[str, str]:
        """Every value that belongs to this organization alone: none may appear in an answer
        given to another organization."""
        return {
            "org": self.org,
            "name": self.name,
            "upn": self.upn,
            "user_id": self.user_id,
            "number": self.number,
            "card": self.card,
            "agreement": self.agreement,
            "order": self.order,
            "invoice": self.invoice,
            "lot": self.lot,
            "call": self.call,
            "live_call": self.live_call,
            "key_id": self.key_id,
            "admin_email": self.admin_email,
        }

    def path_values(self) -> dict[str, str]:
        """The value of each path parameter of the API that names one of this
        organization's objects."""
        return {
            "org": self.org,
            "user": self.user_id,
            "key_id": self.key_id,
            "number": self.number,
            "method_id": self.card,
            "order_id": self.order,
            "invoice_id": self.invoice,
            "call_id": self.call,
        }


def seed(container: Container, tag: str, number_block: str) -> World:
    """A funded US organization named after ``tag``; its numbers start with ``number_block``
    (e.g. ``+1212555``) so two organizations never share one."""
    container.rating.ensure_loaded()
    org = container.orgs.create(
        NewOrganization(name=f"Org {tag}", country="US", currency="USD", billing="prepaid")
    ).id
    for sku, seats in (("MCOEV", 10), ("MCOPSTN1", 10), ("MCOMEETADV", 10)):
        container.directory.set_subscription(org, sku, seats, actor="seed")
    upn = f"ann.{tag.lower()}@{tag.lower()}.example.com"
    user = container.directory.create_user(org, upn, f"Ann {tag}", "US", actor="seed")
    card = container.credits.add_card(
        org, number=CARD_NUMBER, exp_month=12, exp_year=2030, cvc=CARD_CVC, holder=f"Ann {tag}"
    ).id
    agreement = container.credits.add_agreement(org, f"EA-{tag}").id
    order = container.credits.place_order(org, NewOrder("100.00", card))
    assert order.status == "paid", order
    assert order.invoice_id is not None
    assert order.lot_id is not None
    container.directory.change_licenses(
        org, upn, ["MCOEV", "MCOPSTN1", "MCOPSTNPP"], [], actor="seed"
    )
    number = f"{number_block}0100"
    container.directory.add_number(org, number, "user", upn, actor="seed")
    ended = f"call-{tag.lower()}-1"
    container.calls.authorize(org, CallRequest(ended, "user_out", upn, number, "+33142685300"))
    container.calls.end(org, ended, 125)
    live = f"call-{tag.lower()}-2"
    container.calls.authorize(org, CallRequest(live, "user_out", upn, number, "+442079460000"))
    sms = f"sms-{tag.lower()}-1"
    container.calls.sms(org, SmsRequest(sms, upn, "outbound", number, "+12125559999", 1))
    admin_email = f"admin@{tag.lower()}.example.com"
    container.orgs.add_admin(org, admin_email, f"Admin {tag}", ["global_admin"])
    keys = {
        role: container.keys.create_org_key(org, f"{role} key", role).secret
        for role in ORG_KEY_ROLES
    }
    spare = container.keys.create_org_key(org, "spare key", "reader").key.id
    return World(
        org=org,
        name=f"Org {tag}",
        upn=upn,
        user_id=user.id,
        number=number,
        card=card,
        agreement=agreement,
        order=order.id,
        invoice=order.invoice_id,
        lot=order.lot_id,
        call=ended,
        live_call=live,
        sms=sms,
        key_id=spare,
        admin_email=admin_email,
        keys=keys,
    )


@contextmanager
def service(template: Path, directory: Path) -> Iterator[Container]:
    """The whole service on a fresh copy of the migrated SQLite template."""
    path = directory / "commcredits.db"
    shutil.copyfile(template, path)
    container = build(
        make_settings(f"sqlite:///{path}", directory), transport=CollectingTransport()
    )
    try:
        yield container
    finally:
        container.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


OPERATOR = bearer(OPERATOR_KEY)
