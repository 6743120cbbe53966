"""HTTP: call control, finished-call batches, messages and pools (API.md, "Usage").

Live call control (authorize, usage, end) awaits the call writer's future on the event loop:
no thread waits for the group commit. The same coroutines serve the Litestar routes and the
call-control fast path (:mod:`commcredits.api.call_control`, table :data:`CALL_CONTROL`), so
both answer exactly alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Annotated, Any, ParamSpec, TypeVar

from litestar import Request, Router, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from msgspec import Meta, Struct, field

from commcredits.api.call_control import FastRoute
from commcredits.api.replies import answer
from commcredits.api.schemas import Request as Body
from commcredits.api.schemas import UtcTime
from commcredits.api.support import blocking, container_of
from commcredits.domain.errors import NotFound
from commcredits.domain.money import Money
from commcredits.domain.usage import MAX_CALL_SECONDS, CallRecord
from commcredits.services.calls import CallRequest, Calls, CdrRecord, SmsRequest
from commcredits.services.calls_model import UnknownNumber

AnyRequest = Request[Any, Any, Any]
P = ParamSpec("P")
T = TypeVar("T")

_CALL_CONTROL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="commcredits-call-control")
"""Threads for the database reads of the telephony edge before a call reaches the writer
(which organization owns a number or a call). A pool of their own: a long export in the
shared pool never holds up a call."""


async def _off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking step of call control off the event loop, in the call-control threads."""
    return await asyncio.get_running_loop().run_in_executor(
        _CALL_CONTROL, partial(fn, *args, **kwargs)
    )


Number = Annotated[str, Meta(min_length=1, max_length=32)]
CallId = Annotated[str, Meta(min_length=1, max_length=255)]
CallType = Annotated[str, Meta(min_length=1, max_length=32)]


class NewCall(Body):
    call_id: CallId
    call_type: CallType
    from_: Number = field(name="from", default="")
    to: Number = ""
    user: Annotated[str, Meta(max_length=320)] | None = None
    conference_id: Annotated[str, Meta(max_length=255)] | None = None
    start_time: UtcTime | None = None


class Usage(Body):
    used_seconds: Annotated[int, Meta(ge=0, le=MAX_CALL_SECONDS)]


class EndCall(Body):
    duration_seconds: Annotated[int, Meta(ge=0, le=MAX_CALL_SECONDS)]
    end_time: UtcTime | None = None


class DecisionOut(Struct):
    call_id: str
    decision: str
    reason: str | None
    granted_seconds: int
    funding: str | None
    capability: str | None


class GrantOut(Struct):
    granted_seconds: int


class CallOut(Struct):
    call_id: str
    call_type: str
    status: str
    decision: str
    reason: str | None
    funding: str | None
    capability: str | None
    user: str | None
    from_: str = field(name="from")
    to: str
    start_time: datetime
    end_time: datetime | None
    duration_seconds: int | None
    pool_minutes: int
    charge: str
    connection_fee: str
    currency: str
    external_country: str | None
    number_type: str | None


def _call_out(record: CallRecord) -> CallOut:
    return CallOut(
        call_id=record.call_id,
        call_type=record.call_type,
        status=record.status,
        decision=record.decision,
        reason=record.reason,
        funding=record.funding,
        capability=record.capability,
        user=record.upn,
        from_=record.from_number,
        to=record.to_number,
        start_time=record.start_time,
        end_time=record.end_time,
        duration_seconds=record.duration_seconds,
        pool_minutes=record.pool_minutes,
        charge=Money(record.charge, record.currency).format(),
        connection_fee=Money(record.connection_fee_charged, record.currency).format(),
        currency=record.currency,
        external_country=record.external_country,
        number_type=record.number_type,
    )


def _decision_fields(record: CallRecord) -> dict[str, Any]:
    return {
        "call_id": record.call_id,
        "decision": record.decision,
        "reason": record.reason,
        "granted_seconds": record.granted_seconds if record.decision == "allow" else 0,
        "funding": record.funding,
        "capability": record.capability,
    }


def _decision(record: CallRecord) -> DecisionOut:
    return DecisionOut(**_decision_fields(record))


def _call_request(data: NewCall) -> CallRequest:
    return CallRequest(
        call_id=data.call_id,
        call_type=data.call_type,
        user=data.user,
        from_number=data.from_,
        to_number=data.to,
        conference_id=data.conference_id,
        start_time=data.start_time,
    )


async def _authorize(calls: Calls, org: str, data: NewCall) -> DecisionOut:
    request = _call_request(data)
    return _decision(await answer(lambda reply: calls.authorize_to(org, request, reply)))


async def _usage(calls: Calls, org: str, call_id: str, data: Usage) -> GrantOut:
    granted = await answer(lambda reply: calls.usage_to(org, call_id, data.used_seconds, reply))
    return GrantOut(granted_seconds=granted)


async def _end(calls: Calls, org: str, call_id: str, data: EndCall) -> CallOut:
    record = await answer(
        lambda reply: calls.end_to(org, call_id, data.duration_seconds, data.end_time, reply)
    )
    return _call_out(record)


@post(
    "/calls",
    opt={"area": "usage", "call_control": "authorize"},
    status_code=201,
    summary="Authorize a new call",
)
async def authorize(
    request: AnyRequest, org: FromPath[str], data: JSONBody[NewCall]
) -> DecisionOut:
    return await _authorize(container_of(request).calls, org, data)


@post(
    "/calls/{call_id:str}/usage",
    opt={"area": "usage", "call_control": "usage"},
    status_code=200,
    summary="Next slice",
)
async def usage(
    request: AnyRequest, org: FromPath[str], call_id: FromPath[str], data: JSONBody[Usage]
) -> GrantOut:
    return await _usage(container_of(request).calls, org, call_id, data)


@post(
    "/calls/{call_id:str}/end",
    opt={"area": "usage", "call_control": "end"},
    status_code=200,
    summary="End a call",
)
async def end(
    request: AnyRequest, org: FromPath[str], call_id: FromPath[str], data: JSONBody[EndCall]
) -> CallOut:
    return await _end(container_of(request).calls, org, call_id, data)


@get("/calls/{call_id:str}", opt={"area": "usage"}, summary="One call record")
async def get_call(request: AnyRequest, org: FromPath[str], call_id: FromPath[str]) -> CallOut:
    return _call_out(await blocking(container_of(request).calls.get, org, call_id))


class Cdr(Body):
    call_id: CallId
    call_type: CallType
    start_time: UtcTime
    duration_seconds: Annotated[int, Meta(ge=0, le=MAX_CALL_SECONDS)]
    from_: Number = field(name="from", default="")
    to: Number = ""
    user: Annotated[str, Meta(max_length=320)] | None = None
    conference_id: Annotated[str, Meta(max_length=255)] | None = None


class Cdrs(Body):
    records: Annotated[list[Cdr], Meta(max_length=100_000)]


class CdrResultOut(Struct):
    call_id: str
    status: str
    charge: str | None = None
    error: str | None = None


class CdrsOut(Struct):
    results: list[CdrResultOut]


@post("/cdrs", opt={"area": "usage"}, status_code=200, summary="Charge finished calls")
async def cdrs(request: AnyRequest, org: FromPath[str], data: JSONBody[Cdrs]) -> CdrsOut:
    container = container_of(request)
    results = await blocking(
        container.calls.import_cdrs,
        org,
        [
            CdrRecord(
                call_id=r.call_id,
                call_type=r.call_type,
                user=r.user,
                from_number=r.from_,
                to_number=r.to,
                start_time=r.start_time,
                duration_seconds=r.duration_seconds,
                conference_id=r.conference_id,
            )
            for r in data.records
        ],
    )
    currency = (await blocking(container.orgs.get, org)).currency
    return CdrsOut(
        results=[
            CdrResultOut(
                call_id=r.call_id,
                status=r.status,
                charge=Money(r.charge, currency).format() if r.charge is not None else None,
                error=r.error,
            )
            for r in results
        ]
    )


class NewSms(Body):
    sms_id: CallId
    direction: Annotated[str, Meta(max_length=8)]
    units: Annotated[int, Meta(ge=1, le=1000)]
    from_: Number = field(name="from", default="")
    to: Number = ""
    user: Annotated[str, Meta(max_length=320)] | None = None
    sent_at: UtcTime | None = None


class SmsOut(Struct):
    sms_id: str
    decision: str
    reason: str | None
    funding: str | None
    capability: str | None
    charge: str
    currency: str


@post("/sms", opt={"area": "usage"}, status_code=201, summary="Send or receive a message")
async def sms(request: AnyRequest, org: FromPath[str], data: JSONBody[NewSms]) -> SmsOut:
    record = await blocking(
        container_of(request).calls.sms,
        org,
        SmsRequest(
            data.sms_id, data.user, data.direction, data.from_, data.to, data.units, data.sent_at
        ),
    )
    return SmsOut(
        sms_id=record.sms_id,
        decision=record.decision,
        reason=record.reason,
        funding=record.funding,
        capability=record.capability,
        charge=Money(record.charge, record.currency).format(),
        currency=record.currency,
    )


class PoolOut(Struct):
    country: str | None
    capability: str
    kind: str
    user_id: str | None
    description: str
    total_minutes: int
    used_minutes: int
    available_minutes: int
    percent_used: str


@get("/pools", opt={"area": "usage"}, summary="Minute and message pools of a month (R-54)")
async def pools(
    request: AnyRequest, org: FromPath[str], month: FromQuery[str | None] = None
) -> list[PoolOut]:
    container = container_of(request)
    found = await blocking(container.calls.pools, org, month)
    out = []
    for key, total, used in found:
        name = (
            container.catalogue.sku(key.capability).name
            if key.capability in container.catalogue.skus
            else key.capability
        )
        percent = f"{(used * 100 / total):.1f}" if total else ("100.0" if used else "0.0")
        out.append(
            PoolOut(
                country=key.country,
                capability=key.capability,
                kind=key.kind,
                user_id=key.user_id,
                description=f"{name}, {key.kind}" + (f", {key.country}" if key.country else ""),
                total_minutes=total,
                used_minutes=used,
                available_minutes=max(total - used, 0),
                percent_used=percent,
            )
        )
    return out


class EdgeDecisionOut(DecisionOut):
    org: str | None = None


class EdgeCall(NewCall):
    pass


class EdgeUsage(Usage):
    org: Annotated[str, Meta(max_length=40)] | None = None


class EdgeEnd(EndCall):
    org: Annotated[str, Meta(max_length=40)] | None = None


async def _edge_authorize(calls: Calls, data: EdgeCall) -> EdgeDecisionOut:
    request = _call_request(data)
    try:
        record = await answer(lambda reply: calls.authorize_routed_to(request, reply))
    except UnknownNumber:
        return EdgeDecisionOut(
            call_id=data.call_id,
            decision="deny",
            reason="unknown_number",
            granted_seconds=0,
            funding=None,
            capability=None,
            org=None,
        )
    return EdgeDecisionOut(**_decision_fields(record), org=record.org_id)


async def _edge_org(calls: Calls, call_id: str, org: str | None) -> str:
    """The organization of a call the edge authorized: given, or found from the call id."""
    if org:
        return org
    found = await _off_loop(calls.org_of_call, call_id)
    if found is None:
        raise NotFound(f"no call {call_id!r}", code="call_not_found")
    return found


async def _edge_usage(calls: Calls, call_id: str, data: EdgeUsage) -> GrantOut:
    return await _usage(calls, await _edge_org(calls, call_id, data.org), call_id, data)


async def _edge_end(calls: Calls, call_id: str, data: EdgeEnd) -> CallOut:
    return await _end(calls, await _edge_org(calls, call_id, data.org), call_id, data)


@post(
    "/calls",
    opt={"area": "platform_calls", "call_control": "edge_authorize"},
    status_code=201,
    summary="Authorize a call for whichever organization owns its number (telephony edge)",
)
async def edge_authorize(request: AnyRequest, data: JSONBody[EdgeCall]) -> EdgeDecisionOut:
    return await _edge_authorize(container_of(request).calls, data)


@post(
    "/calls/{call_id:str}/usage",
    opt={"area": "platform_calls", "call_control": "edge_usage"},
    status_code=200,
    summary="Next slice (edge)",
)
async def edge_usage(
    request: AnyRequest, call_id: FromPath[str], data: JSONBody[EdgeUsage]
) -> GrantOut:
    return await _edge_usage(container_of(request).calls, call_id, data)


@post(
    "/calls/{call_id:str}/end",
    opt={"area": "platform_calls", "call_control": "edge_end"},
    status_code=200,
    summary="End a call (edge)",
)
async def edge_end(request: AnyRequest, call_id: FromPath[str], data: JSONBody[EdgeEnd]) -> CallOut:
    return await _edge_end(container_of(request).calls, call_id, data)


CALL_CONTROL: dict[str, FastRoute] = {
    "authorize": FastRoute(
        NewCall, 201, lambda calls, path, data: _authorize(calls, path["org"], data)
    ),
    "usage": FastRoute(
        Usage, 200, lambda calls, path, data: _usage(calls, path["org"], path["call_id"], data)
    ),
    "end": FastRoute(
        EndCall, 200, lambda calls, path, data: _end(calls, path["org"], path["call_id"], data)
    ),
    "edge_authorize": FastRoute(EdgeCall, 201, lambda calls, _, data: _edge_authorize(calls, data)),
    "edge_usage": FastRoute(
        EdgeUsage, 200, lambda calls, path, data: _edge_usage(calls, path["call_id"], data)
    ),
    "edge_end": FastRoute(
        EdgeEnd, 200, lambda calls, path, data: _edge_end(calls, path["call_id"], data)
    ),
}
"""The call-control routes the fast path serves, by their handlers' ``call_control`` option:
the body each takes, its status, and the coroutine that answers it (the routes' own)."""


@get("/_noop", include_in_schema=False, status_code=204, sync_to_thread=False)
def noop() -> None:
    """Does nothing and says nothing: the baseline the call-control figures are measured
    against (same app, same server, same middleware; public because it reveals nothing)."""


edge_router = Router(
    path="/v1",
    route_handlers=[edge_authorize, edge_usage, edge_end, noop],
    tags=["telephony edge"],
)

router = Router(
    path="/v1/orgs/{org:str}",
    route_handlers=[authorize, usage, end, get_call, cdrs, sms, pools],
    tags=["usage"],
)
