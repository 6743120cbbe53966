"""Usage reports read from charged calls, on SQLite and PostgreSQL (R-50..R-54)."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import openpyxl
import pytest
from sqlalchemy import insert, select, update

from commcredits.app import Container
from commcredits.domain.errors import InvalidRequest, RuleViolation
from commcredits.domain.report_line import pstn_line, usage_id
from commcredits.services.calls import CdrRecord, SmsRequest
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization
from commcredits.services.reports import (
    PSTN,
    ReportRequest,
    Reports,
    csv_chunks,
    mask_number,
    parse_range,
    xlsx_chunks,
)
from commcredits.store.tables import calls as calls_table
from commcredits.store.usage import CallRepository

pytestmark = pytest.mark.usefixtures("ledger_checked")

R50_HEADER = [
    "UsageId",
    "Call ID",
    "Conference ID",
    "User Location",
    "user ObjectId",
    "UPN",
    "User Display Name",
    "Caller ID",
    "Call Type",
    "Call Direction",
    "Number Type",
    "Domestic/International",
    "Destination Dialed",
    "Destination Number",
    "External Country",
    "Start Time",
    "End Time",
    "Duration Seconds",
    "Connection Fee",
    "Charge",
    "Currency",
    "Capability",
]

ANN = "ann@contoso.com"
BOB = "bob@contoso.com"
ANN_NUMBER = "+12125550100"
US_FIXED = "+12125550199"
FR_FIXED = "+33142685300"
# The simulated clock starts at 2026-01-15T09:00:00Z (tests/conftest.py).
TODAY = datetime(2026, 1, 15, tzinfo=UTC)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _org(
    container: Container,
    *,
    country: str = "US",
    currency: str = "USD",
    users: tuple[tuple[str, str, list[str]], ...] = (
        (ANN, "US", ["MCOEV", "MCOPSTN1", "MCOPSTNPP"]),
        (BOB, "US", ["MCOEV", "MCOPSTN1"]),
    ),
) -> str:
    container.rating.ensure_loaded()
    org = container.orgs.create(NewOrganization("Contoso", country, currency, "prepaid"))
    method = container.credits.add_agreement(org.id, "EA-1")
    container.credits.place_order(org.id, NewOrder("50.00", method.id))
    for sku in ("MCOEV", "MCOPSTN1", "MCOPSTN_PAYG_1", "MCOPSTN_PAYG_2"):
        container.directory.set_subscription(org.id, sku, 5, actor="t")
    for upn, location, licenses in users:
        name = 'Doe, "Ann"' if upn == ANN else upn.split("@")[0].title()
        container.directory.create_user(org.id, upn, name, location, actor="t")
        container.directory.change_licenses(org.id, upn, licenses, [], actor="t")
    return org.id


def _cdr(
    call_id: str,
    start: str,
    seconds: int,
    *,
    to: str = US_FIXED,
    user: str = ANN,
    call_type: str = "user_out",
    from_number: str = ANN_NUMBER,
) -> CdrRecord:
    return CdrRecord(call_id, call_type, user, from_number, to, _at(start), seconds)


def _charge(container: Container, org_id: str, records: list[CdrRecord]) -> dict[str, Any]:
    results = container.calls.import_cdrs(org_id, records)
    assert [r.status for r in results] == ["charged"] * len(records), results
    return {r.call_id: r.record for r in results}


def _reports(container: Container) -> Reports:
    return Reports(container.store, container.clock, container.calls, fetch_rows=3)


def _csv(reports: Reports, request: ReportRequest) -> list[list[str]]:
    body = b"".join(reports.export(request, "csv").chunks)
    return list(csv.reader(io.StringIO(body.decode(), newline="")))


def _ids(reports: Reports, request: ReportRequest) -> list[str]:
    return [row[1] for row in reports.rows(request)]


# -- the rows --------------------------------------------------------------------------------


def test_the_pstn_export_has_exactly_the_r50_header_and_the_charged_values(
    container: Container,
) -> None:
    org_id = _org(container)
    records = _charge(
        container,
        org_id,
        [
            _cdr("pool-call", "2026-01-14T08:00:00+00:00", 61),
            _cdr("paid-call", "2026-01-14T09:30:00+00:00", 125, to=FR_FIXED),
            _cdr(
                "inbound",
                "2026-01-14T10:00:00+00:00",
                30,
                call_type="user_in",
                from_number=FR_FIXED,
                to=ANN_NUMBER,
            ),
        ],
    )
    reports = _reports(container)
    request = reports.request("pstn", org_id, days=7)
    body = b"".join(reports.export(request, "csv").chunks)
    assert body.startswith(",".join(R50_HEADER[:6]).encode())
    assert b"\r\n" in body
    assert b"\n" not in body.replace(b"\r\n", b"")
    rows = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert rows[0] == R50_HEADER
    assert [row[1] for row in rows[1:]] == ["pool-call", "paid-call", "inbound"]
    ann = records["pool-call"]
    assert rows[1] == [
        usage_id(org_id, "pool-call"),
        "pool-call",
        "",
        "US",
        ann.user_id,
        ANN,
        'Doe, "Ann"',
        ANN_NUMBER,
        "user_out",
        "Outbound",
        "fixed",
        "Domestic",
        "United States",
        US_FIXED,
        "US",
        "2026-01-14T08:00:00Z",
        "2026-01-14T08:01:01Z",
        "61",
        "0.00",
        "0.00",
        "USD",
        "MCOPSTN1",
    ]
    # FR fixed 0.0250 x 3 minutes = 0.075 -> 0.08, paid from credits (R-33, R-41, R-50a).
    paid = dict(zip(R50_HEADER, rows[2], strict=True))
    assert str(records["paid-call"].charge) == paid["Charge"] == "0.08"
    assert (paid["Capability"], paid["Destination Dialed"], paid["External Country"]) == (
        "MCOPSTNPP",
        "France",
        "FR",
    )
    assert (paid["Domestic/International"], paid["Duration Seconds"]) == ("International", "125")
    assert (paid["Start Time"], paid["End Time"]) == (
        "2026-01-14T09:30:00Z",
        "2026-01-14T09:32:05Z",
    )
    inbound = dict(zip(R50_HEADER, rows[3], strict=True))
    assert (inbound["Call Direction"], inbound["Caller ID"], inbound["Destination Number"]) == (
        "Inbound",
        FR_FIXED,
        ANN_NUMBER,
    )
    assert inbound["Capability"] == records["inbound"].capability
    # The raw value is quoted as RFC 4180 says: a comma and doubled quotes.
    assert b'"Doe, ""Ann"""' in body


def test_a_call_split_between_pool_and_credits_is_one_row_with_the_license_that_paid(
    container: Container,
) -> None:
    org_id = _org(container, users=((ANN, "GB", ["MCOEV", "MCOPSTN1", "MCOPSTNPP"]),))
    gb_user, gb_fixed = "+442079460000", "+442071234567"
    records = _charge(
        container,
        org_id,
        [
            _cdr("fill", "2026-01-14T08:00:00+00:00", 1199 * 60, to=gb_fixed, from_number=gb_user),
            _cdr("split", "2026-01-14T23:00:00+00:00", 150, to=gb_fixed, from_number=gb_user),
        ],
    )
    assert records["split"].pool_minutes == 1
    reports = _reports(container)
    rows = list(reports.rows(reports.request("pstn", org_id, days=7)))
    assert [(r[1], r[19], r[21]) for r in rows] == [
        ("fill", "0.00", "MCOPSTN1"),
        ("split", "0.05", "MCOPSTNPP"),
    ]


def test_only_ended_calls_are_reported(container: Container) -> None:
    from commcredits.services.calls import CallRequest

    org_id = _org(container)
    container.calls.authorize(org_id, CallRequest("live", "user_out", ANN, ANN_NUMBER, US_FIXED))
    _charge(container, org_id, [_cdr("done", "2026-01-15T08:00:00+00:00", 10)])
    reports = _reports(container)
    assert _ids(reports, reports.request("pstn", org_id, days=7)) == ["done"]
    container.calls.end(org_id, "live", 5)
    assert _ids(reports, reports.request("pstn", org_id, days=7)) == ["done", "live"]


def test_every_call_is_stored_with_its_report_line_when_it_ends_however_it_ends(
    container: Container,
) -> None:
    """Batched CDRs, live calls ended by the switch and calls ended by the reservation job
    are each stored with the report line of their record; denied and active calls with none
    (domain/report_line.py). The export reads those lines: its bytes are a page's rows."""
    from commcredits.services.calls import CallRequest

    org_id = _org(container, country="DE", currency="EUR")
    container.calls.authorize(org_id, CallRequest("hung", "user_out", ANN, ANN_NUMBER, FR_FIXED))
    container.calls.authorize(org_id, CallRequest("live", "user_out", ANN, ANN_NUMBER, US_FIXED))
    container.calls.authorize(org_id, CallRequest("busy", "user_out", ANN, ANN_NUMBER, US_FIXED))
    container.calls.end(org_id, "live", 42)
    results = container.calls.import_cdrs(
        org_id,
        [
            _cdr("cdr-out", "2026-01-15T08:00:00+00:00", 61, to=FR_FIXED),
            _cdr(
                "cdr-in", "2026-01-15T08:05:00+00:00", 30, call_type="user_in", from_number=FR_FIXED
            ),
            _cdr("cdr-nobody", "2026-01-15T08:06:00+00:00", 30, user="nobody@contoso.com"),
        ],
    )
    assert [r.status for r in results] == ["charged", "charged", "rejected"], results
    container.jobs.advance_clock(container.clock.now() + timedelta(hours=2))
    container.calls.end(org_id, "busy", 5)  # after its reservation lapsed: already ended
    with container.store.engine.begin() as conn:
        stored = {
            row.call_id: (row.report_line, row.report_mask_at)
            for row in conn.execute(
                select(
                    calls_table.c.call_id,
                    calls_table.c.report_line,
                    calls_table.c.report_mask_at,
                ).where(calls_table.c.org_id == org_id)
            )
        }
        records = CallRepository(conn).get_many(org_id, list(stored))
    assert {r.call_id for r in records.values() if r.status == "ended"} == {
        "hung",
        "live",
        "busy",
        "cdr-out",
        "cdr-in",
    }
    for call_id, record in records.items():
        assert stored[call_id] == (pstn_line(record) or (None, None)), call_id
    line, mask_at = stored["cdr-in"]
    assert line is not None
    assert mask_at is not None
    assert line[:mask_at].endswith(FR_FIXED)
    assert line.startswith(usage_id(org_id, "cdr-in"))
    reports = _reports(container)
    request = reports.request("pstn", org_id, days=7)
    assert b"".join(reports.export(request, "csv").chunks) == b"".join(
        csv_chunks(PSTN, reports.batches(request))
    )
    assert {row[13] for row in reports.rows(request)} >= {"+33142685***"}


# -- ranges ----------------------------------------------------------------------------------


def test_range_ends_are_midnight_utc_and_both_days_are_included(container: Container) -> None:
    org_id = _org(container)
    _charge(
        container,
        org_id,
        [
            _cdr("before", "2025-12-31T23:59:59+00:00", 10),
            _cdr("first", "2026-01-01T00:00:00+00:00", 10),
            _cdr("last", "2026-01-10T23:59:59+00:00", 10),
            _cdr("after", "2026-01-11T00:00:00+00:00", 10),
        ],
    )
    reports = _reports(container)
    request = reports.request("pstn", org_id, from_="2026-01-01", to="2026-01-10")
    assert _ids(reports, request) == ["first", "last"]
    one_day = reports.request("pstn", org_id, from_="2026-01-10", to="2026-01-10")
    assert _ids(reports, one_day) == ["last"]
    assert _ids(reports, reports.request("pstn", org_id, from_="2026-01-11")) == ["after"]


def test_the_last_7_and_28_days_count_back_from_today_included(container: Container) -> None:
    org_id = _org(container)
    _charge(
        container,
        org_id,
        [
            _cdr("d-8", "2026-01-08T23:59:59+00:00", 10),
            _cdr("d-7", "2026-01-09T00:00:00+00:00", 10),
            _cdr("d-28", "2025-12-19T00:00:00+00:00", 10),
            _cdr("d-29", "2025-12-18T23:59:59+00:00", 10),
            _cdr("today", "2026-01-15T08:00:00+00:00", 10),
        ],
    )
    reports = _reports(container)
    assert _ids(reports, reports.request("pstn", org_id, days=7)) == ["d-7", "today"]
    assert _ids(reports, reports.request("pstn", org_id, days=28)) == [
        "d-28",
        "d-8",
        "d-7",
        "today",
    ]
    assert reports.request("pstn", org_id).range == reports.request("pstn", org_id, days=28).range


def test_ranges_reach_one_year_back_and_no_further() -> None:
    today = TODAY.date()
    assert parse_range(today, from_="2025-01-15").first_day.isoformat() == "2025-01-15"
    with pytest.raises(RuleViolation) as too_old:
        parse_range(today, from_="2025-01-14", to="2025-02-01")
    assert too_old.value.code == "range_too_old"
    assert "2025-01-15" in too_old.value.message
    with pytest.raises(RuleViolation) as backwards:
        parse_range(today, from_="2026-01-10", to="2026-01-09")
    assert backwards.value.code == "invalid_range"
    for bad in ({"days": 30}, {"days": 7, "from_": "2026-01-01"}, {"from_": "01/02/2026"}):
        with pytest.raises(InvalidRequest):
            parse_range(today, **bad)  # type: ignore[arg-type]
    leap = parse_range(datetime(2028, 2, 29).date(), from_="2027-02-28")
    assert leap.first_day.isoformat() == "2027-02-28"


# -- filters ---------------------------------------------------------------------------------


def test_filters_by_user_call_type_and_capability(container: Container) -> None:
    org_id = _org(container)
    _charge(
        container,
        org_id,
        [
            _cdr("ann-pool", "2026-01-14T08:00:00+00:00", 61),
            _cdr("ann-paid", "2026-01-14T08:10:00+00:00", 125, to=FR_FIXED),
            _cdr("bob-pool", "2026-01-14T08:20:00+00:00", 30, user=BOB, from_number="+12125550101"),
            _cdr(
                "ann-in",
                "2026-01-14T08:30:00+00:00",
                30,
                call_type="user_in",
                from_number=FR_FIXED,
                to=ANN_NUMBER,
            ),
            _cdr("ann-paid-2", "2026-01-14T08:40:00+00:00", 60, to="+33612345678"),
        ],
    )
    reports = _reports(container)

    def ids(**filters: Any) -> list[str]:
        return _ids(reports, reports.request("pstn", org_id, days=7, **filters))

    assert ids(user="BOB@contoso.com") == ["bob-pool"]
    assert ids(call_type="user_in") == ["ann-in"]
    # MCOPSTNPP shows exactly the pay-per-minute calls, here the two paid from credits.
    assert ids(capability="MCOPSTNPP") == ["ann-paid", "ann-paid-2"]
    assert ids(capability="mcopstn1") == ["ann-pool", "bob-pool"]
    assert ids(user=ANN, capability="MCOPSTN1") == ["ann-pool"]
    with pytest.raises(InvalidRequest):
        reports.request("pstn", org_id, call_type="user_sideways")


# -- masking ---------------------------------------------------------------------------------


def test_mask_number_hides_the_digits_the_billing_country_requires() -> None:
    assert mask_number("+4930123456", "DE") == "+4930123***"
    assert mask_number("+33142685300", "FR") == "+3314268****"
    assert mask_number("+41441234567", "CH") == "+4144123****"
    assert mask_number("+33142685300", "US") == "+33142685300"
    assert mask_number("112", "DE") == "112"
    assert mask_number("+49 30 123-456", "DE") == "+49 30 123-***"


@pytest.mark.parametrize(
    ("country", "currency", "caller", "destination"),
    [("DE", "EUR", "+4930123***", "+33123456***"), ("FR", "EUR", "+493012****", "+3312345****")],
)
def test_the_other_partys_number_is_masked_where_the_billing_country_requires_it(
    container: Container, country: str, currency: str, caller: str, destination: str
) -> None:
    org_id = _org(
        container,
        country=country,
        currency=currency,
        users=((ANN, country, ["MCOEV", "MCOPSTN_PAYG_2", "MCOPSTNPP"]),),
    )
    own = "+33987654321"
    _charge(
        container,
        org_id,
        [
            _cdr(
                "in",
                "2026-01-14T08:00:00+00:00",
                30,
                call_type="user_in",
                from_number="+4930123456",
                to=own,
            ),
            _cdr("out", "2026-01-14T09:00:00+00:00", 30, to="+33123456789", from_number=own),
        ],
    )
    reports = _reports(container)
    masked = reports.request("pstn", org_id, days=7)
    assert masked.masking is True
    rows = _csv(reports, masked)
    assert [(r[7], r[13]) for r in rows[1:]] == [(caller, own), (own, destination)]
    shown = reports.request("pstn", org_id, days=7, masking=False)
    rows = _csv(reports, shown)
    assert [(r[7], r[13]) for r in rows[1:]] == [("+4930123456", own), (own, "+33123456789")]
    assert (
        json.loads(
            zipfile.ZipFile(io.BytesIO(b"".join(reports.export(masked, "zip").chunks))).read(
                "parameters.json"
            )
        )["masking"]
        is True
    )


def test_a_us_organization_sees_numbers_unmasked(container: Container) -> None:
    org_id = _org(container)
    _charge(container, org_id, [_cdr("c", "2026-01-14T08:00:00+00:00", 10)])
    reports = _reports(container)
    request = reports.request("pstn", org_id, days=7)
    assert request.masking is False
    assert _csv(reports, request)[1][13] == US_FIXED


# -- formats ---------------------------------------------------------------------------------


def test_the_xlsx_export_is_typed_with_a_frozen_header_and_an_autofilter(
    container: Container,
) -> None:
    org_id = _org(container)
    _charge(
        container,
        org_id,
        [
            _cdr("pool-call", "2026-01-14T08:00:00+00:00", 61),
            _cdr("paid-call", "2026-01-14T09:30:00+00:00", 125, to=FR_FIXED),
        ],
    )
    reports = _reports(container)
    export = reports.export(reports.request("pstn", org_id, days=7), "xlsx")
    assert export.file_name == "PSTN.calls.2026-01-15.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(b"".join(export.chunks)))
    sheet = book.worksheets[0]
    assert [cell.value for cell in sheet[1]] == R50_HEADER
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:V3"
    paid = {title: cell.value for title, cell in zip(R50_HEADER, sheet[3], strict=True)}
    assert paid["Call ID"] == "paid-call"
    assert paid["Start Time"] == datetime(2026, 1, 14, 9, 30)
    assert paid["End Time"] == datetime(2026, 1, 14, 9, 32, 5)
    assert paid["Duration Seconds"] == 125
    assert isinstance(paid["Duration Seconds"], int)
    assert paid["Charge"] == pytest.approx(0.08)
    assert isinstance(paid["Charge"], float)
    assert sheet["P3"].is_date
    assert sheet["S3"].data_type == "n"
    assert sheet["T3"].data_type == "n"
    assert sheet["B3"].data_type == "s"
    assert paid["Caller ID"] == ANN_NUMBER


def test_an_xlsx_beyond_the_sheet_row_limit_continues_on_a_second_sheet() -> None:
    rows = [
        (f"id-{n}",)
        + ("x",) * 14
        + ("2026-01-14T08:00:00Z", None, n, "0.10", "1.00", "USD", "MCOPSTNPP")
        for n in range(7)
    ]
    body = b"".join(xlsx_chunks(PSTN, [rows[:2], rows[2:]], sheet_rows=4))
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert book.sheetnames == ["PSTN usage", "PSTN usage (2)", "PSTN usage (3)"]
    seen = []
    for sheet in book.worksheets:
        assert [c.value for c in sheet[1]] == R50_HEADER
        assert sheet.freeze_panes == "A2"
        seen += [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert seen == [f"id-{n}" for n in range(7)]
    assert book.worksheets[0].max_row == 4


def test_the_zip_holds_the_csv_and_parameters_json(container: Container) -> None:
    org_id = _org(container)
    _charge(container, org_id, [_cdr("c1", "2026-01-14T08:00:00+00:00", 61)])
    reports = _reports(container)
    request = reports.request(
        "pstn", org_id, from_="2026-01-01", to="2026-01-14", capability="MCOPSTN1"
    )
    export = reports.export(request, "zip")
    assert (export.file_name, export.content_type) == (
        "PSTN.calls.2026-01-15.zip",
        "application/zip",
    )
    archive = zipfile.ZipFile(io.BytesIO(b"".join(export.chunks)))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["PSTN.calls.2026-01-15.csv", "parameters.json"]
    inner = archive.read("PSTN.calls.2026-01-15.csv")
    assert inner == b"".join(reports.export(request, "csv").chunks)
    parameters = json.loads(archive.read("parameters.json"))
    assert parameters["from"] == "2026-01-01"
    assert parameters["to"] == "2026-01-14"
    assert parameters["filters"] == {"user": None, "call_type": None, "capability": "MCOPSTN1"}
    assert parameters["report"] == "pstn"
    assert parameters["time_zone"] == "UTC"


def test_pages_follow_the_cursor_in_start_time_order_without_gaps(container: Container) -> None:
    org_id = _org(container)
    start = _at("2026-01-14T08:00:00+00:00")
    cdrs = [
        CdrRecord(
            f"c{n}", "user_out", ANN, ANN_NUMBER, US_FIXED, start + timedelta(minutes=n // 2), 10
        )
        for n in range(7)
    ]
    _charge(container, org_id, cdrs)
    reports = _reports(container)
    request = reports.request("pstn", org_id, days=7)
    seen: list[str] = []
    cursor = None
    while True:
        page = reports.page(request, limit=3, cursor=cursor)
        body = page.as_json()
        assert body["columns"] == R50_HEADER
        seen += [row["Call ID"] for row in body["rows"]]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == _ids(reports, request) == [f"c{n}" for n in range(7)]
    with pytest.raises(InvalidRequest):
        reports.page(request, cursor="garbage")


# -- SMS and pools ---------------------------------------------------------------------------


def test_the_sms_and_pools_reports(container: Container) -> None:
    org_id = _org(container)
    container.calls.sms(
        org_id,
        SmsRequest(
            "m1", ANN, "outbound", ANN_NUMBER, US_FIXED, 2, _at("2026-01-14T08:00:00+00:00")
        ),
    )
    _charge(container, org_id, [_cdr("c1", "2026-01-14T08:00:00+00:00", 61)])
    reports = _reports(container)
    sms = _csv(reports, reports.request("sms", org_id, days=7))
    assert sms[0] == [
        "UsageId",
        "Message ID",
        "Sent Time",
        "UPN",
        "User Display Name",
        "Direction",
        "Source Number",
        "Destination Number",
        "Units",
        "Charge",
        "Currency",
        "Capability",
        "Source Country",
        "Destination Country",
    ]
    row = dict(zip(sms[0], sms[1], strict=True))
    assert (row["Message ID"], row["Sent Time"], row["Direction"], row["Units"]) == (
        "m1",
        "2026-01-14T08:00:00Z",
        "Outbound",
        "2",
    )
    assert (row["Source Country"], row["Destination Country"], row["Currency"]) == (
        "US",
        "US",
        "USD",
    )
    assert list(reports.rows(reports.request("sms", org_id, days=7, call_type="inbound"))) == []

    pools = reports.request("pools", org_id)
    assert (pools.range.first_day.isoformat(), pools.range.last_day.isoformat()) == (
        "2026-01-01",
        "2026-01-15",
    )
    rows = {(r[2], r[4]): r for r in reports.rows(pools)}
    minutes = rows[("MCOPSTN1", "domestic")]
    assert minutes[0] == "2026-01"
    assert minutes[1] == "US"
    # Two US users on MCOPSTN1: 3000 minutes each; the 61-second call used 2.
    assert minutes[7:] == (6000, 2, 5998, "0.0")
    assert [
        r[2] for r in reports.rows(reports.request("pools", org_id, capability="MCOPSTN1"))
    ] == ["MCOPSTN1"]
    with pytest.raises(InvalidRequest):
        reports.request("pools", org_id, user=ANN)


# -- the CSV export's fast path ----------------------------------------------------------------


def _raw_call(
    org_id: str, call_id: str, start: datetime, currency: str, values: dict[str, Any]
) -> dict[str, Any]:
    """A call row written straight to the table: data the services would never produce."""
    row: dict[str, Any] = {
        "org_id": org_id,
        "call_id": call_id,
        "call_type": "user_out",
        "user_id": "usr_1",
        "upn": ANN,
        "display_name": "Ann",
        "user_location": "DE",
        "from_number": "+4930123456",
        "to_number": "+33142685300",
        "conference_id": None,
        "status": "ended",
        "decision": "allow",
        "funding": "credits",
        "capability": "MCOPSTNPP",
        "external_country": "FR",
        "number_type": "fixed",
        "domestic": False,
        "currency": currency,
        "charge_micros": 80_000,
        "connection_fee_micros": 0,
        "start_time": start,
        "end_time": start + timedelta(seconds=125),
        "duration_seconds": 125,
        "source": "cdr",
    }
    row.update(values)
    return row


def _store_lines(container: Container, org_id: str, every: int = 1) -> int:
    """Give every ``every``-th of the organization's calls the report line a call is stored
    with when it ends (the raw rows above have none, as calls ended before lines were
    stored); the rest keep none. Returns how many got one."""
    with container.store.engine.begin() as conn:
        ids = conn.execute(
            select(calls_table.c.call_id)
            .where(calls_table.c.org_id == org_id)
            .order_by(calls_table.c.start_time)
        ).scalars()
        chosen = list(ids)[::every]
        records = CallRepository(conn).get_many(org_id, chosen)
        for record in records.values():
            line, mask_at = pstn_line(record) or (None, None)
            conn.execute(
                update(calls_table)
                .where(calls_table.c.org_id == org_id, calls_table.c.call_id == record.call_id)
                .values(report_line=line, report_mask_at=mask_at)
            )
    return len(chosen)


AWKWARD_CALLS: list[dict[str, Any]] = [
    {"display_name": 'Doe, "Ann"', "conference_id": "line\nbreak", "upn": "a\r@b.c"},
    {"charge_micros": 75_000, "connection_fee_micros": 1},
    {"charge_micros": 12_345_678_901, "connection_fee_micros": -5_000},
    {"end_time": None, "duration_seconds": None, "capability": None, "domestic": None},
    {"external_country": None, "number_type": None, "user_id": None, "upn": None},
    {"external_country": "KR", "display_name": "Zoë Ünal 山田"},
    {"external_country": "ZZ", "call_type": "user_in", "from_number": "anonymous"},
    {"call_type": "user_in", "from_number": "+49 30 12-3"},
    {"call_type": "conf_in", "from_number": "+4930１２３４５"},
    {"to_number": "112", "call_type": "emergency_out"},
    {"to_number": "+33 1 42 68 53 00"},
    {"display_name": "unit\x1fseparator", "call_id": "id\x1eodd"},
    {"currency": "USD", "charge_micros": 10_000},
    {"call_id": "quoted,id", "conference_id": '"conf"'},
]


@pytest.mark.parametrize("stored_every", [0, 1, 2], ids=["formatted", "stored", "mixed"])
@pytest.mark.parametrize(("country", "currency"), [("DE", "EUR"), ("FR", "EUR"), ("BH", "BHD")])
def test_the_csv_export_writes_the_same_bytes_as_the_rows_a_page_shows(
    container: Container, country: str, currency: str, stored_every: int
) -> None:
    """The fast path reads the line stored when a call ended, or formats it in the database
    for calls ended before lines were stored; whatever the data, its bytes are those of
    csv.writer over the rows shaped in Python (R-50, R-52), masked or not."""
    org = container.orgs.create(NewOrganization("Awkward", country, currency, "prepaid"))
    start = datetime(2026, 1, 14, 8, tzinfo=UTC)
    rows = [
        _raw_call(org.id, f"c{n:02d}", start + timedelta(minutes=n), currency, values)
        for n, values in enumerate(AWKWARD_CALLS)
    ] + [
        _raw_call(org.id, f"plain{n:02d}", start + timedelta(hours=1, seconds=n), currency, {})
        for n in range(7)
    ]
    with container.store.engine.begin() as conn:
        conn.execute(insert(calls_table), rows)
    if stored_every:
        assert _store_lines(container, org.id, stored_every) == len(rows[::stored_every])
    reports = _reports(container)
    for masking in (True, False):
        request = reports.request("pstn", org.id, days=7, masking=masking)
        fast = b"".join(reports.export(request, "csv").chunks)
        shaped = b"".join(csv_chunks(PSTN, reports.batches(request)))
        assert fast == shaped
        assert len(list(csv.reader(io.StringIO(fast.decode(), newline="")))) == len(rows) + 1
        archive = zipfile.ZipFile(io.BytesIO(b"".join(reports.export(request, "zip").chunks)))
        assert archive.read(request.file_name("csv")) == fast


# -- the organization's masking setting --------------------------------------------------------


def test_the_operator_switches_masking_per_organization_and_back_to_the_country_default(
    container: Container,
) -> None:
    from commcredits.services.orgs import OrganizationChanges

    start = datetime(2026, 1, 14, 8, tzinfo=UTC)
    german = container.orgs.create(NewOrganization("Fabrikam", "DE", "EUR", "prepaid"))
    american = container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid"))
    with container.store.engine.begin() as conn:
        conn.execute(
            insert(calls_table),
            [
                _raw_call(german.id, "de", start, "EUR", {}),
                _raw_call(american.id, "us", start, "USD", {}),
            ],
        )
    reports = _reports(container)

    def destination(org_id: str) -> str:
        request = reports.request("pstn", org_id, days=7)
        rows = _csv(reports, request)
        assert [row[13] for row in rows[1:]] == [page[13] for page in reports.rows(request)]
        return rows[1][13]

    assert destination(german.id) == "+33142685***"
    assert destination(american.id) == "+33142685300"
    container.orgs.update(german.id, OrganizationChanges(mask_numbers="off"))
    container.orgs.update(american.id, OrganizationChanges(mask_numbers="on"))
    assert container.orgs.mask_numbers([german.id, american.id]) == {
        german.id: False,
        american.id: True,
    }
    assert destination(german.id) == "+33142685300"
    # Switched on where no rule sets the count: the last four digits (our choice).
    assert destination(american.id) == "+3314268****"
    on = reports.request("pstn", american.id, days=7)
    assert (on.parameters()["masking"], on.parameters()["masked_digits"]) == (True, 4)
    # Another change leaves the setting alone; "default" goes back to the country's rule.
    container.orgs.update(german.id, OrganizationChanges(name="Fabrikam GmbH"))
    assert destination(german.id) == "+33142685300"
    container.orgs.update(german.id, OrganizationChanges(mask_numbers="default"))
    assert container.orgs.mask_numbers([german.id]) == {german.id: None}
    assert destination(german.id) == "+33142685***"
    # A request may still override the setting.
    shown = reports.request("pstn", german.id, days=7, masking=False)
    assert _csv(reports, shown)[1][13] == "+33142685300"


def test_every_country_is_named_in_the_csv_as_a_page_names_it(container: Container) -> None:
    """The CSV export names the other party's country in SQL (R-50 Destination Dialed): the
    same English name as a page shows for every code, the code itself for an unknown one."""
    from commcredits.services.reports import _known_countries

    org = container.orgs.create(NewOrganization("Atlas", "US", "USD", "prepaid"))
    start = datetime(2026, 1, 14, 8, tzinfo=UTC)
    codes = [code for code, _ in _known_countries()] + ["ZZ", "de", "A", ""]
    rows = [
        _raw_call(org.id, f"c{n:03d}", start + timedelta(seconds=n), "USD", {"external_country": c})
        for n, c in enumerate(codes)
    ]
    with container.store.engine.begin() as conn:
        conn.execute(insert(calls_table), rows)
    reports = _reports(container)
    request = reports.request("pstn", org.id, days=7)
    exported = _csv(reports, request)[1:]
    assert [row[12] for row in exported] == [row[12] for row in reports.rows(request)]
    assert exported[codes.index("DE")][12] == "Germany"
    assert exported[codes.index("ZZ")][12] == "ZZ"
    assert len(exported) == len(codes) > 240


@pytest.mark.parametrize("stored_every", [0, 1, 2], ids=["formatted", "stored", "mixed"])
def test_the_xlsx_export_holds_the_rows_a_page_shows_typed_whatever_the_data(
    container: Container, stored_every: int
) -> None:
    """Awkward text (quotes, line breaks, separators, non-ASCII) reads back from the .xlsx as
    the page shows it; money and durations are numbers, times dates (R-52)."""
    org = container.orgs.create(NewOrganization("Awkward", "DE", "EUR", "prepaid"))
    start = datetime(2026, 1, 14, 8, tzinfo=UTC)
    rows = [
        _raw_call(org.id, f"c{n:02d}", start + timedelta(minutes=n), "EUR", values)
        for n, values in enumerate(AWKWARD_CALLS)
    ]
    with container.store.engine.begin() as conn:
        conn.execute(insert(calls_table), rows)
    if stored_every:
        _store_lines(container, org.id, stored_every)
    reports = _reports(container)
    request = reports.request("pstn", org.id, days=7)
    book = openpyxl.load_workbook(io.BytesIO(b"".join(reports.export(request, "xlsx").chunks)))
    read = list(book.worksheets[0].iter_rows(min_row=2, values_only=True))
    shown = list(reports.rows(request))
    assert len(read) == len(shown) == len(AWKWARD_CALLS)
    for got, page in zip(read, shown, strict=True):
        for kind, cell, value in zip(PSTN.kinds, got, page, strict=True):
            if value is None or value == "":
                assert cell is None
            elif kind == "time":
                assert cell == datetime.fromisoformat(value.replace("Z", "")), value
            elif kind == "money":
                assert cell == float(value)
            elif kind == "int":
                assert cell == value
            else:
                # Excel's own escape for what XML cannot hold (CR and control characters).
                assert re.sub(r"_x([0-9A-F]{4})_", lambda m: chr(int(m[1], 16)), cell) == value
