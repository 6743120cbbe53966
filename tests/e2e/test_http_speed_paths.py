"""The call-control fast path answers exactly as the full Litestar route does (API.md, "Usage").

Every request here is sent twice: to an application with the fast path and to one without it,
both on the same service, and the two answers are compared (status, headers, body).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from litestar.routes.http import HTTPRoute
from litestar.testing import TestClient

from commcredits.api.app import create_app
from commcredits.app import Container
from commcredits.services.credits import NewOrder
from tests.conftest import OPERATOR_KEY

Client = TestClient  # type: ignore[type-arg]

pytestmark = pytest.mark.usefixtures("sqlite_ledger_checked")

ANN = "ann@contoso.com"
ANN_NUMBER = "+12125550100"
UK = "+442071234567"
START = "2026-11-20T10:00:00Z"


@pytest.fixture
def full_routes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of the requests that reached a Litestar route (not answered by the fast path)."""
    reached: list[str] = []
    handle = HTTPRoute.handle

    async def counting(self: HTTPRoute, scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await handle(self, scope, receive, send)

    monkeypatch.setattr(HTTPRoute, "handle", counting)
    return reached


@pytest.fixture
def fast(sqlite_container: Container, full_routes: list[str]) -> Iterator[Client]:
    with TestClient(create_app(sqlite_container)) as client:
        client.headers["Authorization"] = f"Bearer {OPERATOR_KEY}"
        yield client


@pytest.fixture
def full(sqlite_container: Container, full_routes: list[str]) -> Iterator[Client]:
    with TestClient(create_app(sqlite_container, call_control_fast_path_on=False)) as client:
        client.headers["Authorization"] = f"Bearer {OPERATOR_KEY}"
        yield client


def _org(client: Client, container: Container, number: str = ANN_NUMBER) -> str:
    container.rating.load(
        "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,"
        "currency,effective_from,effective_to,description\n"
        "outbound,44,,,1.0000,0.1000,60,60,USD,,,test\n",
        "test",
    )
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
    number_of_ann = {"number": number, "kind": "user", "assigned_to": ANN}
    assert client.post(f"/v1/orgs/{org_id}/numbers", json=number_of_ann).is_success
    return org_id


def _key(client: Client, org_id: str, role: str) -> tuple[str, str]:
    response = client.post(f"/v1/orgs/{org_id}/keys", json={"name": role, "role": role})
    assert response.status_code == 201, response.text
    return str(response.json()["id"]), str(response.json()["key"])


def _call(call_id: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "call_id": call_id,
        "call_type": "user_out",
        "user": ANN,
        "from": ANN_NUMBER,
        "to": UK,
        "start_time": START,
    }
    return {**body, **overrides}


def _answer(response: Any, call_id: str | None = None) -> tuple[int, list[Any], Any]:
    """Status, headers and body, with the call id (the one thing that differs) masked."""
    text = response.text.replace(call_id, "<id>") if call_id else response.text
    body = json.loads(text) if text else None
    # Every header (content type and length included): the ids compared are equally long.
    return response.status_code, sorted(response.headers.items()), body


def _both(
    fast: Client, full: Client, send: Callable[[Client, str], Any], prefix: str = "c"
) -> tuple[Any, Any]:
    """The same request on both applications, each with a call id of its own."""
    one, other = f"{prefix}-fast", f"{prefix}-full"
    return _answer(send(fast, one), one), _answer(send(full, other), other)


def test_a_call_decided_extended_and_ended_answers_alike_on_both_paths(
    fast: Client, full: Client, sqlite_container: Container, full_routes: list[str]
) -> None:
    org = _org(fast, sqlite_container)
    base = f"/v1/orgs/{org}"
    fast.post(f"{base}/calls", json=_call("warm-up"))  # the operator key is verified once
    full_routes.clear()

    steps: list[Callable[[Client, str], Any]] = [
        lambda c, i: c.post(f"{base}/calls", json=_call(i)),
        lambda c, i: c.post(f"{base}/calls", json=_call(i)),  # a repeat answers alike
        lambda c, i: c.post(f"{base}/calls/{i}/usage", json={"used_seconds": 200}),
        lambda c, i: c.post(f"{base}/calls/{i}/end", json={"duration_seconds": 125}),
        lambda c, i: c.post(f"{base}/calls/{i}/end", json={"duration_seconds": 125}),
        lambda c, i: c.post(f"{base}/calls/{i}/usage", json={"used_seconds": 300}),
    ]
    for step in steps:
        on_fast, on_full = _both(fast, full, step)
        assert on_fast == on_full
        assert on_fast[0] in (200, 201)
    ended = fast.get(f"{base}/calls/c-fast").json()
    assert ended["charge"] == "3.10"  # 3 minutes at 1.00 plus the 0.10 connection fee

    # Only the full application's requests (and the GET) reached a Litestar route.
    assert len(full_routes) == len(steps) + 1


def test_refusals_by_a_rule_have_the_same_status_and_body_on_both_paths(
    fast: Client, full: Client, sqlite_container: Container
) -> None:
    org = _org(fast, sqlite_container)
    base = f"/v1/orgs/{org}"
    cases: list[Callable[[Client, str], Any]] = [
        lambda c, i: c.post(f"{base}/calls/{i}/end", json={"duration_seconds": 5}),  # no call
        lambda c, i: c.post(f"{base}/calls/{i}/usage", json={"used_seconds": 5}),
        lambda c, i: c.post(f"{base}/calls", json=_call(i, to="+99912345")),  # invalid number
        lambda c, i: c.post(f"{base}/calls", json=_call(i, user="nobody@contoso.com")),
        lambda c, i: c.post(f"{base}/calls", json=_call(i, call_type="user_sideways")),
        lambda c, i: c.post("/v1/orgs/org_missing/calls", json=_call(i)),
    ]
    for case in cases:
        on_fast, on_full = _both(fast, full, case)
        assert on_fast == on_full
        assert on_fast[0] != 500


@pytest.mark.parametrize(
    ("body", "headers", "code"),
    [
        (b'{"used_seconds": "5"}', {"Content-Type": "application/json"}, "invalid_type"),
        (b'{"used_seconds": -1}', {"Content-Type": "application/json"}, "invalid_value"),
        (b'{"used_seconds": 5, "x": 1}', {"Content-Type": "application/json"}, "unknown_field"),
        (b"{}", {"Content-Type": "application/json"}, "missing_field"),
        (b'{"used_seconds": 5', {"Content-Type": "application/json"}, None),
        (b"", {"Content-Type": "application/json"}, None),
        (b'{"used_seconds": 5}', {"Content-Type": "text/plain"}, None),
        (b'{"used_seconds": 5}', {"Content-Type": "application/json; charset=utf-8"}, None),
    ],
)
def test_a_body_the_fast_path_does_not_take_gets_the_full_routes_answer(
    fast: Client,
    full: Client,
    sqlite_container: Container,
    body: bytes,
    headers: dict[str, str],
    code: str | None,
) -> None:
    org = _org(fast, sqlite_container)
    base = f"/v1/orgs/{org}"
    for client in (fast, full):
        assert client.post(f"{base}/calls", json=_call("c1")).status_code == 201

    def send(client: Client, _: str) -> Any:
        return client.post(f"{base}/calls/c1/usage", content=body, headers=headers)

    on_fast, on_full = _both(fast, full, send)
    assert on_fast == on_full
    if code is not None:
        assert on_fast[0] == 400
        assert on_fast[2]["error"]["code"] == code


def test_an_oversized_body_is_refused_alike(
    tmp_path: Any, mail: Any, sqlite_template: Any, full_routes: list[str]
) -> None:
    from commcredits.app import build
    from tests.conftest import _sqlite_url, make_settings

    container = build(
        make_settings(_sqlite_url(sqlite_template, tmp_path), tmp_path, max_body_bytes=1024),
        transport=mail,
    )
    try:
        apps = [create_app(container), create_app(container, call_control_fast_path_on=False)]
        answers = []
        for app in apps:
            with TestClient(app) as client:
                client.headers["Authorization"] = f"Bearer {OPERATOR_KEY}"
                org = _org(client, container) if not answers else answers[0][0]
                client.post(f"/v1/orgs/{org}/calls", json=_call("warm"))
                big = _call("c1", conference_id="x" * 2000)
                response = client.post(f"/v1/orgs/{org}/calls", json=big)
                answers.append((org, _answer(response)))
        assert answers[0][1] == answers[1][1]
        assert answers[0][1][0] == 413
    finally:
        container.close()


def test_keys_are_checked_alike_and_a_revoked_key_stops_at_once(
    fast: Client, full: Client, sqlite_container: Container
) -> None:
    org = _org(fast, sqlite_container)
    other = _org(fast, sqlite_container, "+12125550111")
    base = f"/v1/orgs/{org}"
    telephony_id, telephony = _key(fast, org, "telephony")
    _, reader = _key(fast, org, "reader")
    _, stranger = _key(fast, other, "telephony")

    def as_key(key: str | None, path: str = "/calls") -> Callable[[Client, str], Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {"Authorization": ""}
        target = base + path if path.startswith("/calls") else path

        def send(client: Client, call_id: str) -> Any:
            return client.post(target, json=_call(call_id), headers=headers)

        return send

    for key, status in [
        (telephony, 201),  # verified once (full route), then on the fast path
        (telephony, 201),
        (reader, 403),
        (reader, 403),
        (stranger, 404),  # another organization's key learns nothing about this one
        (stranger, 404),
        (None, 401),
        ("cck_key_nothing.at-all", 401),
    ]:
        on_fast, on_full = _both(fast, full, as_key(key), prefix=f"k{status}")
        assert on_fast == on_full
        assert on_fast[0] == status
    # The platform's edge routes are not an organization key's to use.
    on_fast, on_full = _both(fast, full, as_key(telephony, "/v1/calls"))
    assert on_fast == on_full
    assert on_fast[0] == 403

    assert fast.delete(f"{base}/keys/{telephony_id}").is_success
    on_fast, on_full = _both(fast, full, as_key(telephony), prefix="revoked")
    assert on_fast == on_full
    assert on_fast[0] == 401


def test_the_telephony_edge_answers_alike_on_both_paths(
    fast: Client, full: Client, sqlite_container: Container
) -> None:
    _org(fast, sqlite_container)
    fast.post("/v1/calls", json=_call("warm-up"))
    steps: list[Callable[[Client, str], Any]] = [
        lambda c, i: c.post("/v1/calls", json=_call(i)),
        lambda c, i: c.post(f"/v1/calls/{i}/usage", json={"used_seconds": 200}),
        lambda c, i: c.post(f"/v1/calls/{i}/end", json={"duration_seconds": 61}),
        lambda c, i: c.post("/v1/calls", json=_call(i + "-x", **{"from": "+15555550123"})),
        lambda c, i: c.post("/v1/calls/nothing/end", json={"duration_seconds": 61}),
    ]
    for step in steps:
        on_fast, on_full = _both(fast, full, step, prefix="edge")
        assert on_fast == on_full
    decided = fast.post("/v1/calls", json=_call("edge-last")).json()
    assert decided["decision"] == "allow"
    assert decided["org"]
