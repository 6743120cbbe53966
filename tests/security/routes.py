"""The application's routes, enumerated from the app itself, so a new route is covered by the
security suites the moment it is added."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from litestar import Litestar
from litestar.routes import HTTPRoute

from commcredits.domain.roles import Access, Area

READ_METHODS = frozenset({"GET", "HEAD"})
FRAMEWORK_METHODS = frozenset({"OPTIONS", "HEAD"})
"""Answered by the framework itself (CORS preflight, automatic HEAD); they carry no data."""
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/v1/_noop"})
PUBLIC_PREFIXES = ("/schema",)
"""Routes anyone may call: liveness, the API's own description, and the benchmarks' baseline
(which answers 204 and nothing else)."""
SESSION_PREFIXES = ("/console",)
"""The web console: signed-in admins with a session cookie, not API keys; each page checks the
session, the organization and the admin's roles itself (docs/console.md)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    """The path template with bare parameter names, e.g. ``/v1/orgs/{org}/users/{user}``."""
    params: tuple[str, ...]
    area: Area | None
    access: Access | None
    takes_body: bool
    raw_body: str | None
    """The media type of a body read as it is (a CSV upload), or None for JSON."""

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def is_public(self) -> bool:
        return self.path in PUBLIC_PATHS or self.path.startswith(PUBLIC_PREFIXES)

    @property
    def is_console(self) -> bool:
        return self.path.startswith(SESSION_PREFIXES)

    def url(self, values: dict[str, str]) -> str:
        path = self.path
        for name in self.params:
            path = path.replace("{" + name + "}", values[name])
        return path


def endpoints(app: Litestar) -> list[Endpoint]:
    """Every (method, path) the app answers, with the area and access its guard checks."""
    found: list[Endpoint] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods):
                if method in FRAMEWORK_METHODS:
                    continue
                area = cast(Area | None, handler.opt.get("area"))
                access = cast(Access | None, handler.opt.get("access"))
                if area is not None and access is None:
                    access = "read" if method in READ_METHODS else "write"
                signature: Any = handler.parsed_fn_signature.parameters
                found.append(
                    Endpoint(
                        method=method,
                        path=route.path_format,
                        params=tuple(route.path_parameters),
                        area=area,
                        access=access,
                        takes_body=method not in READ_METHODS
                        and ("data" in signature or "body_media_type" in handler.opt),
                        raw_body=handler.opt.get("body_media_type"),
                    )
                )
    return sorted(found, key=lambda e: (e.path, e.method))
