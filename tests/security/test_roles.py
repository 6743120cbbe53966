"""Who may call what: every route's permission comes from the one table (``domain.roles
.PERMISSIONS``), and every key role gets exactly what that table says, on every route.

Routes are enumerated from the application; a new route without an area fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
from litestar.testing import TestClient

from commcredits.api.app import create_app
from commcredits.domain.roles import PERMISSIONS, Area, KeyRole, allows
from tests.conftest import OPERATOR_KEY
from tests.security.routes import Endpoint, endpoints
from tests.security.world import World, bearer, seed, service

Client = TestClient  # type: ignore[type-arg]
MISSING = {
    "user": "usr_00000000000000000000000000",
    "key_id": "key_00000000000000000000000000",
    "number": "+12125559876",
    "method_id": "pm_00000000000000000000000000",
    "order_id": "ord_00000000000000000000000000",
    "invoice_id": "inv_00000000000000000000000000",
    "call_id": "no-such-call",
    "name": "daily-spend",
}
"""Path values naming nothing: an allowed request stops at 404 and changes nothing."""


class Roles:
    def __init__(self, client: Client, world: World, keys: dict[str, str], routes: list[Endpoint]):
        self.client = client
        self.world = world
        self.keys = keys
        self.routes = routes

    def send(self, endpoint: Endpoint, key: str | None) -> tuple[int, str]:
        url = endpoint.url({**MISSING, "org": self.world.org})
        response = self.client.request(
            endpoint.method,
            url,
            headers=bearer(key) if key is not None else {},
            content=json.dumps({}).encode() if endpoint.takes_body else None,
        )
        body = response.json() if "json" in response.headers.get("content-type", "") else None
        code = body["error"]["code"] if isinstance(body, dict) and "error" in body else ""
        return response.status_code, code


@pytest.fixture(scope="module")
def roles(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roles]:
    with service(sqlite_template, tmp_path_factory.mktemp("roles")) as container:
        world = seed(container, "Roles", "+1212555")
        keys = {
            **world.keys,
            "operator": OPERATOR_KEY,
            "platform_telephony": container.keys.create_platform_telephony_key().secret,
        }
        app = create_app(container)
        with TestClient(app) as client:
            yield Roles(client, world, keys, endpoints(app))


def test_every_route_but_the_public_ones_names_an_area_of_the_permission_table(
    roles: Roles,
) -> None:
    areas = set(get_args(Area))
    unguarded = [
        e.label for e in roles.routes if e.area is None and not (e.is_public or e.is_console)
    ]
    unknown = [e.label for e in roles.routes if e.area is not None and e.area not in areas]
    assert unguarded == []
    assert unknown == []
    used = {e.area for e in roles.routes if e.area is not None}
    assert areas - used == set(), "an area of the table that no route uses"
    assert all(set(table) <= areas for table in PERMISSIONS.values())


@pytest.mark.parametrize("role", list(PERMISSIONS))
def test_each_role_gets_exactly_what_the_permission_table_says_on_every_route(
    roles: Roles, role: KeyRole
) -> None:
    reaches_org = role not in ("platform_telephony",)
    wrong = []
    for endpoint in roles.routes:
        if endpoint.area is None or endpoint.access is None:
            continue
        status, code = roles.send(endpoint, roles.keys[role])
        allowed = allows(role, endpoint.area, endpoint.access)
        if allowed and status in (401, 403):
            wrong.append(f"{endpoint.label}: allowed by the table, answered {status} {code}")
        if not allowed:
            refused = status == 403 and code == "forbidden"
            hidden = status == 404 and code == "organization_not_found"
            if not (refused or (hidden and "org" in endpoint.params and not reaches_org)):
                wrong.append(f"{endpoint.label}: refused by the table, answered {status} {code}")
    assert wrong == []


def test_a_reader_key_may_use_every_read_and_no_write(roles: Roles) -> None:
    """The contract's plainest promise (API.md: ``reader`` (GET only)), checked directly."""
    for endpoint in roles.routes:
        if endpoint.area is None or "org" not in endpoint.params:
            continue
        status, _ = roles.send(endpoint, roles.keys["reader"])
        if endpoint.access == "read":
            assert status != 403, endpoint.label
        else:
            assert status == 403, endpoint.label


@pytest.mark.parametrize(
    "key",
    [None, "", "cck_key_00000000000000000000000000.nope", "test-operator-ke", "TEST-OPERATOR-KEY"],
)
def test_a_request_without_a_valid_key_is_answered_401_on_every_guarded_route(
    roles: Roles, key: str | None
) -> None:
    wrong = []
    for endpoint in roles.routes:
        if endpoint.area is None:
            continue
        status, code = roles.send(endpoint, key)
        if status != 401 or code not in ("unauthenticated", "invalid_api_key"):
            wrong.append(f"{endpoint.label}: {status} {code}")
    assert wrong == []


def test_a_revoked_key_is_refused(roles: Roles) -> None:
    admin = bearer(roles.keys["admin"])
    base = f"/v1/orgs/{roles.world.org}"
    issued = roles.client.post(
        f"{base}/keys", json={"name": "short-lived", "role": "reader"}, headers=admin
    )
    assert issued.status_code == 201, issued.text
    key = issued.json()["key"]
    assert roles.client.get(base, headers=bearer(key)).status_code == 200
    revoked = roles.client.delete(f"{base}/keys/{issued.json()['id']}", headers=admin)
    assert revoked.status_code == 204
    assert roles.client.get(base, headers=bearer(key)).status_code == 401
