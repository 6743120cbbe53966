"""Rate tables and quotes over HTTP and from the command line (API.md "Rates"; R-40..R-42).

The HTTP client is the operator, on SQLite, with a simulated clock starting 2026-01-15T09:00Z.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from typer.testing import CliRunner

from commcredits.cli.main import app
from commcredits.domain.rating import COLUMNS

Client = TestClient[Litestar]

HEADER = ",".join(COLUMNS)
TABLE = "\n".join(
    [
        HEADER,
        "outbound,44,,,0.0240,,60,60,USD,2020-01-01,,UK",
        "outbound,4420,,,0.0150,0.10,60,1,USD,2020-01-01,,London",
        "outbound,,US,any,0.0120,,60,60,USD,2020-01-01,,US",
        "outbound,,JP,any,2.5,,60,60,JPY,2020-01-01,,Japan in yen",
        "sms_out,,US,any,0.0075,,1,1,USD,2020-01-01,,US SMS",
        "toll_free_in,,US,any,0.0250,,60,60,USD,2020-01-01,,US toll-free in",
    ]
)
BAD_TABLE = "\n".join(
    [
        HEADER,
        "outbound,44,,,0.0240,,60,60,USD,,,fine",
        "outbound,45,,,cheap,,60,60,USD,,,",  # line 3
        "outbound,46,,,0.02,,60,60,ZZZ,,,",  # line 4
        "outbound,44,,,0.0300,,60,60,USD,,,",  # line 5: overlaps line 2
    ]
)


def _load(client: Client, text: str, **headers: str) -> Any:
    return client.put(
        "/v1/rates", content=text.encode(), headers={"Content-Type": "text/csv", **headers}
    )


def _quote(client: Client, to: str, **params: Any) -> Any:
    return client.get("/v1/rates/quote", params={"to": to, **params})


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    return dict(body["error"])


def test_the_operator_loads_a_table_and_gets_its_row_count(client: Client) -> None:
    response = _load(client, TABLE, **{"X-Rate-Table-Name": "january.csv"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["rates_loaded"], body["name"]) == (6, "january.csv")
    assert body["table_id"]


def test_an_organization_admin_may_quote_but_not_load_a_table(client: Client) -> None:
    assert _load(client, TABLE).status_code == 200
    org = client.post(
        "/v1/orgs",
        json={"name": "Contoso", "country": "US", "currency": "USD", "billing": "prepaid"},
    )
    assert org.status_code == 201, org.text
    key = client.post(
        f"/v1/orgs/{org.json()['id']}/keys", json={"name": "admin key", "role": "admin"}
    )
    assert key.status_code == 201, key.text
    admin = {"Authorization": f"Bearer {key.json()['key']}"}

    refused = client.put("/v1/rates", content=TABLE.encode(), headers=admin)
    assert refused.status_code == 403, refused.text
    assert _error(refused)["code"] == "forbidden"
    quoted = client.get("/v1/rates/quote", params={"to": "+442071234567"}, headers=admin)
    assert quoted.status_code == 200, quoted.text


def test_a_bad_table_is_refused_whole_with_every_bad_line_and_the_old_one_stays(
    client: Client,
) -> None:
    loaded = _load(client, TABLE).json()
    before = _quote(client, "+441612345678", duration=60).json()

    response = _load(client, BAD_TABLE)

    assert response.status_code == 422, response.text
    error = _error(response)
    assert error["code"] == "invalid_rate_table"
    assert [(d["line"], d["field"]) for d in error["details"]] == [
        (3, "rate"),
        (4, "currency"),
        (5, "effective_from"),
    ]
    assert all(d["message"] for d in error["details"])
    after = _quote(client, "+441612345678", duration=60).json()
    assert after == before
    assert after["table_id"] == loaded["table_id"]


def test_a_table_without_its_required_columns_is_refused(client: Client) -> None:
    response = _load(client, "service,prefix,rate\noutbound,44,0.01\n")
    assert response.status_code == 422
    error = _error(response)
    assert error["details"][0]["line"] == 1
    assert "currency" in error["details"][0]["message"]


def test_a_quote_before_any_table_is_loaded_says_so(client: Client) -> None:
    response = _quote(client, "+442071234567")
    assert response.status_code == 404
    assert _error(response)["code"] == "no_rate_table"


def test_a_quote_shows_the_matched_row_billed_seconds_and_the_charge(client: Client) -> None:
    table_id = _load(client, TABLE).json()["table_id"]

    response = _quote(client, "+442071234567", service="outbound", duration=125, currency="USD")

    assert response.status_code == 200, response.text
    body = response.json()
    # London: first minute, then per second: 125 s; 0.10 + 0.0150 x 125 / 60 = 0.13125 -> 0.13
    assert {k: body[k] for k in ("to", "country", "number_type", "service")} == {
        "to": "+442071234567",
        "country": "GB",
        "number_type": "fixed",
        "service": "outbound",
    }
    assert (body["rate"], body["first_increment"], body["increment"]) == ("0.015", 60, 1)
    assert (body["billed_seconds"], body["units"], body["charge"], body["currency"]) == (
        125,
        125,
        "0.13",
        "USD",
    )
    assert body["table_id"] == table_id
    assert body["matched"] == {
        "line": 3,
        "service": "outbound",
        "prefix": "4420",
        "country": "",
        "number_type": "any",
        "description": "London",
        "effective_from": "2020-01-01",
        "effective_to": None,
    }


def test_a_quote_falls_back_to_the_country_row_and_rounds_yen_to_whole_yen(
    client: Client,
) -> None:
    _load(client, TABLE)
    us = _quote(client, "+12015550123", duration=61).json()
    assert (us["matched"]["description"], us["billed_seconds"], us["charge"]) == ("US", 120, "0.02")
    japan = _quote(client, "+81312345678", duration=60, currency="JPY").json()
    assert (japan["charge"], japan["currency"]) == ("3", "JPY")  # 2.5 rounds half-up


def test_a_zero_second_call_is_quoted_at_nothing(client: Client) -> None:
    _load(client, TABLE)
    body = _quote(client, "+442071234567", duration=0).json()
    assert (body["billed_seconds"], body["charge"]) == (0, "0.00")


def test_messages_are_quoted_per_segment(client: Client) -> None:
    _load(client, TABLE)
    body = _quote(client, "+12015550123", service="sms", duration=3).json()
    assert (body["service"], body["units"], body["billed_seconds"]) == ("sms_out", 3, 0)
    assert body["charge"] == "0.02"  # 3 x 0.0075 = 0.0225


def test_toll_free_calls_received_are_quoted_by_the_numbers_country(client: Client) -> None:
    _load(client, TABLE)
    body = _quote(client, "+18002345678", service="toll_free_in", duration=90).json()
    assert (body["number_type"], body["charge"]) == ("toll_free", "0.05")


@pytest.mark.parametrize(
    ("to", "params", "status", "code"),
    [
        ("+33123456789", {}, 422, "no_rate"),
        ("+44123", {}, 422, "invalid_number"),
        ("442071234567", {}, 422, "invalid_number"),
        ("+442071234567", {"service": "fax"}, 422, "invalid_service"),
        ("+442071234567", {"at": "2026-01-15T09:00:00"}, 400, "invalid_request"),
        ("+442071234567", {"duration": -1}, 400, "invalid_value"),
    ],
)
def test_quotes_that_cannot_be_priced_are_refused_with_a_reason(
    client: Client, to: str, params: dict[str, Any], status: int, code: str
) -> None:
    _load(client, TABLE)
    response = _quote(client, to, **params)
    assert response.status_code == status, response.text
    assert _error(response)["code"] == code


def test_loading_a_new_table_does_not_change_a_quote_before_its_new_rows_are_in_force(
    client: Client,
) -> None:
    _load(client, TABLE)
    january = {"duration": 60, "at": "2026-01-20T10:00:00Z"}
    before = _quote(client, "+441612345678", **january).json()
    assert before["charge"] == "0.02"

    newer = "\n".join(
        [
            HEADER,
            "outbound,44,,,0.0240,,60,60,USD,2020-01-01,2026-01-31,UK",
            "outbound,44,,,0.0500,,60,60,USD,2026-02-01,,UK from February",
        ]
    )
    assert _load(client, newer).status_code == 200

    after = _quote(client, "+441612345678", **january).json()
    assert after["table_id"] != before["table_id"]
    assert {k: after[k] for k in ("rate", "billed_seconds", "charge")} == {
        k: before[k] for k in ("rate", "billed_seconds", "charge")
    }
    assert _quote(client, "+441612345678").json()["charge"] == "0.02"  # the clock: Jan 15
    february = _quote(client, "+441612345678", duration=60, at="2026-02-01T00:00:00Z").json()
    assert (february["charge"], february["matched"]["description"]) == (
        "0.05",
        "UK from February",
    )


def test_a_quote_shows_the_rows_connection_fee_as_it_is(client: Client) -> None:
    _load(client, HEADER + "\noutbound,44,,,0.0100,0.0125,60,60,USD,,,UK\n")
    body = _quote(client, "+441612345678", duration=60).json()
    assert body["charge"] == "0.02"  # 0.0125 + 0.0100 = 0.0225
    assert body["connection_fee"] == "0.0125"


# --- the command line -----------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_rates_load_lists_every_bad_line_and_exits_1(tmp_path: Path, db: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_TABLE)

    result = runner.invoke(app, ["rates", "load", str(path), "--database-url", db])

    assert result.exit_code == 1, result.output
    printed = " ".join(result.output.split())  # the console wraps long lines
    for line, field in [(3, "rate"), (4, "currency"), (5, "effective_from")]:
        assert f"bad.csv:line {line}, {field}:" in printed
    assert "invalid_rate_table: 3 problems; nothing loaded" in printed
    quote = runner.invoke(app, ["rates", "quote", "--to", "+442071234567", "--database-url", db])
    assert quote.exit_code == 1
    assert "no_rate_table" in quote.output


def test_rates_load_a_missing_file_exits_2(tmp_path: Path, db: str) -> None:
    result = runner.invoke(
        app, ["rates", "load", str(tmp_path / "nowhere.csv"), "--database-url", db]
    )
    assert result.exit_code == 2
    assert "file_not_found" in result.output


def test_rates_load_and_quote_from_the_command_line(tmp_path: Path, db: str) -> None:
    path = tmp_path / "rates.csv"
    path.write_text(TABLE)

    loaded = runner.invoke(app, ["rates", "load", str(path), "--database-url", db, "--json"])

    assert loaded.exit_code == 0, loaded.output
    table = json.loads(loaded.output)
    assert (table["rates_loaded"], table["name"]) == (6, "rates.csv")

    quoted = runner.invoke(
        app,
        [
            "rates",
            "quote",
            "--to",
            "+442071234567",
            "--service",
            "outbound",
            "--duration",
            "125",
            "--at",
            "2026-01-15T09:00:00Z",
            "--database-url",
            db,
            "--json",
        ],
    )

    assert quoted.exit_code == 0, quoted.output
    body = json.loads(quoted.output)
    assert body == {
        "to": "+442071234567",
        "country": "GB",
        "number_type": "fixed",
        "service": "outbound",
        "rate": "0.015",
        "connection_fee": "0.10",
        "billed_seconds": 125,
        "charge": "0.13",
        "currency": "USD",
        "matched_line": 3,
        "matched": "4420",
        "description": "London",
        "table_id": table["table_id"],
    }


def test_rates_quote_refuses_a_destination_without_a_rate(tmp_path: Path, db: str) -> None:
    path = tmp_path / "rates.csv"
    path.write_text(TABLE)
    assert runner.invoke(app, ["rates", "load", str(path), "--database-url", db]).exit_code == 0

    result = runner.invoke(
        app, ["rates", "quote", "--to", "+33123456789", "--database-url", db, "--json"]
    )

    assert result.exit_code == 1
    assert "no_rate" in result.output
