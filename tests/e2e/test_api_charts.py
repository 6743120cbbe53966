"""The HTTP contract of the charts: GET /v1/orgs/{org}/charts/{name} (docs/charts.md)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import datetime
from decimal import Decimal

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from matplotlib.image import imread

from commcredits.api.routes import charts as chart_routes
from commcredits.app import Container
from commcredits.services.calls import CdrRecord
from commcredits.services.credits import NewOrder

Client = TestClient[Litestar]

ANN = "ann@contoso.com"
ANN_NUMBER = "+12125550100"
FR_FIXED = "+33142685300"
PATH = "/v1/orgs/{org}/charts/{name}"
CHARTS = ("daily-spend", "balance", "pools", "top-destinations")


@pytest.fixture
def api(client: Client) -> Client:
    """The operator's client, with the charts routes whether or not they are wired yet."""
    if PATH not in client.app.openapi_schema.paths:
        client.app.register(chart_routes.router)
    return client


def _org(client: Client, container: Container) -> str:
    container.rating.ensure_loaded()
    response = client.post(
        "/v1/orgs",
        json={"name": "Contoso", "country": "US", "currency": "USD", "billing": "prepaid"},
    )
    assert response.status_code == 201, response.text
    org_id = str(response.json()["id"])
    method = container.credits.add_agreement(org_id, "EA-1")
    container.credits.place_order(org_id, NewOrder("100.00", method.id))
    for sku in ("MCOEV", "MCOPSTN_PAYG_1"):
        container.directory.set_subscription(org_id, sku, 5, actor="t")
    container.directory.create_user(org_id, ANN, "Ann", "US", actor="t")
    container.directory.change_licenses(
        org_id, ANN, ["MCOEV", "MCOPSTN_PAYG_1", "MCOPSTNPP"], [], actor="t"
    )
    start = datetime.fromisoformat("2026-01-14T09:00:00+00:00")
    [result] = container.calls.import_cdrs(
        org_id, [CdrRecord("paid", "user_out", ANN, ANN_NUMBER, FR_FIXED, start, 125)]
    )
    assert (result.status, result.charge is not None) == ("charged", True)
    return org_id


def _key(client: Client, org_id: str, role: str) -> str:
    response = client.post(f"/v1/orgs/{org_id}/keys", json={"name": f"{role} key", "role": role})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def test_each_chart_answers_a_png_an_svg_and_its_data(
    api: Client, sqlite_container: Container
) -> None:
    org_id = _org(api, sqlite_container)
    for name in CHARTS:
        url = f"/v1/orgs/{org_id}/charts/{name}"
        png = api.get(url)
        assert png.status_code == 200, png.text
        assert png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
        assert imread(io.BytesIO(png.content), format="png").shape[:2] == (450, 800)

        svg = api.get(url, params={"format": "svg"})
        assert svg.status_code == 200, svg.text
        assert svg.headers["content-type"].startswith("image/svg+xml")
        data = api.get(url, params={"format": "json"})
        assert data.status_code == 200, data.text
        body = data.json()
        assert body["chart"] == name
        assert body["title"] in "".join(ET.fromstring(svg.content).itertext())
        assert api.get(url, params={"format": "svg"}).content == svg.content


def test_the_json_data_has_amounts_as_decimal_strings_and_honours_the_range(
    api: Client, sqlite_container: Container
) -> None:
    org_id = _org(api, sqlite_container)
    spend = api.get(
        f"/v1/orgs/{org_id}/charts/daily-spend", params={"format": "json", "days": 7}
    ).json()
    assert spend["currency"] == "USD"
    assert spend["range"] == {
        "from": "2026-01-09",
        "to": "2026-01-15",
        "days": 7,
        "time_zone": "UTC",
    }
    [paid_day] = [d for d in spend["days"] if d["day"] == "2026-01-14"]
    assert isinstance(paid_day["total"], str)
    assert paid_day["amounts"]["credits"] == paid_day["total"] != "0.00"

    top = api.get(
        f"/v1/orgs/{org_id}/charts/top-destinations",
        params={"format": "json", "from": "2026-01-14", "to": "2026-01-14", "limit": 5},
    ).json()
    assert [(d["country"], d["charge"]) for d in top["destinations"]] == [("FR", paid_day["total"])]
    balance = api.get(f"/v1/orgs/{org_id}/charts/balance", params={"format": "json"}).json()
    assert [e["kind"] for e in balance["events"]] == ["deposit"]
    assert Decimal(balance["points"][-1]["balance"]) == (
        sqlite_container.credits.view(org_id).balance
    )
    pools = api.get(
        f"/v1/orgs/{org_id}/charts/pools", params={"format": "json", "month": "2026-01"}
    ).json()
    assert pools["month"] == "2026-01"


def test_unknown_charts_and_bad_parameters_are_refused(
    api: Client, sqlite_container: Container
) -> None:
    org_id = _org(api, sqlite_container)
    unknown = api.get(f"/v1/orgs/{org_id}/charts/pie")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "chart_not_found"
    assert api.get("/v1/orgs/org_missing/charts/balance").status_code == 404
    bad_format = api.get(f"/v1/orgs/{org_id}/charts/balance", params={"format": "gif"})
    assert (bad_format.status_code, bad_format.json()["error"]["field"]) == (400, "format")
    assert api.get(f"/v1/orgs/{org_id}/charts/balance", params={"days": 5}).status_code == 400
    assert api.get(f"/v1/orgs/{org_id}/charts/pools", params={"days": 7}).status_code == 400
    assert (
        api.get(f"/v1/orgs/{org_id}/charts/pools", params={"month": "2026-13"}).status_code == 400
    )
    too_old = api.get(f"/v1/orgs/{org_id}/charts/daily-spend", params={"from": "2024-01-01"})
    assert too_old.status_code == 422


def test_readers_may_see_charts_and_telephony_keys_may_not(
    api: Client, sqlite_container: Container
) -> None:
    org_id = _org(api, sqlite_container)
    reader = {"Authorization": f"Bearer {_key(api, org_id, 'reader')}"}
    telephony = {"Authorization": f"Bearer {_key(api, org_id, 'telephony')}"}
    for name in CHARTS:
        url = f"/v1/orgs/{org_id}/charts/{name}"
        assert api.get(url, headers=reader).status_code == 200, name
        assert api.get(url, headers=telephony).status_code == 403, name
