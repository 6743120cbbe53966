"""The Litestar application: routes, the auth guard, errors, OpenAPI at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from commcredits import __version__
from commcredits.api.access_log import access_log
from commcredits.api.auth import authorize
from commcredits.api.call_control import call_control_fast_path
from commcredits.api.errors import EXCEPTION_HANDLERS, document_error_responses
from commcredits.api.routes import (
    advice,
    charts,
    credits,
    directory,
    orgs,
    rates,
    reports,
    system,
    usage,
)
from commcredits.api.strict import check_body
from commcredits.app import Container
from commcredits.console import console_router


@get("/openapi.json", include_in_schema=False, sync_to_thread=False)
def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return request.app.openapi_schema.to_schema()


def create_app(container: Container, *, call_control_fast_path_on: bool = True) -> Litestar:
    """The application. ``call_control_fast_path_on=False`` serves call control through the
    full Litestar route only (the fast path answers alike; tests compare the two)."""
    middleware: list[Any] = [access_log]
    if call_control_fast_path_on:
        middleware.append(
            call_control_fast_path(usage.CALL_CONTROL, max_body=container.settings.max_body_bytes)
        )
    return Litestar(
        route_handlers=[
            orgs.router,
            directory.router,
            credits.router,
            rates.router,
            usage.router,
            usage.edge_router,
            advice.router,
            reports.router,
            charts.router,
            system.router,
            system.health,
            openapi_json,
            console_router(),
        ],
        guards=[authorize],
        # The OpenAPI document describes the contract's error body on every operation.
        on_startup=[document_error_responses],
        before_request=check_body,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=middleware,
        # Logging is set up by commcredits.logs: Litestar's own set-up would replace the root
        # handler with a queue and a thread that every access log line wakes.
        logging_config=None,
        state=State({"container": container}),
        request_max_body_size=container.settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="commcredits",
            version=__version__,
            description="Communications Credits: licensing, funding, rating and call control.",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", description="API key")
                }
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
    )
