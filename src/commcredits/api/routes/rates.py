"""HTTP: rate tables and quotes (API.md, "Rates and reports")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, Router, get, put
from litestar.params import FromQuery, Parameter
from msgspec import Struct

from commcredits.api.support import blocking, container_of
from commcredits.domain.errors import InvalidRequest
from commcredits.domain.money import Money, plain

AnyRequest = Request[Any, Any, Any]
MAX_TABLE_BYTES = 64 * 1024 * 1024
SERVICE_ALIASES = {"sms": "sms_out"}


class LoadedOut(Struct):
    rates_loaded: int
    table_id: str
    name: str
    loaded_at: datetime


class MatchedRow(Struct):
    line: int
    service: str
    prefix: str
    country: str
    number_type: str
    description: str
    effective_from: str | None
    effective_to: str | None


class QuoteOut(Struct):
    to: str
    country: str
    number_type: str
    service: str
    rate: str
    connection_fee: str
    first_increment: int
    increment: int
    billed_seconds: int
    units: int
    charge: str
    currency: str
    table_id: str
    matched: MatchedRow


@put(
    "/rates",
    opt={"area": "platform", "body_media_type": "text/csv"},
    status_code=200,
    request_max_body_size=MAX_TABLE_BYTES,
    summary="Load a rate table (CSV body); refused whole with every bad row listed",
)
async def load_rates(request: AnyRequest) -> LoadedOut:
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("the rate table must be UTF-8 text", code="invalid_encoding") from None
    name = request.headers.get("x-rate-table-name", "rates.csv")
    loaded = await blocking(container_of(request).rating.load, text, name)
    return LoadedOut(
        rates_loaded=loaded.rows, table_id=loaded.id, name=loaded.name, loaded_at=loaded.loaded_at
    )


@get("/rates/quote", opt={"area": "rates"}, summary="Price a call or message to a number")
async def quote(
    request: AnyRequest,
    to: FromQuery[str],
    service: FromQuery[str] = "outbound",
    duration: Annotated[
        int, Parameter(ge=0, le=86_400 * 7, description="seconds (SMS: segments)")
    ] = 60,
    at: Annotated[datetime | None, Parameter(description="RFC 3339; default now")] = None,
    currency: FromQuery[str | None] = None,
) -> QuoteOut:
    if at is not None and at.tzinfo is None:
        raise InvalidRequest("at needs an offset, e.g. 2026-11-27T10:00:00Z", field="at")
    service = SERVICE_ALIASES.get(service, service)
    table_id, destination, charge = await blocking(
        container_of(request).rating.quote, to, service, duration, at, currency
    )
    rate = charge.rate
    is_call = service not in {"sms_out", "sms_in"}
    return QuoteOut(
        to=destination.e164,
        country=destination.country,
        number_type=destination.number_type,
        service=service,
        rate=plain(rate.rate),
        connection_fee=Money(rate.connection_fee, rate.currency).format_exact(),
        first_increment=rate.first_increment,
        increment=rate.increment,
        billed_seconds=charge.units if is_call else 0,
        units=charge.units,
        charge=Money(charge.charge, rate.currency).format(),
        currency=rate.currency,
        table_id=table_id,
        matched=MatchedRow(
            line=rate.line,
            service=rate.service,
            prefix=rate.prefix,
            country=rate.country,
            number_type=rate.number_type,
            description=rate.description,
            effective_from=rate.effective_from.isoformat() if rate.effective_from else None,
            effective_to=rate.effective_to.isoformat() if rate.effective_to else None,
        ),
    )


router = Router(path="/v1", route_handlers=[load_rates, quote], tags=["rates"])
