"""The HTTP contract's conventions: auth, roles, tenancy, errors, validation, idempotency."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

Client = TestClient  # type: ignore[type-arg]

CONTOSO = {"name": "Contoso", "country": "US", "currency": "USD", "billing": "prepaid"}


def _org(client: Client, **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/orgs", json={**CONTOSO, **overrides})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _key(client: Client, org_id: str, role: str) -> str:
    response = client.post(f"/v1/orgs/{org_id}/keys", json={"name": f"{role} key", "role": role})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def _as(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {"Authorization": ""}


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])
    return dict(body["error"])


def test_an_organization_is_created_and_read_back(client: Client) -> None:
    created = _org(client, overage_enabled=True)
    assert created["id"].startswith("org_")
    assert created["billing"] == "prepaid"
    assert created["overage_enabled"] is True
    assert created["created_at"].endswith("Z")
    fetched = client.get(f"/v1/orgs/{created['id']}").json()
    assert fetched == created


def test_a_request_without_a_key_is_401(client: Client) -> None:
    response = client.get("/v1/orgs", headers=_as(None))
    assert response.status_code == 401
    assert _error(response)["code"] == "unauthenticated"


@pytest.mark.parametrize("token", ["nonsense", "cck_key_123.secret", "cck_", "Basic x"])
def test_a_wrong_key_is_401(client: Client, token: str) -> None:
    response = client.get("/v1/orgs", headers=_as(token))
    assert response.status_code == 401


def test_a_revoked_key_stops_working(client: Client) -> None:
    org = _org(client)
    key = _key(client, org["id"], "admin")
    assert client.get(f"/v1/orgs/{org['id']}", headers=_as(key)).status_code == 200
    key_id = key.removeprefix("cck_").split(".")[0]
    assert client.delete(f"/v1/orgs/{org['id']}/keys/{key_id}").status_code == 204
    assert client.get(f"/v1/orgs/{org['id']}", headers=_as(key)).status_code == 401


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        ("reader", "patch", "", {"name": "Renamed"}),
        ("reader", "post", "/keys", {"name": "k", "role": "admin"}),
        (
            "billing",
            "post",
            "/admins",
            {"email": "a@b.example", "display_name": "A", "roles": ["billing_admin"]},
        ),
        ("telephony", "get", "", None),
        ("admin", "post", "/../../orgs", CONTOSO),
    ],
)
def test_a_key_without_the_role_for_an_action_is_403(
    client: Client, role: str, method: str, path: str, body: Any
) -> None:
    org = _org(client)
    key = _key(client, org["id"], role)
    url = f"/v1/orgs/{org['id']}{path}" if not path.startswith("/..") else "/v1/orgs"
    kwargs: dict[str, Any] = {"headers": _as(key)}
    if body is not None:
        kwargs["json"] = body
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == 403, response.text
    assert _error(response)["code"] == "forbidden"


def test_a_key_of_one_organization_gets_404_for_another(client: Client) -> None:
    mine = _org(client)
    theirs = _org(client, name="Fabrikam")
    key = _key(client, mine["id"], "admin")
    for method, path in [
        ("get", ""),
        ("patch", ""),
        ("get", "/admins"),
        ("get", "/keys"),
        ("post", "/keys"),
    ]:
        kwargs: dict[str, Any] = {"headers": _as(key)}
        if method != "get":
            kwargs["json"] = {"name": "x", "role": "admin"} if path else {"name": "x"}
        response = getattr(client, method)(f"/v1/orgs/{theirs['id']}{path}", **kwargs)
        assert response.status_code == 404, (method, path, response.text)
        assert _error(response)["code"] == "organization_not_found"


def test_an_unknown_organization_is_404_for_the_operator_too(client: Client) -> None:
    response = client.get("/v1/orgs/org_doesnotexist")
    assert response.status_code == 404
    assert _error(response)["code"] == "organization_not_found"


def test_an_admin_key_manages_its_own_organization(client: Client) -> None:
    org = _org(client)
    key = _key(client, org["id"], "admin")
    renamed = client.patch(f"/v1/orgs/{org['id']}", json={"name": "Contoso Ltd"}, headers=_as(key))
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Contoso Ltd"
    admin = client.post(
        f"/v1/orgs/{org['id']}/admins",
        json={"email": "Pat@Contoso.example", "display_name": "Pat", "roles": ["billing_admin"]},
        headers=_as(key),
    )
    assert admin.status_code == 201
    assert admin.json()["email"] == "pat@contoso.example"
    listed = client.get(f"/v1/orgs/{org['id']}/admins", headers=_as(key)).json()
    assert [a["email"] for a in listed] == ["pat@contoso.example"]
    keys = client.get(f"/v1/orgs/{org['id']}/keys", headers=_as(key)).json()
    assert all("key" not in k and "secret_hash" not in k for k in keys)


def test_the_same_admin_twice_is_a_conflict(client: Client) -> None:
    org = _org(client)
    body = {"email": "pat@contoso.example", "display_name": "Pat", "roles": ["global_admin"]}
    assert client.post(f"/v1/orgs/{org['id']}/admins", json=body).status_code == 201
    again = client.post(f"/v1/orgs/{org['id']}/admins", json=body)
    assert again.status_code == 409
    assert _error(again)["code"] == "admin_exists"


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({**CONTOSO, "colour": "blue"}, 400, "unknown_field", "colour"),
        ({**CONTOSO, "name": 42}, 400, "invalid_type", "name"),
        ({k: v for k, v in CONTOSO.items() if k != "currency"}, 400, "missing_field", "currency"),
        ({**CONTOSO, "billing": "monthly"}, 400, "invalid_value", "billing"),
        ({**CONTOSO, "overage_enabled": "yes"}, 400, "invalid_type", "overage_enabled"),
        ({**CONTOSO, "name": ""}, 400, "invalid_value", "name"),
        ({**CONTOSO, "name": "   "}, 422, "invalid_name", "name"),
        ({**CONTOSO, "country": "USA"}, 422, "invalid_country", "country"),
        ({**CONTOSO, "country": "us"}, 422, "invalid_country", "country"),
        ({**CONTOSO, "currency": "XYZ"}, 422, "invalid_currency", "currency"),
    ],
)
def test_bad_payloads_get_a_clear_4xx_naming_the_field(
    client: Client, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    response = client.post("/v1/orgs", json=body)
    assert response.status_code == status, response.text
    error = _error(response)
    assert error["code"] == code
    assert error.get("field") == field


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b"null", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_400(client: Client, raw: bytes) -> None:
    response = client.post("/v1/orgs", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    _error(response)


def test_an_oversized_body_is_refused_with_413(client: Client) -> None:
    huge = b'{"name": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    response = client.post("/v1/orgs", content=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert _error(response)["code"] == "payload_too_large"


def test_unknown_paths_and_methods_answer_in_the_error_shape(client: Client) -> None:
    assert _error(client.get("/v1/nowhere"))["code"] == "not_found"
    response = client.put("/v1/orgs")
    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"


def test_a_repeated_post_with_an_idempotency_key_replays_the_first_response(
    client: Client,
) -> None:
    headers = {"Idempotency-Key": "create-contoso-1"}
    first = client.post("/v1/orgs", json=CONTOSO, headers=headers)
    second = client.post("/v1/orgs", json=CONTOSO, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(client.get("/v1/orgs").json()) == 1


def test_an_idempotency_key_reused_with_another_body_is_409(client: Client) -> None:
    headers = {"Idempotency-Key": "create-1"}
    assert client.post("/v1/orgs", json=CONTOSO, headers=headers).status_code == 201
    reused = client.post("/v1/orgs", json={**CONTOSO, "name": "Other"}, headers=headers)
    assert reused.status_code == 409
    assert _error(reused)["code"] == "idempotency_key_reused"


def test_an_overlong_idempotency_key_is_400(client: Client) -> None:
    response = client.post("/v1/orgs", json=CONTOSO, headers={"Idempotency-Key": "k" * 300})
    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_idempotency_key"


def test_the_clock_moves_forward_only_and_only_for_the_operator(client: Client) -> None:
    now = client.get("/v1/system/clock").json()
    assert now["mode"] == "simulated"
    moved = client.post("/v1/system/clock", json={"now": "2026-02-01T00:00:00Z"})
    assert moved.status_code == 200
    assert moved.json()["now"] == "2026-02-01T00:00:00Z"
    back = client.post("/v1/system/clock", json={"now": "2026-01-20T00:00:00Z"})
    assert back.status_code == 422
    assert _error(back)["code"] == "clock_cannot_go_backwards"
    naive = client.post("/v1/system/clock", json={"now": "2026-03-01T00:00:00"})
    assert naive.status_code == 400
    org = _org(client)
    admin = _key(client, org["id"], "admin")
    assert client.post("/v1/system/jobs/run", headers=_as(admin)).status_code == 403
    assert client.post("/v1/system/jobs/run").json() == {"ran": []}


def test_the_openapi_document_describes_the_api(client: Client) -> None:
    response = client.get("/openapi.json", headers=_as(None))
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert "/v1/orgs" in document["paths"]
    assert "/v1/orgs/{org}/keys" in document["paths"]
    assert "/v1/system/clock" in document["paths"]


def test_health_needs_no_key(client: Client) -> None:
    assert client.get("/healthz", headers=_as(None)).json() == {"status": "ok"}
