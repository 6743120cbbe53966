"""HTTP: usage reports (API.md, "Rates and reports"; R-50..R-54).

``format=json`` answers one page (``limit``, ``cursor``); ``csv``, ``xlsx`` and ``zip`` stream
the whole range as a download. The request is checked before the first byte is sent, so a
refused range is a plain 4xx answer rather than a broken download.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio.to_thread
from litestar import Request, Response, Router, get
from litestar.params import FromPath, FromQuery, Parameter, QueryParameter
from litestar.response import Stream

from commcredits.api.auth import principal_of
from commcredits.api.support import blocking, container_of
from commcredits.domain.errors import Forbidden, InvalidRequest
from commcredits.services.reports import ReportRequest, Reports

AnyRequest = Request[Any, Any, Any]
Limit = Annotated[int, Parameter(ge=1, le=1000)]
_DONE: Any = object()
"""The end of an export (an empty chunk is not the end)."""


def _reports(request: AnyRequest) -> Reports:
    container = container_of(request)
    return Reports(container.store, container.clock, container.calls)


async def _stream(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Each chunk is produced off the event loop; the export (and its database connection)
    is closed when the download ends, finishes or is abandoned."""
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


async def _answer(
    request: AnyRequest,
    report: str,
    org: str,
    *,
    days: int | None,
    from_: str | None,
    to: str | None,
    user: str | None,
    call_type: str | None,
    capability: str | None,
    masking: bool | None,
    fmt: str,
    limit: int,
    cursor: str | None,
) -> Response[Any] | Stream:
    if masking is not None and principal_of(request).role != "operator":
        raise Forbidden("only the operator may switch number masking", code="forbidden")
    if fmt not in ("json", "csv", "xlsx", "zip"):
        raise InvalidRequest(
            "format is json, csv, xlsx or zip", code="invalid_value", field="format"
        )
    reports = _reports(request)
    asked: ReportRequest = await blocking(
        reports.request,
        report,
        org,
        days=days,
        from_=from_,
        to=to,
        user=user,
        call_type=call_type,
        capability=capability,
        masking=masking,
    )
    if fmt == "json":
        page = await blocking(reports.page, asked, limit=limit, cursor=cursor)
        return Response(page.as_json())
    export = reports.export(asked, fmt)
    return Stream(
        _stream(export.chunks),
        media_type=export.content_type,
        headers={"Content-Disposition": f'attachment; filename="{export.file_name}"'},
    )


Days = Annotated[
    int | None, QueryParameter(description="7 or 28: the last N UTC days, today included")
]
From = Annotated[
    str | None, QueryParameter(name="from", description="first day, YYYY-MM-DD (UTC), inclusive")
]
To = Annotated[str | None, QueryParameter(description="last day, YYYY-MM-DD (UTC), inclusive")]
Format = Annotated[str, QueryParameter(description="json (one page), csv, xlsx or zip")]
Masking = Annotated[
    bool | None,
    QueryParameter(description="operator only: show or mask the other party's number"),
]


def _handler(report: str, summary: str) -> Any:
    @get(f"/reports/{report}", opt={"area": "reports"}, summary=summary, name=f"report_{report}")
    async def handler(
        request: AnyRequest,
        org: FromPath[str],
        days: Days = None,
        from_: From = None,
        to: To = None,
        user: FromQuery[str | None] = None,
        call_type: FromQuery[str | None] = None,
        capability: FromQuery[str | None] = None,
        masking: Masking = None,
        format: Format = "json",
        limit: Limit = 100,
        cursor: FromQuery[str | None] = None,
    ) -> Response[Any] | Stream:
        return await _answer(
            request,
            report,
            org,
            days=days,
            from_=from_,
            to=to,
            user=user,
            call_type=call_type,
            capability=capability,
            masking=masking,
            fmt=format,
            limit=limit,
            cursor=cursor,
        )

    return handler


pstn = _handler("pstn", "PSTN usage: one row per ended call (R-50, R-52)")
sms = _handler("sms", "SMS usage: one row per message sent (R-53)")
pools = _handler("pools", "Minute and message pools per month, country and capability (R-54)")

router = Router(path="/v1/orgs/{org:str}", route_handlers=[pstn, sms, pools], tags=["reports"])
