"""What every console page shares: templates, the session cookie, CSRF, access checks,
security headers, the sign-in rate limit and the HTML error page.

Pages are rendered on the server with Jinja2 (autoescaped). A page handler reads its session
with :func:`page_context`, which also checks that the organization is reachable (404 otherwise,
as the API does) and that the admin's roles allow the page (403).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlencode

import jinja2
from litestar import Request, Response
from litestar.datastructures import FormMultiDict
from litestar.enums import MediaType
from litestar.exceptions import HTTPException
from litestar.response import Redirect

from commcredits.api.errors import status_of
from commcredits.api.support import blocking, container_of
from commcredits.app import Container
from commcredits.console.access import may
from commcredits.domain.errors import CommcreditsError, Forbidden, NotFound
from commcredits.domain.money import Money
from commcredits.domain.organizations import Organization
from commcredits.domain.roles import Access, Area
from commcredits.services.signin import SESSION_LIFETIME, ConsoleSession

AnyRequest = Request[Any, Any, Any]

SESSION_COOKIE: Final = "cc_session"
PRE_CSRF_COOKIE: Final = "cc_signin_csrf"
"""Guards the sign-in form itself (double-submit), before any session exists."""
STATIC_DIR: Final = Path(__file__).parent / "static"
TEMPLATE_DIR: Final = Path(__file__).parent / "templates"

SECURITY_HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Invitation links carry their token in the path: never send it to another site.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def money(amount: Any, currency: str) -> str:
    return f"{Money(amount, currency).format()} {currency}"


def _date(value: Any) -> str:
    return value.strftime("%Y-%m-%d") if value is not None else ""


def _time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else ""


environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["money"] = money
environment.filters["date"] = _date
environment.filters["time"] = _time
environment.globals["urlencode"] = urlencode


class SignInRequired(Exception):
    """No live session: the browser is sent to the sign-in page."""


@dataclass
class Page:
    """The session and organization a page is rendered for."""

    request: AnyRequest
    session: ConsoleSession
    org: Organization | None = None
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def container(self) -> Container:
        return container_of(self.request)

    def may(self, area: Area, access: Access = "read") -> bool:
        return may(self.session, area, access)

    def render(self, template: str, status_code: int = 200, **values: Any) -> Response[str]:
        return render(
            self.request,
            template,
            status_code=status_code,
            session=self.session,
            org=self.org,
            csrf_token=self.session.csrf_token(),
            may=self.may,
            **values,
        )


def render(
    request: AnyRequest, template: str, *, status_code: int = 200, **values: Any
) -> Response[str]:
    values.setdefault("session", None)
    values.setdefault("org", None)
    values.setdefault("csrf_token", "")
    values.setdefault("notice", None)
    values.setdefault("nav", "")
    html = environment.get_template(template).render(path=request.url.path, **values)
    return Response(html, media_type=MediaType.HTML, status_code=status_code)


def client_secure(request: AnyRequest) -> bool:
    """Cookies are marked Secure when the console is reached over HTTPS (directly, or as its
    public address says)."""
    public_url = container_of(request).settings.public_url or ""
    return request.url.scheme == "https" or public_url.startswith("https://")


def set_session_cookie(response: Response[Any], request: AnyRequest, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path="/console",
        httponly=True,
        samesite="lax",
        secure=client_secure(request),
        max_age=int(SESSION_LIFETIME.total_seconds()),
    )


async def current_session(request: AnyRequest) -> ConsoleSession:
    token = request.cookies.get(SESSION_COOKIE)
    session = await blocking(container_of(request).signin.session, token)
    if session is None:
        raise SignInRequired
    return session


async def page_context(
    request: AnyRequest, org_id: str | None, area: Area, access: Access = "read"
) -> Page:
    """The page's session and organization, or the refusal: sign in, 404 or 403."""
    session = await current_session(request)
    org = None
    if org_id is not None:
        if not session.reaches(org_id):
            raise NotFound("no such organization", code="organization_not_found")
        org = await blocking(container_of(request).orgs.get, org_id)
    elif not session.is_operator:
        raise Forbidden("only the operator sees every organization")
    if not may(session, area, access):
        raise Forbidden(
            f"your role does not allow you to {'change' if access == 'write' else 'see'}"
            " this page; ask a global admin",
            code="forbidden",
        )
    return Page(request, session, org)


async def checked_form(request: AnyRequest, page: Page) -> FormMultiDict:
    """The posted form, refused (403) unless it carries this session's CSRF token."""
    form = await request.form()
    if not page.session.csrf_matches(_text(form.get("csrf_token"))):
        raise Forbidden(
            "this form has expired or did not come from this console; reload the page and"
            " try again",
            code="csrf_token_invalid",
        )
    return form


def new_pre_csrf() -> str:
    return secrets.token_urlsafe(24)


def pre_csrf_matches(request: AnyRequest, sent: str | None) -> bool:
    cookie = request.cookies.get(PRE_CSRF_COOKIE)
    return bool(cookie) and bool(sent) and secrets.compare_digest(cookie or "", sent or "")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def text(form: Mapping[str, Any], name: str) -> str:
    """A posted text field, stripped ('' when missing)."""
    return (_text(form.get(name)) or "").strip()


def see_other(path: str, **query: str) -> Redirect:
    return Redirect(path=f"{path}?{urlencode(query)}" if query else path, status_code=303)


class SignInLimiter:
    """At most ``limit`` sign-in attempts per client address per ``window`` seconds, in memory
    (per process). The per-address lock-out in the store catches slow guessing; this stops a
    burst from one client, whatever addresses it tries."""

    def __init__(self, limit: int = 20, window: float = 300.0):
        self.limit = limit
        self.window = window
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._attempts) > 50_000:
                self._attempts.clear()
            attempts = self._attempts.setdefault(client, deque())
            while attempts and attempts[0] <= now - self.window:
                attempts.popleft()
            if len(attempts) >= self.limit:
                return False
            attempts.append(now)
            return True


def limiter_of(request: AnyRequest) -> SignInLimiter:
    state = request.app.state
    limiter = state.get("console_signin_limiter")
    if limiter is None:
        limiter = SignInLimiter()
        state["console_signin_limiter"] = limiter
    return cast(SignInLimiter, limiter)


# -- the router's hooks ----------------------------------------------------------------------


async def add_security_headers(response: Response[Any]) -> Response[Any]:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def on_sign_in_required(request: AnyRequest, _: SignInRequired) -> Response[Any]:
    response = see_other("/console/signin")
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


def on_console_error(request: AnyRequest, exc: CommcreditsError) -> Response[str]:
    return render(
        request,
        "error.html",
        status_code=status_of(exc),
        title=_ERROR_TITLES.get(status_of(exc), "Something went wrong"),
        message=exc.message,
        code=exc.code,
    )


def on_http_error(request: AnyRequest, exc: HTTPException) -> Response[str]:
    status = exc.status_code if 400 <= exc.status_code < 600 else 500
    return render(
        request,
        "error.html",
        status_code=status,
        title=_ERROR_TITLES.get(status, "Something went wrong"),
        message=exc.detail if status < 500 else "The console could not answer; try again.",
        code="http_error",
    )


_ERROR_TITLES: Final = {
    400: "That request was not understood",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible right now",
    413: "Too large",
    422: "Not accepted",
    429: "Too many attempts",
}
