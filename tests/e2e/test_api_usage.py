"""The HTTP contract of call control, CDR batches, messages and pools (API.md, "Usage")."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from commcredits.app import Container
from commcredits.services.credits import NewOrder

Client = TestClient  # type: ignore[type-arg]

pytestmark = pytest.mark.usefixtures("sqlite_ledger_checked")

ANN = "ann@contoso.com"
ANN_NUMBER = "+12125550100"
US_FIXED = "+12125550199"
DECISION_FIELDS = {"call_id", "decision", "reason", "granted_seconds", "funding", "capability"}
POOL_FIELDS = {
    "country",
    "capability",
    "description",
    "total_minutes",
    "used_minutes",
    "available_minutes",
    "percent_used",
}


def _org(client: Client, container: Container) -> str:
    """A funded US organization with Ann on a Domestic Calling Plan and MCOPSTNPP."""
    container.rating.ensure_loaded()
    response = client.post(
        "/v1/orgs",
        json={"name": "Contoso", "country": "US", "currency": "USD", "billing": "prepaid"},
    )
    assert response.status_code == 201, response.text
    org_id = str(response.json()["id"])
    method = container.credits.add_agreement(org_id, "EA-1")
    container.credits.place_order(org_id, NewOrder("100.00", method.id))
    for sku in ("MCOEV", "MCOPSTN1"):
        container.directory.set_subscription(org_id, sku, 5, actor="t")
    container.directory.create_user(org_id, ANN, "Ann", "US", actor="t")
    container.directory.change_licenses(
        org_id, ANN, ["MCOEV", "MCOPSTN1", "MCOPSTNPP"], [], actor="t"
    )
    return org_id


def _key(client: Client, org_id: str, role: str) -> str:
    response = client.post(f"/v1/orgs/{org_id}/keys", json={"name": f"{role} key", "role": role})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _call(call_id: str, to: str = US_FIXED, **overrides: Any) -> dict[str, Any]:
    body = {"call_id": call_id, "call_type": "user_out", "user": ANN, "from": ANN_NUMBER, "to": to}
    return {**body, **overrides}


def test_a_call_is_decided_extended_and_ended_over_http(
    client: Client, sqlite_container: Container
) -> None:
    org_id = _org(client, sqlite_container)
    base = f"/v1/orgs/{org_id}"
    decided = client.post(f"{base}/calls", json=_call("c1", "+33142685300"))
    assert decided.status_code == 201, decided.text
    body = decided.json()
    assert set(body) == DECISION_FIELDS
    assert body == {
        "call_id": "c1",
        "decision": "allow",
        "reason": None,
        "granted_seconds": 300,
        "funding": "credits",
        "capability": "MCOPSTNPP",
    }
    usage = client.post(f"{base}/calls/c1/usage", json={"used_seconds": 200})
    assert (usage.status_code, usage.json()) == (200, {"granted_seconds": 400})
    ended = client.post(f"{base}/calls/c1/end", json={"duration_seconds": 125})
    assert ended.status_code == 200, ended.text
    record = ended.json()
    # FR fixed 0.0250 x 3 minutes = 0.075 -> 0.08.
    assert (record["call_id"], record["charge"], record["currency"]) == ("c1", "0.08", "USD")
    assert record["capability"] == "MCOPSTNPP"
    assert record["from"] == ANN_NUMBER
    again = client.post(f"{base}/calls/c1/end", json={"duration_seconds": 999})
    assert again.json() == record
    assert client.get(f"{base}/calls/c1").json() == record


def test_cdrs_sms_and_pools_answer_in_their_contract_shapes(
    client: Client, sqlite_container: Container
) -> None:
    org_id = _org(client, sqlite_container)
    base = f"/v1/orgs/{org_id}"
    cdr = {
        "call_id": "k1",
        "call_type": "user_out",
        "user": ANN,
        "from": ANN_NUMBER,
        "to": US_FIXED,
        "start_time": "2026-01-15T08:00:00Z",
        "duration_seconds": 61,
    }
    first = client.post(f"{base}/cdrs", json={"records": [cdr]})
    assert first.status_code == 200, first.text
    [result] = first.json()["results"]
    assert (result["call_id"], result["status"], result["charge"]) == ("k1", "charged", "0.00")
    second = client.post(f"{base}/cdrs", json={"records": [cdr]})
    assert [(r["call_id"], r["status"]) for r in second.json()["results"]] == [("k1", "duplicate")]

    sms = client.post(
        f"{base}/sms",
        json={
            "sms_id": "m1",
            "user": ANN,
            "direction": "outbound",
            "from": ANN_NUMBER,
            "to": US_FIXED,
            "units": 2,
        },
    )
    assert sms.status_code == 201, sms.text
    assert {"decision", "reason", "charge", "funding"} <= set(sms.json())
    assert (sms.json()["decision"], sms.json()["funding"], sms.json()["charge"]) == (
        "allow",
        "pool",
        "0.00",
    )

    pools = client.get(f"{base}/pools")
    assert pools.status_code == 200, pools.text
    by_capability = {p["capability"]: p for p in pools.json()}
    for pool in by_capability.values():
        assert set(pool) >= POOL_FIELDS
    domestic = by_capability["MCOPSTN1"]
    assert (domestic["country"], domestic["total_minutes"], domestic["used_minutes"]) == (
        "US",
        3000,
        2,
    )
    assert domestic["available_minutes"] == 2998
    assert by_capability["SMS"]["used_minutes"] == 2


def test_every_cdr_result_carries_call_id_status_charge_and_error(
    client: Client, sqlite_container: Container
) -> None:
    org_id = _org(client, sqlite_container)
    bad = {
        "call_id": "bad",
        "call_type": "user_out",
        "user": ANN,
        "from": ANN_NUMBER,
        "to": "+999",
        "start_time": "2026-01-15T08:00:00Z",
        "duration_seconds": 60,
    }
    response = client.post(f"/v1/orgs/{org_id}/cdrs", json={"records": [bad]})
    [result] = response.json()["results"]
    assert result == {
        "call_id": "bad",
        "status": "rejected",
        "charge": None,
        "error": "invalid_number",
    }


def test_a_telephony_key_may_control_calls_and_a_billing_key_may_not(
    client: Client, sqlite_container: Container
) -> None:
    org_id = _org(client, sqlite_container)
    telephony = _key(client, org_id, "telephony")
    billing = _key(client, org_id, "billing")
    base = f"/v1/orgs/{org_id}"
    allowed = client.post(f"{base}/calls", json=_call("t1"), headers=_as(telephony))
    assert allowed.status_code == 201, allowed.text
    ended = client.post(
        f"{base}/calls/t1/end", json={"duration_seconds": 30}, headers=_as(telephony)
    )
    assert ended.status_code == 200
    refused = client.post(f"{base}/calls", json=_call("t2"), headers=_as(billing))
    assert refused.status_code == 403


def test_a_key_of_another_organization_gets_404(
    client: Client, sqlite_container: Container
) -> None:
    org_id = _org(client, sqlite_container)
    other = client.post(
        "/v1/orgs",
        json={"name": "Fabrikam", "country": "US", "currency": "USD", "billing": "prepaid"},
    ).json()["id"]
    stranger = _key(client, other, "telephony")
    response = client.post(f"/v1/orgs/{org_id}/calls", json=_call("x1"), headers=_as(stranger))
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("calls", {**_call("p1"), "colour": "red"}),
        ("calls/p0/end", {"duration_seconds": -1}),
        ("calls/p0/usage", {"used_seconds": -5}),
    ],
)
def test_bad_payloads_are_400(
    client: Client, sqlite_container: Container, path: str, payload: dict[str, Any]
) -> None:
    org_id = _org(client, sqlite_container)
    client.post(f"/v1/orgs/{org_id}/calls", json=_call("p0"))
    response = client.post(f"/v1/orgs/{org_id}/{path}", json=payload)
    assert response.status_code == 400, response.text
    assert {"code", "message"} <= set(response.json()["error"])
    client.post(f"/v1/orgs/{org_id}/calls/p0/end", json={"duration_seconds": 0})


def test_an_invalid_number_is_a_deny_with_reason_invalid_number(
    client: Client, sqlite_container: Container
) -> None:
    org_id = _org(client, sqlite_container)
    response = client.post(f"/v1/orgs/{org_id}/calls", json=_call("inv", "+999"))
    assert response.status_code == 201, response.text
    assert (response.json()["decision"], response.json()["reason"]) == ("deny", "invalid_number")
