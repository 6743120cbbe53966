"""The web console at ``/console``: server-rendered pages for admins and operators.

Console routes carry no API ``area``, so the API's bearer-key guard lets them through; each
page checks the session cookie, the organization and the admin's roles itself
(:func:`commcredits.console.web.page_context`). See docs/console.md.
"""

from __future__ import annotations

from litestar import Router
from litestar.exceptions import HTTPException
from litestar.static_files import create_static_files_router

from commcredits.console import auth, billing, reports, users
from commcredits.console.web import (
    STATIC_DIR,
    SignInRequired,
    add_security_headers,
    on_console_error,
    on_http_error,
    on_sign_in_required,
)
from commcredits.domain.errors import CommcreditsError


def console_router() -> Router:
    """The console's pages and static files, mounted at ``/console``."""
    pages = Router(
        path="/console",
        route_handlers=[*auth.handlers, *billing.handlers, *users.handlers, *reports.handlers],
        after_request=add_security_headers,
        exception_handlers={
            SignInRequired: on_sign_in_required,
            CommcreditsError: on_console_error,
            HTTPException: on_http_error,
        },
        include_in_schema=False,
    )
    static = create_static_files_router(
        path="/console/static",
        directories=[STATIC_DIR],
        after_request=add_security_headers,
        include_in_schema=False,
        name="console_static",
    )
    return Router(path="/", route_handlers=[pages, static], include_in_schema=False)
