"""Users > Active users: search and filter, a user's licenses as switches, bulk assignment
(R-14) and CSV import with its error report."""

from __future__ import annotations

import csv
import io
from typing import Any, Final

from litestar import get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath, FromQuery
from litestar.response import Response

from commcredits.api.support import blocking
from commcredits.console.web import AnyRequest, Page, checked_form, page_context, text
from commcredits.domain.directory import User
from commcredits.domain.errors import CommcreditsError

USERS_PAGE: Final = 50
MAX_IMPORT_BYTES: Final = 8 * 1024 * 1024


def actor_of(page: Page) -> str:
    """How the audit log names whoever acted in the console."""
    return page.session.email or "operator"


def _skus(page: Page) -> list[Any]:
    return sorted(page.container.catalogue.skus.values(), key=lambda sku: (sku.kind, sku.code))


@get("/orgs/{org:str}/users")
async def users(
    request: AnyRequest,
    org: FromPath[str],
    search: FromQuery[str | None] = None,
    sku: FromQuery[str | None] = None,
    location: FromQuery[str | None] = None,
    after: FromQuery[str | None] = None,
) -> Response[Any]:
    page = await page_context(request, org, "directory")
    return await _users_page(page, search=search, sku=sku, location=location, after=after)


async def _users_page(
    page: Page,
    *,
    search: str | None,
    sku: str | None,
    location: str | None,
    after: str | None,
    results: list[Any] | None = None,
    error: FromQuery[str | None] = None,
    status_code: int = 200,
) -> Response[Any]:
    assert page.org is not None
    known = page.container.catalogue.skus
    sku = sku if sku in known else None
    location = (location or "").strip().upper()[:2] or None
    found: list[User] = await blocking(
        page.container.directory.list_users,
        page.org.id,
        sku=sku,
        search=(search or "").strip() or None,
        usage_location=location,
        limit=USERS_PAGE + 1,
        after=after or None,
    )
    more = len(found) > USERS_PAGE
    found = found[:USERS_PAGE]
    return page.render(
        "users.html",
        status_code=status_code,
        title="Active users",
        nav="users",
        users=found,
        skus=_skus(page),
        search=search or "",
        sku=sku or "",
        location=location or "",
        next_after=found[-1].upn if more else None,
        results=results,
        error=error,
    )


@post("/orgs/{org:str}/users/bulk")
async def bulk(request: AnyRequest, org: FromPath[str]) -> Response[Any]:
    page = await page_context(request, org, "directory", "write")
    form = await checked_form(request, page)
    chosen = [value for value in form.getall("user", []) if isinstance(value, str)]
    sku = text(form, "sku")
    action = text(form, "action")
    error = None
    if not chosen:
        error = "Select at least one user."
    elif sku not in page.container.catalogue.skus:
        error = "Choose a license."
    elif action not in ("assign", "remove"):
        error = "Choose whether to assign or remove the license."
    if error:
        return await _users_page(
            page, search=None, sku=None, location=None, after=None, error=error, status_code=422
        )
    results = await blocking(
        page.container.directory.bulk_change_licenses,
        org,
        chosen,
        [sku] if action == "assign" else [],
        [sku] if action == "remove" else [],
        actor=actor_of(page),
    )
    return await _users_page(
        page, search=None, sku=None, location=None, after=None, results=results
    )


async def _user_page(
    page: Page,
    user: User,
    *,
    wanted: set[str] | None = None,
    error: FromQuery[str | None] = None,
    saved: bool = False,
    status_code: int = 200,
) -> Response[Any]:
    catalogue = page.container.catalogue
    return page.render(
        "user.html",
        status_code=status_code,
        title=user.display_name,
        nav="users",
        user=user,
        skus=_skus(page),
        wanted=wanted if wanted is not None else set(user.licenses),
        effective=catalogue.effective(user.licenses),
        error=error,
        saved=saved,
    )


@get("/orgs/{org:str}/users/{user_id:str}")
async def user(
    request: AnyRequest,
    org: FromPath[str],
    user_id: FromPath[str],
    saved: FromQuery[str | None] = None,
) -> Response[Any]:
    page = await page_context(request, org, "directory")
    found = await blocking(page.container.directory.get_user, org, user_id)
    return await _user_page(page, found, saved=saved == "1")


@post("/orgs/{org:str}/users/{user_id:str}")
async def save_user(
    request: AnyRequest, org: FromPath[str], user_id: FromPath[str]
) -> Response[Any]:
    page = await page_context(request, org, "directory", "write")
    form = await checked_form(request, page)
    directory = page.container.directory
    current = await blocking(directory.get_user, org, user_id)
    known = page.container.catalogue.skus
    wanted = {value for value in form.getall("license", []) if value in known}
    add = sorted(wanted - current.licenses)
    remove = sorted(current.licenses - wanted)
    try:
        updated = await blocking(
            directory.change_licenses, org, current.id, add, remove, actor=actor_of(page)
        )
    except CommcreditsError as exc:
        return await _user_page(page, current, wanted=wanted, error=exc.message, status_code=422)
    return await _user_page(page, updated, saved=True)


@get("/orgs/{org:str}/users-import")
async def import_form(request: AnyRequest, org: FromPath[str]) -> Response[Any]:
    page = await page_context(request, org, "directory", "write")
    return page.render("import.html", title="Import users", nav="users", report=None, error=None)


@post("/orgs/{org:str}/users-import")
async def import_users(request: AnyRequest, org: FromPath[str]) -> Response[Any]:
    page = await page_context(request, org, "directory", "write")
    form = await checked_form(request, page)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        return page.render(
            "import.html",
            status_code=422,
            title="Import users",
            nav="users",
            report=None,
            error="Choose a CSV file.",
        )
    content = await upload.read()
    if len(content) > MAX_IMPORT_BYTES:
        return page.render(
            "import.html",
            status_code=413,
            title="Import users",
            nav="users",
            report=None,
            error="The file is larger than 8 MB; split it.",
        )
    try:
        text_content = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text_content = None
    reader = csv.DictReader(io.StringIO(text_content or ""))
    fields = [name.strip().lower() for name in reader.fieldnames or []]
    missing = {"upn", "display_name"} - set(fields)
    if text_content is None or missing:
        return page.render(
            "import.html",
            status_code=422,
            title="Import users",
            nav="users",
            report=None,
            error="The file must be UTF-8 CSV with a header row naming at least upn and"
            " display_name (and optionally usage_location and licenses).",
        )
    reader.fieldnames = fields
    rows = [
        (
            reader.line_num,
            {k: (v or "").strip() for k, v in row.items() if k and isinstance(v, str)},
        )
        for row in reader
    ]
    report = await blocking(page.container.directory.import_users, org, rows, actor=actor_of(page))
    return page.render("import.html", title="Import users", nav="users", report=report, error=None)


handlers = [users, bulk, user, save_user, import_form, import_users]
