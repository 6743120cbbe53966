"""The call-control fast path: authorize, usage and end answered without Litestar's
per-request layers.

A telephony edge sends thousands of these small requests a second, and most of their cost on
the event loop was the framework around them (the request object, the guard's copy of the
handler, decoding the body twice, the signature model, the response object), not the call
itself. This middleware runs after routing, for the handlers marked ``call_control``, and
answers a request itself when everything about it is ordinary:

* the bearer token was verified moments ago (see :func:`commcredits.api.auth.known_principal`)
  and its key may write this area of this organization;
* the body is ``application/json``, within the size limit, and decodes strictly into the
  route's body type, exactly as :func:`commcredits.api.strict.check_body` requires.

It then runs the route's own coroutine (the same one the Litestar handler runs) and writes its
answer, or the contract's error body for a refusal, byte for byte as Litestar would. Anything
else (an unknown or stale token, a refused role, a malformed or oversized body, an unexpected
content type) goes on to the full Litestar route, body included, which gives the contract's
answer for it; so the fast path changes how quickly a request is answered, never what the
answer is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from commcredits.api.auth import bearer_of, known_principal, may
from commcredits.api.errors import error_body, status_of
from commcredits.domain.errors import CommcreditsError
from commcredits.domain.roles import Area

if TYPE_CHECKING:
    from commcredits.app import Container
    from commcredits.services.calls import Calls

_ENCODER = msgspec.json.Encoder()
_JSON = b"application/json"


@dataclass(frozen=True, slots=True)
class FastRoute:
    """One call-control route as the fast path serves it."""

    body: type[msgspec.Struct]
    status: int
    run: Callable[[Calls, dict[str, Any], Any], Awaitable[msgspec.Struct]]
    """The route's coroutine: the calls service, the path parameters and the decoded body."""


def call_control_fast_path(
    routes: Mapping[str, FastRoute], *, max_body: int
) -> Callable[[ASGIApp], ASGIApp]:
    """Litestar middleware (see the module docstring) serving ``routes``."""

    def middleware_factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            handler = scope.get("route_handler") if scope["type"] == ScopeType.HTTP else None
            route = routes.get(handler.opt.get("call_control", "")) if handler else None
            if route is None or scope.get("method") != "POST":
                await app(scope, receive, send)
                return
            container = cast("Container", scope["litestar_app"].state.container)
            area = cast(Area, handler.opt["area"])  # type: ignore[union-attr]
            data, replay = await _admitted(scope, receive, container, area, route, max_body)
            if data is None:
                await app(scope, replay or receive, send)
                return
            try:
                answer = await route.run(container.calls, scope["path_params"], data)
            except CommcreditsError as exc:
                body = _ENCODER.encode(error_body(exc.code, exc.message, exc.field, exc.details))
                await _respond(send, status_of(exc), body)
                return
            await _respond(send, route.status, _ENCODER.encode(answer))

        return middleware

    return middleware_factory


async def _admitted(
    scope: Scope,
    receive: Receive,
    container: Container,
    area: Area,
    route: FastRoute,
    max_body: int,
) -> tuple[Any, Receive | None]:
    """The decoded body when the fast path may answer; otherwise None and, once the body has
    been read, a ``receive`` that hands it to the full route again."""
    token = None
    content_type = b""
    declared = -1
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            declared = int(value) if value.isdigit() else max_body + 1
        elif name == b"authorization":
            token = bearer_of(((name, value),))
    if declared > max_body or content_type.partition(b";")[0].strip().lower() != _JSON:
        return None, None
    principal = known_principal(container.keys, token)
    if principal is None or not may(principal, scope["path_params"].get("org"), area, "write"):
        return None, None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, _replaying(chunks, True, receive, message)
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = message.get("more_body", False)
        if size > max_body:
            return None, _replaying(chunks, more, receive)
        if not more:
            break
    body = b"".join(chunks)
    try:
        data = msgspec.json.decode(body, type=route.body, strict=True) if body else None
    except (msgspec.ValidationError, msgspec.DecodeError):
        data = None
    if data is None:
        return None, _replaying(chunks, False, receive)
    scope.setdefault("state", {})["principal"] = principal  # for the access log, as the guard
    return data, None


def _replaying(chunks: list[bytes], more: bool, receive: Receive, pending: Any = None) -> Receive:
    """``receive`` for the full route: what was read already, then the rest as it comes."""
    queued: list[Any] = [{"type": "http.request", "body": b"".join(chunks), "more_body": more}]
    if pending is not None:
        queued.append(pending)

    async def again() -> Any:
        if queued:
            return queued.pop(0)
        return await receive()

    return cast(Receive, again)


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", _JSON),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
