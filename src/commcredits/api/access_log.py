"""One structured log line per request: method, path, status, latency, organization, key."""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("commcredits.access")
_LINE = msgspec.json.Encoder()


def access_log(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            if log.isEnabledFor(logging.INFO):
                state: dict[str, Any] = scope.get("state", {})
                principal = state.get("principal")
                path_params: dict[str, Any] = scope.get("path_params") or {}
                line = _LINE.encode(
                    {
                        "method": scope.get("method"),
                        "path": scope["path"],
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 2),
                        "org": path_params.get("org") or (principal.org_id if principal else None),
                        "key": principal.key_id if principal else None,
                    }
                )
                log.info(line.decode())

    return middleware
