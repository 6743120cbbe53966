"""Usage reports (PSTN, SMS, minute pools) with a range picker, filters, a chart above the
table and Export to Excel (R-50..R-54); notifications and the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Final
from urllib.parse import urlencode

import anyio.to_thread
from litestar import get
from litestar.params import FromPath, FromQuery
from litestar.response import Response, Stream

from commcredits.api.support import blocking
from commcredits.console.web import AnyRequest, page_context
from commcredits.domain.errors import CommcreditsError, NotFound
from commcredits.domain.licensing import CALL_TYPES
from commcredits.services.reports import ReportRequest, Reports

REPORTS: Final = {"pstn": "PSTN usage", "sms": "SMS usage", "pools": "Minute pools"}
ROWS_PER_PAGE: Final = 100
_DONE: Any = object()


def _reports(container: Any) -> Reports:
    return Reports(container.store, container.clock, container.calls)


def _query(
    days: str | None,
    from_date: str | None,
    to_date: str | None,
    user: str | None,
    call_type: str | None,
    capability: str | None,
) -> dict[str, str]:
    """The chosen range and filters, as the page's links and forms carry them."""
    values = {
        "days": days or "",
        "from_date": from_date or "",
        "to_date": to_date or "",
        "user": (user or "").strip(),
        "call_type": call_type or "",
        "capability": (capability or "").strip(),
    }
    if values["days"] not in ("7", "28", "custom", ""):
        values["days"] = ""
    return values


async def _request(report: str, org: str, reports: Reports, query: dict[str, str]) -> ReportRequest:
    custom = query["days"] == "custom"
    days = int(query["days"]) if query["days"] in ("7", "28") else None
    return await blocking(
        reports.request,
        report,
        org,
        days=days,
        from_=query["from_date"] or None if custom else None,
        to=query["to_date"] or None if custom else None,
        user=query["user"] or None if report != "pools" else None,
        call_type=query["call_type"] or None if report == "pstn" else None,
        capability=query["capability"] or None,
    )


@get("/orgs/{org:str}/reports/{report:str}")
async def report_page(
    request: AnyRequest,
    org: FromPath[str],
    report: FromPath[str],
    days: FromQuery[str | None] = None,
    from_date: FromQuery[str | None] = None,
    to_date: FromQuery[str | None] = None,
    user: FromQuery[str | None] = None,
    call_type: FromQuery[str | None] = None,
    capability: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[Any]:
    if report not in REPORTS:
        raise NotFound("no such report", code="report_not_found")
    page = await page_context(request, org, "reports")
    query = _query(days, from_date, to_date, user, call_type, capability)
    if query["days"] == "" and report != "pools":
        query["days"] = "7"  # the console opens on the last week
    reports = _reports(page.container)
    error = None
    table = None
    chart_query = ""
    try:
        asked = await _request(report, org, reports, query)
        table = await blocking(reports.page, asked, limit=ROWS_PER_PAGE, cursor=cursor or None)
        if report == "pools":
            months = asked.range.months()
            chart_query = urlencode({"month": months[-1]}) if months else ""
        else:
            chart_query = urlencode(
                {
                    "from_date": asked.range.first_day.isoformat(),
                    "to_date": asked.range.last_day.isoformat(),
                }
            )
    except CommcreditsError as exc:
        error = exc.message
    return page.render(
        "reports.html",
        status_code=422 if error else 200,
        title=REPORTS[report],
        nav=f"reports-{report}",
        report=report,
        reports=REPORTS,
        query=query,
        query_string=urlencode({k: v for k, v in query.items() if v}),
        table=table,
        error=error,
        chart_name="pools" if report == "pools" else "daily-spend",
        chart_query=chart_query,
        call_types=sorted(CALL_TYPES),
    )


async def _stream(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunks, _DONE)
            if chunk is _DONE:
                return
            if chunk:
                yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            await anyio.to_thread.run_sync(close)


@get("/orgs/{org:str}/reports/{report:str}/export.xlsx")
async def export(
    request: AnyRequest,
    org: FromPath[str],
    report: FromPath[str],
    days: FromQuery[str | None] = None,
    from_date: FromQuery[str | None] = None,
    to_date: FromQuery[str | None] = None,
    user: FromQuery[str | None] = None,
    call_type: FromQuery[str | None] = None,
    capability: FromQuery[str | None] = None,
) -> Stream:
    if report not in REPORTS:
        raise NotFound("no such report", code="report_not_found")
    page = await page_context(request, org, "reports")
    reports = _reports(page.container)
    asked = await _request(
        report, org, reports, _query(days, from_date, to_date, user, call_type, capability)
    )
    exported = reports.export(asked, "xlsx")
    return Stream(
        _stream(exported.chunks),
        media_type=exported.content_type,
        headers={"Content-Disposition": f'attachment; filename="{exported.file_name}"'},
    )


@get("/orgs/{org:str}/notifications")
async def notifications(request: AnyRequest, org: FromPath[str]) -> Response[Any]:
    page = await page_context(request, org, "credits")
    messages = await blocking(page.container.mailer.list_for_org, org, limit=200)
    return page.render(
        "notifications.html", title="Notifications", nav="notifications", messages=messages
    )


@get("/orgs/{org:str}/audit")
async def audit(
    request: AnyRequest, org: FromPath[str], before: FromQuery[str | None] = None
) -> Response[Any]:
    page = await page_context(request, org, "admins")
    entries = await blocking(page.container.directory.audit, org, limit=101, before=before or None)
    more = len(entries) > 100
    entries = entries[:100]
    return page.render(
        "audit.html",
        title="Audit log",
        nav="audit",
        entries=entries,
        next_before=entries[-1].id if more else None,
    )


handlers = [report_page, export, notifications, audit]
