"""The HTTP contract of the usage reports (API.md, "Rates and reports"; R-50..R-54)."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest
from litestar.testing import TestClient
from typer.testing import CliRunner

from commcredits.api.app import create_app
from commcredits.api.routes import reports as report_routes
from commcredits.app import Container
from commcredits.services.calls import CdrRecord
from commcredits.services.credits import NewOrder
from tests.conftest import OPERATOR_KEY

Client = TestClient  # type: ignore[type-arg]

ANN = "ann@contoso.com"
ANN_NUMBER = "+12125550100"
US_FIXED = "+12125550199"
FR_FIXED = "+33142685300"
HEADER = (
    "UsageId,Call ID,Conference ID,User Location,user ObjectId,UPN,User Display Name,Caller ID,"
    "Call Type,Call Direction,Number Type,Domestic/International,Destination Dialed,"
    "Destination Number,External Country,Start Time,End Time,Duration Seconds,Connection Fee,"
    "Charge,Currency,Capability"
)


@pytest.fixture
def api(sqlite_container: Container) -> Iterator[Client]:
    """The application as served, with the reports routes whether or not they are wired yet."""
    app = create_app(sqlite_container)
    if not any("/reports/" in route.path for route in app.routes):
        app.register(report_routes.router)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {OPERATOR_KEY}"
        yield client


def _org(client: Client, container: Container, country: str = "US", currency: str = "USD") -> str:
    container.rating.ensure_loaded()
    response = client.post(
        "/v1/orgs",
        json={"name": "Contoso", "country": country, "currency": currency, "billing": "prepaid"},
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
    results = container.calls.import_cdrs(
        org_id,
        [
            CdrRecord(
                "pool", "user_out", ANN, ANN_NUMBER, US_FIXED, _at("2026-01-14T08:00:00Z"), 61
            ),
            CdrRecord(
                "paid", "user_out", ANN, ANN_NUMBER, FR_FIXED, _at("2026-01-14T09:00:00Z"), 125
            ),
        ],
    )
    assert [r.status for r in results] == ["charged", "charged"]
    return org_id


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _key(client: Client, org_id: str, role: str) -> str:
    response = client.post(f"/v1/orgs/{org_id}/keys", json={"name": f"{role} key", "role": role})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def test_a_json_page_has_the_r50_columns_and_a_cursor(
    api: Client, sqlite_container: Container
) -> None:
    org_id = _org(api, sqlite_container)
    first = api.get(f"/v1/orgs/{org_id}/reports/pstn", params={"days": 7, "limit": 1})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["columns"] == HEADER.split(",")
    assert [row["Call ID"] for row in body["rows"]] == ["pool"]
    assert body["rows"][0]["Duration Seconds"] == 61
    assert body["rows"][0]["Charge"] == "0.00"
    assert body["parameters"]["from"] == "2026-01-09"
    assert body["parameters"]["to"] == "2026-01-15"
    second = api.get(
        f"/v1/orgs/{org_id}/reports/pstn",
        params={"days": 7, "limit": 1, "cursor": body["next_cursor"]},
    ).json()
    assert [(r["Call ID"], r["Charge"], r["Capability"]) for r in second["rows"]] == [
        ("paid", "0.08", "MCOPSTNPP")
    ]
    assert second["next_cursor"] is None


def test_the_csv_download_is_streamed_with_its_file_name(
    api: Client, sqlite_container: Container
) -> None:
    org_id = _org(api, sqlite_container)
    response = api.get(
        f"/v1/orgs/{org_id}/reports/pstn",
        params={"from": "2026-01-14", "to": "2026-01-14", "format": "csv"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert (
        response.headers["content-disposition"]
        == 'attachment; filename="PSTN.calls.2026-01-15.csv"'
    )
    assert response.content.split(b"\r\n")[0].decode() == HEADER
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert [(r[1], r[15], r[19], r[21]) for r in rows[1:]] == [
        ("pool", "2026-01-14T08:00:00Z", "0.00", "MCOPSTN1"),
        ("paid", "2026-01-14T09:00:00Z", "0.08", "MCOPSTNPP"),
    ]
    paid_only = api.get(
        f"/v1/orgs/{org_id}/reports/pstn",
        params={"days": 28, "format": "csv", "capability": "MCOPSTNPP"},
    )
    assert [r[1] for r in csv.reader(io.StringIO(paid_only.text, newline=""))][1:] == ["paid"]


def test_the_xlsx_and_zip_downloads(api: Client, sqlite_container: Container) -> None:
    org_id = _org(api, sqlite_container)
    xlsx = api.get(f"/v1/orgs/{org_id}/reports/pstn", params={"days": 7, "format": "xlsx"})
    assert xlsx.status_code == 200, xlsx.text
    assert xlsx.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert 'filename="PSTN.calls.2026-01-15.xlsx"' in xlsx.headers["content-disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).worksheets[0]
    assert ",".join(str(c.value) for c in sheet[1]) == HEADER
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:V3"
    assert sheet["P2"].value == datetime(2026, 1, 14, 8, 0)
    assert sheet["R2"].value == 61
    assert sheet["T3"].value == pytest.approx(0.08)

    archive_response = api.get(
        f"/v1/orgs/{org_id}/reports/pstn",
        params={"days": 28, "format": "zip", "user": ANN},
    )
    assert archive_response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(archive_response.content))
    assert sorted(archive.namelist()) == ["PSTN.calls.2026-01-15.csv", "parameters.json"]
    assert archive.read("PSTN.calls.2026-01-15.csv").split(b"\r\n")[0].decode() == HEADER
    parameters = json.loads(archive.read("parameters.json"))
    assert (parameters["days"], parameters["filters"]["user"]) == (28, ANN)


def test_refused_ranges_and_values_answer_before_any_download(
    api: Client, sqlite_container: Container
) -> None:
    org_id = _org(api, sqlite_container)
    base = f"/v1/orgs/{org_id}/reports/pstn"
    too_old = api.get(base, params={"from": "2025-01-14", "to": "2025-02-01", "format": "csv"})
    assert too_old.status_code == 422, too_old.text
    assert too_old.json()["error"]["code"] == "range_too_old"
    backwards = api.get(base, params={"from": "2026-01-10", "to": "2026-01-09"})
    assert (backwards.status_code, backwards.json()["error"]["code"]) == (422, "invalid_range")
    assert api.get(base, params={"days": 30}).status_code == 400
    assert api.get(base, params={"format": "pdf"}).status_code == 400
    assert api.get(base, params={"call_type": "sideways"}).status_code == 400
    assert api.get("/v1/orgs/org_nope/reports/pstn").status_code == 404


def test_readers_may_read_reports_and_telephony_keys_may_not(
    api: Client, sqlite_container: Container
) -> None:
    org_id = _org(api, sqlite_container)
    reader = {"Authorization": f"Bearer {_key(api, org_id, 'reader')}"}
    telephony = {"Authorization": f"Bearer {_key(api, org_id, 'telephony')}"}
    for report in ("pstn", "sms", "pools"):
        url = f"/v1/orgs/{org_id}/reports/{report}"
        assert api.get(url, headers=reader).status_code == 200, report
        assert api.get(url, headers=telephony).status_code == 403, report
    csv_as_reader = api.get(
        f"/v1/orgs/{org_id}/reports/pstn", params={"format": "csv"}, headers=reader
    )
    assert csv_as_reader.status_code == 200
    # Only the operator may switch masking.
    switched = api.get(
        f"/v1/orgs/{org_id}/reports/pstn", params={"masking": "false"}, headers=reader
    )
    assert switched.status_code == 403


def test_masking_applies_to_downloads_of_a_german_organization(
    api: Client, sqlite_container: Container
) -> None:
    container = sqlite_container
    container.rating.ensure_loaded()
    org_id = api.post(
        "/v1/orgs",
        json={"name": "Fabrikam", "country": "DE", "currency": "EUR", "billing": "prepaid"},
    ).json()["id"]
    container.directory.set_subscription(org_id, "MCOEV", 5, actor="t")
    container.directory.create_user(org_id, ANN, "Ann", "DE", actor="t")
    container.directory.change_licenses(org_id, ANN, ["MCOEV"], [], actor="t")
    [result] = container.calls.import_cdrs(
        org_id,
        [
            CdrRecord(
                "in", "user_in", ANN, "+4930123456", "+4930999999", _at("2026-01-14T08:00Z"), 9
            )
        ],
    )
    assert result.status == "charged"
    base = f"/v1/orgs/{org_id}/reports/pstn"
    masked = api.get(base, params={"format": "csv"}).text.split("\r\n")[1].split(",")
    assert masked[7] == "+4930123***"
    shown = api.get(base, params={"format": "csv", "masking": "false"}).text
    assert shown.split("\r\n")[1].split(",")[7] == "+4930123456"


def test_sms_and_pools_answer_in_every_format(api: Client, sqlite_container: Container) -> None:
    org_id = _org(api, sqlite_container)
    pools = api.get(f"/v1/orgs/{org_id}/reports/pools").json()
    assert pools["columns"][:3] == ["Month", "Country", "Capability"]
    assert any(r["Capability"] == "MCOPSTN1" and r["Used"] == 2 for r in pools["rows"])
    for report, stem in (("sms", "SMS.messages"), ("pools", "Pools.minutes")):
        for fmt in ("csv", "xlsx", "zip"):
            response = api.get(f"/v1/orgs/{org_id}/reports/{report}", params={"format": fmt})
            assert response.status_code == 200, (report, fmt, response.text)
            assert f'filename="{stem}.2026-01-15.{fmt}"' in response.headers["content-disposition"]


def test_the_cli_writes_a_report_file(
    sqlite_container: Container, api: Client, tmp_path: Path
) -> None:
    from commcredits.cli import reports as _registers  # noqa: F401
    from commcredits.cli.main import app

    org_id = _org(api, sqlite_container)
    url = sqlite_container.settings.database_url
    target = tmp_path / "usage.xlsx"
    result = CliRunner().invoke(
        app,
        [
            "report",
            "pstn",
            "--org",
            org_id,
            "--days",
            "28",
            "--format",
            "xlsx",
            "-o",
            str(target),
            "--database-url",
            url,
            "--json",
        ],
        # The simulated clock the service runs on (stored in the database): 2026-01-15.
        env={"COMMCREDITS_CLOCK": "simulated"},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["format"]) == (2, "xlsx")
    sheet = openpyxl.load_workbook(target).worksheets[0]
    assert [sheet.cell(row=n, column=2).value for n in (2, 3)] == ["pool", "paid"]
    old = CliRunner().invoke(
        app,
        ["report", "pstn", "--org", org_id, "--from", "2024-01-01", "--database-url", url],
        env={"COMMCREDITS_CLOCK": "simulated"},
    )
    assert old.exit_code == 1
    assert "range_too_old" in old.output


def test_the_operator_sets_number_masking_on_the_organization(
    api: Client, sqlite_container: Container, tmp_path: Path
) -> None:
    from commcredits.cli.main import app

    org_id = api.post(
        "/v1/orgs",
        json={"name": "Fabrikam", "country": "DE", "currency": "EUR", "billing": "prepaid"},
    ).json()["id"]
    org_url = f"/v1/orgs/{org_id}"
    created = api.get(org_url).json()
    assert (created["mask_numbers"], created["numbers_masked"]) == (None, True)
    admin = {"Authorization": f"Bearer {_key(api, org_id, 'admin')}"}
    refused = api.patch(org_url, json={"mask_numbers": False}, headers=admin)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    # The admin may still change what is theirs to change.
    assert api.patch(org_url, json={"name": "Fabrikam AG"}, headers=admin).status_code == 200
    off = api.patch(org_url, json={"mask_numbers": False})
    assert off.status_code == 200, off.text
    assert (off.json()["mask_numbers"], off.json()["numbers_masked"]) == (False, False)
    listed = {org["id"]: org for org in api.get("/v1/orgs").json()}
    assert listed[org_id]["mask_numbers"] is False
    sqlite_container.directory.set_subscription(org_id, "MCOEV", 5, actor="t")
    sqlite_container.directory.create_user(org_id, ANN, "Ann", "DE", actor="t")
    sqlite_container.directory.change_licenses(org_id, ANN, ["MCOEV"], [], actor="t")
    sqlite_container.calls.import_cdrs(
        org_id,
        [
            CdrRecord(
                "in", "user_in", ANN, "+4930123456", "+4930999999", _at("2026-01-14T08:00Z"), 9
            )
        ],
    )
    base = f"{org_url}/reports/pstn"
    assert api.get(base, params={"format": "csv"}).text.split("\r\n")[1].split(",")[7] == (
        "+4930123456"
    )
    back = api.patch(org_url, json={"mask_numbers": None})
    assert (back.json()["mask_numbers"], back.json()["numbers_masked"]) == (None, True)
    assert api.get(base, params={"format": "csv"}).text.split("\r\n")[1].split(",")[7] == (
        "+4930123***"
    )
    assert api.patch(org_url, json={"mask_numbers": "yes"}).status_code == 400

    url = sqlite_container.settings.database_url
    result = CliRunner().invoke(
        app, ["orgs", "set", org_id, "--mask-numbers", "off", "--database-url", url, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mask_numbers"] == "off"
    assert api.get(org_url).json()["mask_numbers"] is False
    wrong = CliRunner().invoke(
        app, ["orgs", "set", org_id, "--mask-numbers", "maybe", "--database-url", url]
    )
    assert wrong.exit_code == 2
