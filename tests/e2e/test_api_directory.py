"""The directory contract over HTTP (API.md "Users, subscriptions, licenses, numbers, policies";
RULES.md R-10..R-15 and R-37): paths, bodies, status codes, error codes, roles and tenancy."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

Client = TestClient  # type: ignore[type-arg]

CONTOSO = {"name": "Contoso", "country": "US", "currency": "USD", "billing": "prepaid"}
CREDITS = "MCOPSTNPP"


def _org(client: Client, **overrides: Any) -> str:
    response = client.post("/v1/orgs", json={**CONTOSO, **overrides})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _key(client: Client, org_id: str, role: str) -> tuple[str, str]:
    """A new key of ``role``: (its id, the secret key)."""
    response = client.post(f"/v1/orgs/{org_id}/keys", json={"name": f"{role} key", "role": role})
    assert response.status_code == 201, response.text
    return str(response.json()["id"]), str(response.json()["key"])


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"])
    return dict(body["error"])


def _user(client: Client, org_id: str, upn: str, location: str | None = "US") -> dict[str, Any]:
    body = {"upn": upn, "display_name": upn.split("@")[0].title(), "usage_location": location}
    response = client.post(f"/v1/orgs/{org_id}/users", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _seats(client: Client, org_id: str, **quantities: int) -> None:
    for sku, quantity in quantities.items():
        response = client.post(
            f"/v1/orgs/{org_id}/subscriptions", json={"sku": sku, "quantity": quantity}
        )
        assert response.status_code == 201, response.text


def _fund(client: Client, org_id: str) -> None:
    method = client.post(
        f"/v1/orgs/{org_id}/payment-methods",
        json={"type": "enterprise_agreement", "agreement_number": "EA-1"},
    )
    assert method.status_code == 201, method.text
    order = client.post(
        f"/v1/orgs/{org_id}/credits/orders",
        json={"amount": "100.00", "payment_method": method.json()["id"]},
    )
    assert order.status_code == 201, order.text
    assert order.json()["status"] == "paid"


def _licenses(client: Client, org_id: str, user: str, add: list[str], remove: Any = ()) -> Any:
    return client.post(
        f"/v1/orgs/{org_id}/users/{user}/licenses", json={"add": add, "remove": list(remove)}
    )


def _assign(client: Client, org_id: str, user: str, *skus: str) -> None:
    response = _licenses(client, org_id, user, list(skus))
    assert response.status_code == 200, response.text


# -- users ---------------------------------------------------------------------------------------


def test_a_user_is_created_read_changed_and_deleted_by_id_and_by_upn(client: Client) -> None:
    org = _org(client)
    response = client.post(
        f"/v1/orgs/{org}/users",
        json={"upn": "Pat@Contoso.com", "display_name": "Pat", "usage_location": "US"},
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert {"id", "upn", "licenses"} <= set(created)
    assert created["id"].startswith("usr_")
    assert created["upn"] == "pat@contoso.com"
    assert created["licenses"] == []
    assert created["usage_location"] == "US"
    assert created["created_at"].endswith("Z")

    base = f"/v1/orgs/{org}/users"
    for ref in (created["id"], "pat@contoso.com", "PAT@contoso.com"):
        fetched = client.get(f"{base}/{ref}")
        assert fetched.status_code == 200, ref
        assert fetched.json() == created
    renamed = client.patch(f"{base}/pat@contoso.com", json={"display_name": "Pat Doe"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["display_name"] == "Pat Doe"
    moved = client.patch(f"{base}/{created['id']}", json={"usage_location": "GB"})
    assert moved.json()["usage_location"] == "GB"
    assert moved.json()["display_name"] == "Pat Doe"

    again = client.post(base, json={"upn": "PAT@contoso.com", "display_name": "Twin"})
    assert again.status_code == 409
    assert _error(again)["code"] == "user_exists"

    assert client.delete(f"{base}/pat@contoso.com").status_code == 204
    for ref in (created["id"], "pat@contoso.com"):
        gone = client.get(f"{base}/{ref}")
        assert gone.status_code == 404
        assert _error(gone)["code"] == "user_not_found"
    assert client.delete(f"{base}/{created['id']}").status_code == 404
    assert client.patch(f"{base}/{created['id']}", json={"display_name": "X"}).status_code == 404
    bob = _user(client, org, "bob@contoso.com")
    assert client.delete(f"{base}/{bob['id']}").status_code == 204
    assert client.get(f"{base}/bob@contoso.com").status_code == 404
    assert client.get(base).json() == []


def test_users_are_listed_by_upn_and_filtered_by_sku(client: Client) -> None:
    org = _org(client)
    _seats(client, org, MCOMEETADV=2)
    for upn in ("c@contoso.com", "a@contoso.com", "b@contoso.com"):
        _user(client, org, upn)
    _assign(client, org, "c@contoso.com", "MCOMEETADV")
    _assign(client, org, "a@contoso.com", "MCOMEETADV")

    everyone = client.get(f"/v1/orgs/{org}/users")
    assert everyone.status_code == 200
    assert [u["upn"] for u in everyone.json()] == [
        "a@contoso.com",
        "b@contoso.com",
        "c@contoso.com",
    ]
    holders = client.get(f"/v1/orgs/{org}/users", params={"sku": "MCOMEETADV"}).json()
    assert [(u["upn"], u["licenses"]) for u in holders] == [
        ("a@contoso.com", ["MCOMEETADV"]),
        ("c@contoso.com", ["MCOMEETADV"]),
    ]
    assert client.get(f"/v1/orgs/{org}/users", params={"sku": "MCOEV"}).json() == []
    unknown = client.get(f"/v1/orgs/{org}/users", params={"sku": "NOPE"})
    assert unknown.status_code == 422
    assert _error(unknown)["code"] == "unknown_sku"


# -- licenses ------------------------------------------------------------------------------------


def test_a_license_change_answers_the_new_licenses_or_422_with_each_contract_code(
    client: Client,
) -> None:
    org = _org(client)
    _seats(client, org, MCOEV=3, MCOPSTN1=3, MCOPSTN5=1)
    _fund(client, org)
    _user(client, org, "pat@contoso.com")
    _user(client, org, "nowhere@contoso.com", location=None)
    _user(client, org, "bare@contoso.com")

    done = _licenses(client, org, "pat@contoso.com", ["MCOPSTN1", "MCOEV"])
    assert done.status_code == 200, done.text
    assert done.json() == {"licenses": ["MCOEV", "MCOPSTN1"]}
    done = _licenses(client, org, "pat@contoso.com", [CREDITS])
    assert done.json() == {"licenses": ["MCOEV", "MCOPSTN1", CREDITS]}

    refusals = [
        ("pat@contoso.com", [], ["MCOEV"], "license_required_by_other"),
        ("bare@contoso.com", ["MCOPSTN1"], [], "license_prerequisite_missing"),
        ("bare@contoso.com", [CREDITS], [], "license_prerequisite_missing"),
        ("nowhere@contoso.com", ["MCOEV", "MCOPSTN1"], [], "usage_location_required"),
        ("pat@contoso.com", ["MCOPSTN5"], [], "plan_not_available_in_location"),
        ("nowhere@contoso.com", ["MCOMEETADV"], [], "no_seats_available"),
        ("pat@contoso.com", ["NOT_A_SKU"], [], "unknown_sku"),
    ]
    for user, add, remove, code in refusals:
        response = _licenses(client, org, user, add, remove)
        assert response.status_code == 422, (code, response.text)
        assert _error(response)["code"] == code
    # Nothing was applied by any refusal.
    assert client.get(f"/v1/orgs/{org}/users/pat@contoso.com").json()["licenses"] == [
        "MCOEV",
        "MCOPSTN1",
        CREDITS,
    ]
    assert client.get(f"/v1/orgs/{org}/users/nowhere@contoso.com").json()["licenses"] == []

    both = _licenses(client, org, "pat@contoso.com", ["MCOEV"], ["MCOEV"])
    assert both.status_code == 400
    missing = _licenses(client, org, "ghost@contoso.com", ["MCOEV"])
    assert missing.status_code == 404
    assert _error(missing)["code"] == "user_not_found"
    # the dependants removed in the same request.
    cleared = _licenses(client, org, "pat@contoso.com", [], ["MCOEV", "MCOPSTN1", CREDITS])
    assert cleared.json() == {"licenses": []}


def test_seats_run_out_and_come_back_over_http_R10(db_client: Client) -> None:
    client = db_client
    org = _org(client)
    _seats(client, org, MCOEV=1)
    _user(client, org, "a@contoso.com")
    _user(client, org, "b@contoso.com")
    _assign(client, org, "a@contoso.com", "MCOEV")
    full = _licenses(client, org, "b@contoso.com", ["MCOEV"])
    assert full.status_code == 422
    assert _error(full)["code"] == "no_seats_available"
    assert client.delete(f"/v1/orgs/{org}/users/a@contoso.com").status_code == 204
    _assign(client, org, "b@contoso.com", "MCOEV")
    subscriptions = client.get(f"/v1/orgs/{org}/subscriptions").json()
    assert subscriptions == [{"sku": "MCOEV", "quantity": 1, "assigned": 1, "available": 0}]


def test_bulk_licenses_answer_each_user_in_order_all_or_nothing_R14(db_client: Client) -> None:
    client = db_client
    org = _org(client)
    _seats(client, org, SPE_E5=2, MCOEV=5)
    _fund(client, org)
    for upn in ("a@contoso.com", "b@contoso.com", "c@contoso.com", "bare@contoso.com"):
        _user(client, org, upn)
    users = ["a@contoso.com", "ghost@contoso.com", "b@contoso.com", "c@contoso.com"]

    response = client.post(
        f"/v1/orgs/{org}/licenses:bulk", json={"users": users, "add": ["SPE_E5", CREDITS]}
    )

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["user"] for r in results] == users
    assert results[0] == {"user": "a@contoso.com", "ok": True, "licenses": [CREDITS, "SPE_E5"]}
    assert results[2]["ok"] is True
    assert {k: v for k, v in results[1].items() if k != "error"} == {
        "user": "ghost@contoso.com",
        "ok": False,
    }
    assert results[1]["error"]["code"] == "user_not_found"
    # Out of E5 seats at the third user: neither license reaches them.
    assert results[3]["ok"] is False
    assert results[3]["error"]["code"] == "no_seats_available"
    assert "licenses" not in results[3]
    assert client.get(f"/v1/orgs/{org}/users/c@contoso.com").json()["licenses"] == []

    prerequisite = client.post(
        f"/v1/orgs/{org}/licenses:bulk",
        json={"users": ["bare@contoso.com", "a@contoso.com"], "add": [CREDITS]},
    ).json()["results"]
    assert [(r["ok"], r.get("error", {}).get("code")) for r in prerequisite] == [
        (False, "license_prerequisite_missing"),
        (True, None),
    ]
    removal = client.post(
        f"/v1/orgs/{org}/licenses:bulk",
        json={"users": ["a@contoso.com", "b@contoso.com"], "remove": ["SPE_E5"]},
    ).json()["results"]
    assert [r["error"]["code"] for r in removal] == ["license_required_by_other"] * 2
    assert client.get(f"/v1/orgs/{org}/users", params={"sku": "SPE_E5"}).json()[0]["upn"] == (
        "a@contoso.com"
    )


# -- subscriptions -------------------------------------------------------------------------------


def test_subscriptions_show_seats_bought_assigned_and_available_and_credits_as_unlimited(
    client: Client,
) -> None:
    org = _org(client)
    base = f"/v1/orgs/{org}/subscriptions"
    created = client.post(base, json={"sku": "SPE_E5", "quantity": 2})
    assert created.status_code == 201, created.text
    assert created.json() == {"sku": "SPE_E5", "quantity": 2, "assigned": 0, "available": 2}
    _user(client, org, "pat@contoso.com")
    _assign(client, org, "pat@contoso.com", "SPE_E5")
    assert client.get(base).json() == [
        {"sku": "SPE_E5", "quantity": 2, "assigned": 1, "available": 1}
    ]
    # Before funding, MCOPSTNPP is neither listed nor assignable.
    early = _licenses(client, org, "pat@contoso.com", [CREDITS])
    assert _error(early)["code"] == "no_seats_available"

    _fund(client, org)
    _assign(client, org, "pat@contoso.com", CREDITS)
    raised = client.post(base, json={"sku": "SPE_E5", "quantity": 5})
    assert raised.json() == {"sku": "SPE_E5", "quantity": 5, "assigned": 1, "available": 4}
    assert client.get(base).json() == [
        {"sku": "SPE_E5", "quantity": 5, "assigned": 1, "available": 4},
        {"sku": CREDITS, "quantity": None, "assigned": 1, "available": None},
    ]

    for body, status, code in [
        ({"sku": CREDITS, "quantity": 10}, 409, "subscription_not_needed"),
        ({"sku": "SPE_E5", "quantity": 0}, 409, "seats_in_use"),
        ({"sku": "NOPE", "quantity": 1}, 422, "unknown_sku"),
        ({"sku": "SPE_E5", "quantity": -1}, 400, "invalid_value"),
    ]:
        response = client.post(base, json=body)
        assert response.status_code == status, (body, response.text)
        assert _error(response)["code"] == code


# -- numbers -------------------------------------------------------------------------------------


def test_numbers_are_added_with_their_kind_and_checked(client: Client) -> None:
    org = _org(client)
    _seats(client, org, MCOTEAMS_ESSENTIALS=1)
    _user(client, org, "plan@contoso.com")
    _assign(client, org, "plan@contoso.com", "MCOTEAMS_ESSENTIALS")
    _user(client, org, "bare@contoso.com")
    base = f"/v1/orgs/{org}/numbers"

    added = [
        ("+1 425 555 0100", "user", "plan@contoso.com"),
        ("+14255550101", "user", None),
        ("+14255550102", "service", None),
        ("+18005550100", "service_toll_free", None),
        ("+442071838750", "conference", None),
        ("+448001234567", "conference_toll_free", None),
    ]
    for number, kind, user in added:
        response = client.post(base, json={"number": number, "kind": kind, "assigned_to": user})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["number"] == number.replace(" ", "")
        assert (body["kind"], body["assigned_to"]) == (kind, user)
    listed = client.get(base).json()
    assert [(n["number"], n["country"], n["assigned_to"]) for n in listed] == [
        ("+14255550100", "US", "plan@contoso.com"),
        ("+14255550101", "US", None),
        ("+14255550102", "US", None),
        ("+18005550100", "US", None),
        ("+442071838750", "GB", None),
        ("+448001234567", "GB", None),
    ]

    for body, status, code in [
        ({"number": "4255550199", "kind": "service"}, 422, "invalid_number"),
        ({"number": "+14255550199", "kind": "service_toll_free"}, 422, "not_toll_free"),
        (
            {"number": "+14255550199", "kind": "user", "assigned_to": "bare@contoso.com"},
            422,
            "calling_plan_required",
        ),
        ({"number": "+14255550102", "kind": "service"}, 409, "number_taken"),
        ({"number": "+14255550199", "kind": "fax"}, 400, "invalid_value"),
    ]:
        response = client.post(base, json=body)
        assert response.status_code == status, (body, response.text)
        assert _error(response)["code"] == code
    assert len(client.get(base).json()) == len(added)


# -- policies ------------------------------------------------------------------------------------


def test_a_user_policy_and_spend_limit_are_set_by_patch_over_the_org_default_R37(
    client: Client,
) -> None:
    org = _org(client)
    user = _user(client, org, "pat@contoso.com")
    assert (user["pstn_policy"], user["effective_pstn_policy"]) == (
        None,
        "international_and_domestic",
    )
    assert (user["dialout_policy"], user["effective_dialout_policy"]) == (None, "any")
    assert user["spend_limit"] is None

    org_change = client.patch(f"/v1/orgs/{org}", json={"pstn_policy": "domestic"})
    assert org_change.status_code == 200, org_change.text
    inherited = client.get(f"/v1/orgs/{org}/users/pat@contoso.com").json()
    assert (inherited["pstn_policy"], inherited["effective_pstn_policy"]) == (None, "domestic")

    url = f"/v1/orgs/{org}/users/pat@contoso.com"
    changed = client.patch(
        url, json={"pstn_policy": "none", "dialout_policy": "zone_a", "spend_limit": "25.50"}
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["pstn_policy"], body["effective_pstn_policy"]) == ("none", "none")
    assert (body["dialout_policy"], body["effective_dialout_policy"]) == ("zone_a", "zone_a")
    assert body["spend_limit"] == "25.50"
    assert client.patch(url, json={"spend_limit": "40"}).json()["spend_limit"] == "40.00"

    too_precise = client.patch(url, json={"spend_limit": "12.345"})
    assert too_precise.status_code == 422
    assert _error(too_precise) == {
        **_error(too_precise),
        "code": "too_many_decimals",
        "field": "spend_limit",
    }
    negative = client.patch(url, json={"spend_limit": "-1.00"})
    assert negative.status_code == 422
    assert _error(negative)["code"] == "invalid_amount"

    reset = client.patch(url, json={"pstn_policy": None, "spend_limit": None}).json()
    assert (reset["pstn_policy"], reset["effective_pstn_policy"]) == (None, "domestic")
    assert reset["dialout_policy"] == "zone_a"
    assert reset["spend_limit"] is None


# -- malformed requests --------------------------------------------------------------------------


MALFORMED: list[tuple[str, str, dict[str, Any], str, str]] = [
    (
        "post",
        "/users",
        {"upn": "x@contoso.com", "display_name": "X", "role": "boss"},
        "unknown_field",
        "role",
    ),
    ("post", "/users", {"upn": 5, "display_name": "X"}, "invalid_type", "upn"),
    ("post", "/users", {"display_name": "X"}, "missing_field", "upn"),
    (
        "post",
        "/users",
        {"upn": "x@contoso.com", "display_name": ""},
        "invalid_value",
        "display_name",
    ),
    (
        "patch",
        "/users/pat@contoso.com",
        {"pstn_policy": "sometimes"},
        "invalid_value",
        "pstn_policy",
    ),
    (
        "patch",
        "/users/pat@contoso.com",
        {"dialout_policy": "moon"},
        "invalid_value",
        "dialout_policy",
    ),
    ("patch", "/users/pat@contoso.com", {"spend_limit": 12.5}, "invalid_type", "spend_limit"),
    ("patch", "/users/pat@contoso.com", {"licenses": ["MCOEV"]}, "unknown_field", "licenses"),
    ("post", "/users/pat@contoso.com/licenses", {"add": "MCOEV"}, "invalid_type", "add"),
    ("post", "/users/pat@contoso.com/licenses", {"grant": ["MCOEV"]}, "unknown_field", "grant"),
    ("post", "/licenses:bulk", {"add": ["MCOEV"]}, "missing_field", "users"),
    ("post", "/licenses:bulk", {"users": "pat@contoso.com"}, "invalid_type", "users"),
    ("post", "/subscriptions", {"sku": "MCOEV", "quantity": "five"}, "invalid_type", "quantity"),
    ("post", "/subscriptions", {"sku": "MCOEV", "quantity": True}, "invalid_type", "quantity"),
    ("post", "/numbers", {"number": "+14255550100", "kind": "fax"}, "invalid_value", "kind"),
    ("post", "/numbers", {"number": 14255550100, "kind": "service"}, "invalid_type", "number"),
]


def test_a_malformed_directory_request_is_400_naming_the_field(client: Client) -> None:
    org = _org(client)
    _user(client, org, "pat@contoso.com")
    before = client.get(f"/v1/orgs/{org}/audit").json()
    for method, path, body, code, field in MALFORMED:
        response = getattr(client, method)(f"/v1/orgs/{org}{path}", json=body)
        assert response.status_code == 400, (path, body, response.text)
        error = _error(response)
        assert (error["code"], error.get("field")) == (code, field), (path, body)
    assert client.get(f"/v1/orgs/{org}/audit").json() == before


def test_malformed_json_is_400_and_a_rule_refusal_is_422(client: Client) -> None:
    org = _org(client)
    for raw in (b"{not json", b'{"upn": "x@contoso.com",', b"[]"):
        broken = client.post(
            f"/v1/orgs/{org}/users", content=raw, headers={"Content-Type": "application/json"}
        )
        assert broken.status_code == 400, raw
        _error(broken)
    for body, code, field in [
        ({"upn": "not-a-upn", "display_name": "X"}, "invalid_upn", "upn"),
        (
            {"upn": "x@contoso.com", "display_name": "X", "usage_location": "XX"},
            "invalid_country",
            "usage_location",
        ),
        ({"upn": "x@contoso.com", "display_name": "   "}, "invalid_name", "display_name"),
    ]:
        response = client.post(f"/v1/orgs/{org}/users", json=body)
        assert response.status_code == 422, response.text
        assert (_error(response)["code"], _error(response).get("field")) == (code, field)


@pytest.mark.parametrize("quantity", ["5", 5.0])
def test_a_seat_quantity_that_is_not_a_json_integer_is_400_invalid_type(
    client: Client, quantity: Any
) -> None:
    org = _org(client)
    response = client.post(
        f"/v1/orgs/{org}/subscriptions", json={"sku": "MCOEV", "quantity": quantity}
    )
    assert response.status_code == 400, response.text
    assert (_error(response)["code"], _error(response).get("field")) == ("invalid_type", "quantity")


# -- roles and tenancy ---------------------------------------------------------------------------


FORBIDDEN: list[tuple[str, str, str, Any]] = [
    ("reader", "post", "/users", {"upn": "new@contoso.com", "display_name": "New"}),
    ("reader", "patch", "/users/pat@contoso.com", {"pstn_policy": "none"}),
    ("reader", "delete", "/users/pat@contoso.com", None),
    ("reader", "post", "/users/pat@contoso.com/licenses", {"add": ["MCOEV"]}),
    ("reader", "post", "/licenses:bulk", {"users": ["pat@contoso.com"], "add": ["MCOEV"]}),
    ("reader", "post", "/subscriptions", {"sku": "MCOEV", "quantity": 1}),
    ("reader", "post", "/numbers", {"number": "+14255550100", "kind": "service"}),
    ("billing", "post", "/users/pat@contoso.com/licenses", {"add": ["MCOEV"]}),
    ("billing", "post", "/licenses:bulk", {"users": ["pat@contoso.com"], "add": ["MCOEV"]}),
    ("billing", "get", "/users", None),
    ("billing", "post", "/users", {"upn": "new@contoso.com", "display_name": "New"}),
    ("telephony", "get", "/users", None),
    ("telephony", "get", "/users/pat@contoso.com", None),
    ("telephony", "post", "/users/pat@contoso.com/licenses", {"add": ["MCOEV"]}),
    ("telephony", "post", "/numbers", {"number": "+14255550100", "kind": "service"}),
]


def test_a_key_without_the_directory_role_is_403_and_changes_nothing(client: Client) -> None:
    org = _org(client)
    _seats(client, org, MCOEV=1)
    _user(client, org, "pat@contoso.com")
    keys = {role: _key(client, org, role)[1] for role in ("reader", "billing", "telephony")}
    before = client.get(f"/v1/orgs/{org}/audit").json()
    for role, method, path, body in FORBIDDEN:
        kwargs: dict[str, Any] = {"headers": _as(keys[role])}
        if body is not None:
            kwargs["json"] = body
        response = getattr(client, method)(f"/v1/orgs/{org}{path}", **kwargs)
        assert response.status_code == 403, (role, method, path, response.text)
        assert _error(response)["code"] == "forbidden"
    assert client.get(f"/v1/orgs/{org}/audit").json() == before
    assert client.get(f"/v1/orgs/{org}/users/pat@contoso.com").json()["licenses"] == []
    assert client.get(f"/v1/orgs/{org}/numbers").json() == []


def test_a_reader_key_reads_the_directory_and_an_admin_key_changes_it(client: Client) -> None:
    org = _org(client)
    _, reader = _key(client, org, "reader")
    _, admin = _key(client, org, "admin")
    created = client.post(
        f"/v1/orgs/{org}/users",
        json={"upn": "pat@contoso.com", "display_name": "Pat", "usage_location": "US"},
        headers=_as(admin),
    )
    assert created.status_code == 201
    for path in ("/users", "/users/pat@contoso.com", "/subscriptions", "/numbers", "/audit"):
        assert client.get(f"/v1/orgs/{org}{path}", headers=_as(reader)).status_code == 200, path


DIRECTORY_ENDPOINTS: list[tuple[str, str, Any]] = [
    ("post", "/users", {"upn": "spy@contoso.com", "display_name": "Spy"}),
    ("get", "/users", None),
    ("get", "/users?sku=MCOEV", None),
    ("get", "/users/{user}", None),
    ("get", "/users/pat@contoso.com", None),
    ("patch", "/users/{user}", {"display_name": "Hijacked"}),
    ("delete", "/users/pat@contoso.com", None),
    ("post", "/users/{user}/licenses", {"add": ["MCOEV"]}),
    ("post", "/licenses:bulk", {"users": ["pat@contoso.com"], "add": ["MCOEV"]}),
    ("post", "/subscriptions", {"sku": "MCOEV", "quantity": 99}),
    ("get", "/subscriptions", None),
    ("post", "/numbers", {"number": "+14255550199", "kind": "service"}),
    ("get", "/numbers", None),
    ("patch", "/numbers/+14255550100", {"assigned_to": None}),
    ("delete", "/numbers/+14255550100", None),
    ("get", "/audit", None),
]


def test_another_organizations_key_gets_404_on_every_directory_endpoint(client: Client) -> None:
    theirs = _org(client, name="Fabrikam")
    _seats(client, theirs, MCOEV=1)
    pat = _user(client, theirs, "pat@contoso.com")
    number = client.post(
        f"/v1/orgs/{theirs}/numbers", json={"number": "+14255550100", "kind": "service"}
    )
    assert number.status_code == 201
    before = client.get(f"/v1/orgs/{theirs}/audit").json()
    mine = _org(client)
    _, key = _key(client, mine, "admin")

    for method, path, body in DIRECTORY_ENDPOINTS:
        kwargs: dict[str, Any] = {"headers": _as(key)}
        if body is not None:
            kwargs["json"] = body
        url = f"/v1/orgs/{theirs}{path.replace('{user}', pat['id'])}"
        response = getattr(client, method)(url, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
        assert _error(response)["code"] == "organization_not_found"
    assert client.get(f"/v1/orgs/{theirs}/audit").json() == before
    assert client.get(f"/v1/orgs/{theirs}/users/{pat['id']}").json() == pat


def test_a_user_and_a_number_of_another_organization_are_not_found_even_for_the_operator(
    client: Client,
) -> None:
    mine = _org(client)
    theirs = _org(client, name="Fabrikam")
    pat = _user(client, theirs, "pat@contoso.com")
    client.post(f"/v1/orgs/{theirs}/numbers", json={"number": "+14255550100", "kind": "service"})
    for ref in (pat["id"], pat["upn"]):
        response = client.get(f"/v1/orgs/{mine}/users/{ref}")
        assert response.status_code == 404
        assert _error(response)["code"] == "user_not_found"
    taken = client.post(
        f"/v1/orgs/{mine}/numbers", json={"number": "+14255550100", "kind": "service"}
    )
    assert taken.status_code == 409
    assert _error(taken)["code"] == "number_taken"
    assert client.get(f"/v1/orgs/{mine}/numbers").json() == []
    assert client.delete(f"/v1/orgs/{mine}/numbers/+14255550100").status_code == 404


# -- audit ---------------------------------------------------------------------------------------


def test_the_audit_endpoint_lists_changes_newest_first_with_the_key_id_as_actor(
    client: Client,
) -> None:
    org = _org(client)
    admin_id, admin = _key(client, org, "admin")
    other_id, other = _key(client, org, "admin")
    client.post(
        f"/v1/orgs/{org}/subscriptions", json={"sku": "MCOEV", "quantity": 1}, headers=_as(admin)
    )
    client.post(
        f"/v1/orgs/{org}/users",
        json={"upn": "pat@contoso.com", "display_name": "Pat", "usage_location": "US"},
        headers=_as(other),
    )
    assigned = _licenses(client, org, "pat@contoso.com", ["MCOEV"])  # the operator
    assert assigned.status_code == 200
    refused = client.post(
        f"/v1/orgs/{org}/users/pat@contoso.com/licenses",
        json={"add": ["MCOPSTN1"]},
        headers=_as(admin),
    )
    assert refused.status_code == 422
    client.patch(
        f"/v1/orgs/{org}/users/pat@contoso.com", json={"pstn_policy": "none"}, headers=_as(admin)
    )

    response = client.get(f"/v1/orgs/{org}/audit", headers=_as(admin))
    assert response.status_code == 200
    entries = response.json()
    assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
        (admin_id, "user.updated", "pat@contoso.com"),
        ("settings", "licenses.changed", "pat@contoso.com"),
        (other_id, "user.created", "pat@contoso.com"),
        (admin_id, "subscription.set", "MCOEV"),
    ]
    assert all(e["at"].endswith("Z") for e in entries)
    assert entries[0]["details"] == {"pstn_policy": {"from": None, "to": "none"}}
    assert entries[1]["details"] == {"added": ["MCOEV"], "removed": []}
    page = client.get(f"/v1/orgs/{org}/audit", params={"limit": 2}).json()
    assert [e["id"] for e in page] == [e["id"] for e in entries[:2]]
    rest = client.get(f"/v1/orgs/{org}/audit", params={"before": page[-1]["id"]}).json()
    assert [e["id"] for e in rest] == [e["id"] for e in entries[2:]]
