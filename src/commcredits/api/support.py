"""Small helpers every route module uses: the container, blocking calls, idempotency keys."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

import anyio.to_thread
import msgspec
from litestar import Request

from commcredits.app import Container
from commcredits.services.idempotency import Idempotency, check_key, fingerprint

P = ParamSpec("P")
T = TypeVar("T")


def container_of(request: Request[Any, Any, Any]) -> Container:
    return cast(Container, request.app.state.container)


async def blocking(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a use case (which talks to the database) off the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


async def idempotency_for(
    request: Request[Any, Any, Any],
    scope: str,
    status_code: int,
    to_body: Callable[[Any], Any],
) -> Idempotency | None:
    """The request's ``Idempotency-Key``, ready for a use case, or None when it sent none."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    body = await request.body()

    def render(result: Any) -> tuple[int, str]:
        return status_code, msgspec.json.encode(to_body(result)).decode()

    return Idempotency(
        scope=scope,
        key=check_key(key),
        fingerprint=fingerprint(request.method, request.url.path, body),
        render=render,
    )
