"""Requests the fuzzing found answered with a server error, kept as plain tests: each is now a
400 in the contract's error body."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from commcredits.api.app import create_app
from tests.conftest import OPERATOR_KEY
from tests.security.world import World, bearer, seed, service

Client = TestClient  # type: ignore[type-arg]
YEAR_ONE_EAST = "0001-01-01T00:01:00+01:01"
"""A valid RFC 3339 time that is before year 1 once moved to UTC."""


@pytest.fixture(scope="module")
def api(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with service(sqlite_template, tmp_path_factory.mktemp("found")) as container:
        world = seed(container, "Found", "+1212555")
        with TestClient(create_app(container)) as client:
            yield client, world


def _refused(response: Any) -> None:
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert response.json()["error"]["code"] in ("invalid_value", "invalid_request")


def test_a_ledger_page_from_an_entry_number_past_64_bits_is_refused(api: Any) -> None:
    client, world = api
    url = f"/v1/orgs/{world.org}/credits/transactions"
    _refused(client.get(url, params={"before": 2**100}, headers=bearer(world.keys["admin"])))
    fine = client.get(url, params={"before": 2**63 - 1}, headers=bearer(world.keys["admin"]))
    assert fine.status_code == 200


def test_a_clock_time_before_year_one_in_utc_is_refused(api: Any) -> None:
    client, _ = api
    moved = client.post(
        "/v1/system/clock", json={"now": YEAR_ONE_EAST}, headers=bearer(OPERATOR_KEY)
    )
    _refused(moved)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "calls",
            {"call_id": "y1", "call_type": "user_out", "from": "+12125550100",
             "to": "+33142685300", "user": "ann.found@found.example.com",
             "start_time": YEAR_ONE_EAST},
        ),
        (
            "sms",
            {"sms_id": "y1", "direction": "outbound", "units": 1, "from": "+12125550100",
             "to": "+12125559999", "user": "ann.found@found.example.com",
             "sent_at": YEAR_ONE_EAST},
        ),
        (
            "cdrs",
            {"records": [{"call_id": "y1", "call_type": "user_out", "from": "+12125550100",
                          "to": "+33142685300", "start_time": YEAR_ONE_EAST,
                          "duration_seconds": 60}]},
        ),
    ],
)  # fmt: skip
def test_usage_dated_before_year_one_in_utc_is_not_a_server_error(
    api: Any, path: str, body: dict[str, Any]
) -> None:
    client, world = api
    world_: World = world
    response = client.post(
        f"/v1/orgs/{world_.org}/{path}", json=body, headers=bearer(world_.keys["admin"])
    )
    assert response.status_code < 500, response.text


def test_a_cdr_whose_end_would_be_past_year_9999_is_rejected_by_itself(api: Any) -> None:
    """Its end time cannot be represented; the record is rejected and its neighbour charged."""
    client, world = api
    world_: World = world
    record = {"call_type": "user_out", "from": "+12125550100", "to": "+33142685300",
              "user": "ann.found@found.example.com", "duration_seconds": 60}  # fmt: skip
    records = [
        {**record, "call_id": "late-1", "start_time": "9999-12-31T23:59:30Z"},
        {**record, "call_id": "late-2", "start_time": "2026-01-14T10:00:00Z"},
    ]
    response = client.post(
        f"/v1/orgs/{world_.org}/cdrs",
        json={"records": records},
        headers=bearer(world_.keys["admin"]),
    )
    assert response.status_code == 200, response.text
    statuses = {r["call_id"]: r["status"] for r in response.json()["results"]}
    assert statuses["late-1"] == "rejected"
    assert statuses["late-2"] != "rejected"
