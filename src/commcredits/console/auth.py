"""Signing in and out, invitations, and the operator's list of organizations."""

from __future__ import annotations

from typing import Any

from litestar import get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Response

from commcredits.api.support import blocking, container_of
from commcredits.console.web import (
    PRE_CSRF_COOKIE,
    SESSION_COOKIE,
    AnyRequest,
    current_session,
    limiter_of,
    new_pre_csrf,
    page_context,
    pre_csrf_matches,
    render,
    see_other,
    set_session_cookie,
    text,
)
from commcredits.console.web import SignInRequired as SignInRequired
from commcredits.domain.errors import CommcreditsError, Forbidden
from commcredits.services.signin import ConsoleSession

ORG_PAGE = 100


def home_of(session: ConsoleSession) -> str:
    if session.is_operator:
        return "/console/orgs"
    return f"/console/orgs/{session.org_id}"


@get("/")
async def console_home(request: AnyRequest) -> Redirect:
    try:
        session = await current_session(request)
    except SignInRequired:
        return see_other("/console/signin")
    return see_other(home_of(session))


def _signin_page(request: AnyRequest, *, status_code: int = 200, **values: Any) -> Response[Any]:
    token = new_pre_csrf()
    values.setdefault("email", "")
    values.setdefault("organization", "")
    values.setdefault("error", None)
    values.setdefault("error_field", None)
    values.setdefault("operator_error", None)
    response = render(
        request,
        "signin.html",
        status_code=status_code,
        title="Sign in",
        signin_csrf=token,
        **values,
    )
    response.set_cookie(
        PRE_CSRF_COOKIE, token, path="/console", httponly=True, samesite="strict", max_age=3600
    )
    return response


@get("/signin")
async def signin_form(request: AnyRequest) -> Response[Any]:
    return _signin_page(request)


def _client(request: AnyRequest) -> str:
    return request.client.host if request.client else "unknown"


def _refuse_forged(request: AnyRequest, sent: str) -> None:
    if not pre_csrf_matches(request, sent):
        raise Forbidden(
            "this form has expired or did not come from this console; reload the page and"
            " try again",
            code="csrf_token_invalid",
        )


@post("/signin")
async def signin(request: AnyRequest) -> Response[Any]:
    form = await request.form()
    _refuse_forged(request, text(form, "csrf_token"))
    email = text(form, "email")
    organization = text(form, "organization") or None
    if not limiter_of(request).allow(_client(request)):
        return _signin_page(
            request,
            status_code=429,
            email=email,
            error="Too many sign-in attempts from this address. Wait a few minutes.",
        )
    password = form.get("password")
    try:
        session = await blocking(
            container_of(request).signin.sign_in,
            email,
            password if isinstance(password, str) else "",
            organization,
        )
    except CommcreditsError as exc:
        return _signin_page(
            request,
            status_code=401 if exc.code != "organization_required" else 422,
            email=email,
            organization=organization or "",
            error=exc.message,
            error_field=exc.field,
        )
    response = see_other(home_of(session))
    set_session_cookie(response, request, session.token)
    return response


@post("/signin/operator")
async def signin_operator(request: AnyRequest) -> Response[Any]:
    form = await request.form()
    _refuse_forged(request, text(form, "csrf_token"))
    if not limiter_of(request).allow(_client(request)):
        return _signin_page(
            request,
            status_code=429,
            operator_error="Too many sign-in attempts from this address. Wait a few minutes.",
        )
    try:
        session = await blocking(
            container_of(request).signin.sign_in_operator, text(form, "operator_key")
        )
    except CommcreditsError:
        return _signin_page(
            request, status_code=401, operator_error="That is not a valid operator key."
        )
    response = see_other(home_of(session))
    set_session_cookie(response, request, session.token)
    return response


@post("/signout")
async def signout(request: AnyRequest) -> Response[Any]:
    session = await current_session(request)
    form = await request.form()
    if not session.csrf_matches(text(form, "csrf_token")):
        raise Forbidden("this form did not come from this console", code="csrf_token_invalid")
    await blocking(container_of(request).signin.sign_out, session.token)
    response = see_other("/console/signin")
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


@get("/invitations/{token:str}")
async def invitation_form(request: AnyRequest, token: FromPath[str]) -> Response[Any]:
    signin = container_of(request).signin
    try:
        admin = await blocking(signin.invitation, token)
    except CommcreditsError as exc:
        return render(
            request,
            "error.html",
            status_code=404,
            title="Link not valid",
            message=exc.message,
            code=exc.code,
        )
    return _invitation_page(request, token, admin.email)


def _invitation_page(
    request: AnyRequest, token: str, email: str, *, error: str | None = None, status_code: int = 200
) -> Response[Any]:
    pre = new_pre_csrf()
    response = render(
        request,
        "invitation.html",
        status_code=status_code,
        title="Choose your password",
        token=token,
        email=email,
        error=error,
        signin_csrf=pre,
    )
    response.set_cookie(
        PRE_CSRF_COOKIE, pre, path="/console", httponly=True, samesite="strict", max_age=3600
    )
    return response


@post("/invitations/{token:str}")
async def accept_invitation(request: AnyRequest, token: FromPath[str]) -> Response[Any]:
    form = await request.form()
    _refuse_forged(request, text(form, "csrf_token"))
    signin = container_of(request).signin
    password = form.get("password")
    password = password if isinstance(password, str) else ""
    try:
        admin = await blocking(signin.invitation, token)
    except CommcreditsError as exc:
        return render(
            request,
            "error.html",
            status_code=404,
            title="Link not valid",
            message=exc.message,
            code=exc.code,
        )
    if password != form.get("confirm"):
        return _invitation_page(
            request, token, admin.email, error="The two passwords differ.", status_code=422
        )
    try:
        await blocking(signin.accept_invitation, token, password)
    except CommcreditsError as exc:
        return _invitation_page(request, token, admin.email, error=exc.message, status_code=422)
    session = await blocking(signin.sign_in, admin.email, password, admin.org_id)
    response = see_other(home_of(session))
    set_session_cookie(response, request, session.token)
    return response


@get("/orgs")
async def organizations(request: AnyRequest, after: FromQuery[str | None] = None) -> Response[Any]:
    page = await page_context(request, None, "platform")
    orgs = await blocking(page.container.orgs.list_orgs, limit=ORG_PAGE + 1, after=after or None)
    more = len(orgs) > ORG_PAGE
    orgs = orgs[:ORG_PAGE]
    return page.render(
        "orgs.html",
        title="Organizations",
        nav="orgs",
        orgs=orgs,
        next_after=orgs[-1].id if more else None,
    )


@get("/orgs/{org:str}")
async def organization_home(request: AnyRequest, org: FromPath[str]) -> Redirect:
    """An organization's first page: the first one the admin's roles show."""
    page = await page_context(request, org, "org")
    base = f"/console/orgs/{org}"
    if page.may("credits"):
        return see_other(f"{base}/billing/products/credits")
    if page.may("directory"):
        return see_other(f"{base}/users")
    return see_other(f"{base}/reports/pstn")


handlers = [
    organization_home,
    console_home,
    signin_form,
    signin,
    signin_operator,
    signout,
    invitation_form,
    accept_invitation,
    organizations,
]
