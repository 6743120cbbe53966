"""Authentication and authorization of every request, in one guard.

Each route declares ``opt={"area": ...}`` (and ``"access"`` where the method does not say it);
routes without an area are public. The order of checks matters: an organization key asking for
another organization gets 404 before any role check, so it learns nothing about it.
"""

from __future__ import annotations

from typing import Any, cast

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from commcredits.app import Container
from commcredits.domain.errors import Forbidden, NotFound
from commcredits.domain.organizations import Principal
from commcredits.domain.roles import Access, Area, allows

READ_METHODS = frozenset({"GET", "HEAD"})


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    area = cast(Area | None, handler.opt.get("area"))
    if area is None:
        return
    container = cast(Container, connection.app.state.container)
    principal = container.keys.authenticate(bearer_token(connection))
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
