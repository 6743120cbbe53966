"""The many-organization call endpoints for a telephony edge (POST /v1/calls and friends)."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from commcredits.app import Container
from commcredits.services.credits import NewOrder

pytestmark = pytest.mark.usefixtures("sqlite_ledger_checked")

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def edge(client: Client, sqlite_container: Container) -> tuple[str, dict[str, str]]:
    """A funded organization with one user number, and a platform telephony key."""
    container = sqlite_container
    container.rating.ensure_loaded()
    org = client.post(
        "/v1/orgs",
        json={"name": "Contoso", "country": "US", "currency": "USD", "billing": "prepaid"},
    ).json()["id"]
    method = container.credits.add_agreement(org, "EA-1")
    container.credits.place_order(org, NewOrder("100.00", method.id))
    for sku in ("MCOEV", "MCOPSTN1"):
        container.directory.set_subscription(org, sku, 5, actor="t")
    container.directory.create_user(org, "pat@contoso.com", "Pat", "US", actor="t")
    container.directory.change_licenses(
        org, "pat@contoso.com", ["MCOEV", "MCOPSTN1", "MCOPSTNPP"], [], actor="t"
    )
    container.directory.add_number(org, "+14255550100", "user", "pat@contoso.com", actor="t")
    key = container.keys.create_platform_telephony_key().secret
    return org, {"Authorization": f"Bearer {key}"}


def test_the_edge_finds_the_organization_and_user_from_the_calling_number(
    client: Client, edge: tuple[str, dict[str, str]]
) -> None:
    org, headers = edge
    call = {
        "call_id": "sip-a",
        "call_type": "user_out",
        "from": "+14255550100",
        "to": "+442071234567",
    }
    decided = client.post("/v1/calls", json=call, headers=headers)
    assert decided.status_code == 201, decided.text
    body = decided.json()
    assert (body["decision"], body["funding"], body["org"]) == ("allow", "credits", org)
    assert (
        client.post("/v1/calls/sip-a/usage", json={"used_seconds": 30}, headers=headers).json()[
            "granted_seconds"
        ]
        > 0
    )
    ended = client.post("/v1/calls/sip-a/end", json={"duration_seconds": 90}, headers=headers)
    assert ended.status_code == 200
    assert ended.json()["user"] == "pat@contoso.com"
    assert ended.json()["charge"] == "0.05"  # GB fixed 0.024/min, 2 whole minutes, rounded once


def test_a_number_no_organization_owns_is_denied_as_unknown(
    client: Client, edge: tuple[str, dict[str, str]]
) -> None:
    _, headers = edge
    call = {
        "call_id": "sip-b",
        "call_type": "user_out",
        "from": "+14255550199",
        "to": "+442071234567",
    }
    body = client.post("/v1/calls", json=call, headers=headers).json()
    assert (body["decision"], body["reason"], body["org"]) == ("deny", "unknown_number", None)


def test_the_platform_telephony_key_does_nothing_else_and_org_keys_cannot_use_the_edge(
    client: Client, edge: tuple[str, dict[str, str]]
) -> None:
    org, headers = edge
    assert client.get(f"/v1/orgs/{org}/credits", headers=headers).status_code == 404
    assert client.get("/v1/orgs", headers=headers).status_code == 403
    admin = client.post(f"/v1/orgs/{org}/keys", json={"name": "a", "role": "admin"}).json()["key"]
    call = {
        "call_id": "sip-c",
        "call_type": "user_out",
        "from": "+14255550100",
        "to": "+442071234567",
    }
    refused = client.post("/v1/calls", json=call, headers={"Authorization": f"Bearer {admin}"})
    assert refused.status_code == 403
