"""HTTP: charts of an organization's spend, balance, pools and destinations (docs/charts.md).

``format=json`` answers the chart's data (amounts as decimal strings); ``png`` and ``svg``
answer the drawn chart. Ranges are asked as for the reports: ``days`` (7 or 28) or
``from``/``to``; the pools chart is of one ``month``.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, Router, get
from litestar.params import FromPath, Parameter, QueryParameter

from commcredits.api.support import blocking, container_of
from commcredits.domain.errors import InvalidRequest
from commcredits.services.charts import CONTENT_TYPES, Charts

AnyRequest = Request[Any, Any, Any]

Days = Annotated[
    int | None, QueryParameter(description="7 or 28: the last N UTC days, today included")
]
From = Annotated[
    str | None, QueryParameter(name="from", description="first day, YYYY-MM-DD (UTC), inclusive")
]
To = Annotated[str | None, QueryParameter(description="last day, YYYY-MM-DD (UTC), inclusive")]
Month = Annotated[
    str | None, QueryParameter(description="pools chart only: YYYY-MM, this month by default")
]
Format = Annotated[str, QueryParameter(description="png, svg, or json for the data")]
Limit = Annotated[
    int, Parameter(ge=1, le=50, description="top-destinations only: how many countries")
]


@get(
    "/charts/{name:str}",
    opt={"area": "reports"},
    summary="A chart: daily-spend, balance, pools or top-destinations, as PNG, SVG or JSON",
)
async def chart(
    request: AnyRequest,
    org: FromPath[str],
    name: FromPath[str],
    format: Format = "png",
    days: Days = None,
    from_: From = None,
    to: To = None,
    month: Month = None,
    limit: Limit = 10,
) -> Response[Any]:
    if format not in ("json", *CONTENT_TYPES):
        raise InvalidRequest("format is png, svg or json", code="invalid_value", field="format")
    container = container_of(request)
    charts = Charts(container.store, container.clock, container.calls)
    data = await blocking(
        charts.chart, name, org, days=days, from_=from_, to=to, month=month, limit=limit
    )
    if format == "json":
        return Response(data.as_json())
    image = await blocking(charts.render, data, format)
    return Response(
        image,
        media_type=CONTENT_TYPES[format],
        headers={"Content-Disposition": f'inline; filename="{name}.{format}"'},
    )


router = Router(path="/v1/orgs/{org:str}", route_handlers=[chart], tags=["charts"])
