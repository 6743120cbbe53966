"""Authentication and authorization of every request, in one guard.

Each route declares ``opt={"area": ...}`` (and ``"access"`` where the method does not say it);
routes without an area are public. The order of checks matters: an organization key asking for
another organization gets 404 before any role check, so it learns nothing about it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any, cast
from weakref import WeakKeyDictionary

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from commcredits.api.support import blocking
from commcredits.app import Container
from commcredits.domain.errors import Forbidden, NotFound, Unauthenticated
from commcredits.domain.organizations import Principal
from commcredits.domain.roles import Access, Area, allows
from commcredits.services.keys import CACHE_SECONDS, Keys

READ_METHODS = frozenset({"GET", "HEAD"})

_FRESH_SECONDS = CACHE_SECONDS / 2
_FRESH_LIMIT = 10_000
_fresh: WeakKeyDictionary[Keys, dict[bytes, float]] = WeakKeyDictionary()
"""Per key service: digests of tokens it verified less than ``_FRESH_SECONDS`` ago.

It only decides where the check runs, never whether a key is valid: a token in it is asked of
:meth:`Keys.authenticate` on the event loop, where it answers from its own cache (which keeps a
verified key for ``CACHE_SECONDS`` and forgets it at once when a key is revoked here); any other
token is checked in a worker thread, because that may read the database. Half the service's
cache time, so the service's entry is still there whenever this one is.
"""


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    return bearer_of(connection.scope["headers"])


def bearer_of(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The bearer token of raw ASGI headers: building the request's header map costs more
    than the whole key check on the hot path."""
    header = b""
    for name, value in headers:
        if name.lower() == b"authorization":
            header = value
            break
    scheme, _, token = header.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _fresh_of(keys: Keys) -> dict[bytes, float]:
    fresh = _fresh.get(keys)
    if fresh is None:
        fresh = _fresh.setdefault(keys, {})
    return fresh


def known_principal(keys: Keys, token: str | None) -> Principal | None:
    """The principal of a token verified moments ago, answered without the database; None
    for any other token (including a bad one: the guard's full check reports it)."""
    if not token:
        return None
    fresh = _fresh_of(keys)
    digest = hashlib.sha256(token.encode()).digest()
    until = fresh.get(digest)
    if until is None or until <= time.monotonic():
        return None
    try:
        return keys.authenticate(token)
    except Unauthenticated:
        fresh.pop(digest, None)  # revoked meanwhile: the guard checks it again, in a thread
        return None


def may(principal: Principal, org_id: str | None, area: Area, access: Access) -> bool:
    """Whether ``principal`` may ``access`` ``area`` (of organization ``org_id``, if any)."""
    if org_id is not None and not principal.reaches(org_id):
        return False
    return allows(principal.role, area, access)


async def _principal(keys: Keys, token: str | None) -> Principal:
    if not token:
        return keys.authenticate(token)  # refuses at once, without the database
    digest = hashlib.sha256(token.encode()).digest()
    now = time.monotonic()
    fresh = _fresh_of(keys)
    fresh_until = fresh.get(digest)
    if fresh_until is not None and fresh_until > now:
        return keys.authenticate(token)
    principal = await blocking(keys.authenticate, token)
    if len(fresh) >= _FRESH_LIMIT:
        fresh.clear()
    fresh[digest] = now + _FRESH_SECONDS
    return principal


async def authorize(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    # A coroutine: Litestar runs a plain-function guard in a worker thread on every request.
    area = cast("Area | None", handler.opt.get("area"))
    if area is None:
        return
    container = cast(Container, connection.app.state.container)
    principal = await _principal(container.keys, bearer_token(connection))
    connection.state.principal = principal
    org_id = connection.path_params.get("org")
    if org_id is not None and not principal.reaches(org_id):
        raise NotFound("no such organization", code="organization_not_found")
    method = connection.scope.get("method", "GET")
    access = cast(
        Access, handler.opt.get("access") or ("read" if method in READ_METHODS else "write")
    )
    if not allows(principal.role, area, access):
        raise Forbidden(f"a {principal.role} key may not {access} {area.replace('_', ' ')}")


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    return cast(Principal, connection.state.principal)
