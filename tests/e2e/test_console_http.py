"""The console over HTTP without a browser: cookies, CSRF, roles, tenancy, rate limits and
the ``commcredits admins`` commands."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from typer.testing import CliRunner

from commcredits.api.app import create_app
from commcredits.app import Container, build
from commcredits.cli.main import app as cli
from commcredits.services.orgs import NewOrganization
from commcredits.settings import Settings

PASSWORD = "correct horse battery"
Client = TestClient  # type: ignore[type-arg]


def _org(container: Container, roles: tuple[str, ...] = ("global_admin",)) -> tuple[str, str]:
    org = container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid"))
    email = f"{roles[0]}@{org.id.lower()}.example"
    container.orgs.add_admin(org.id, email, "Pat", list(roles))
    container.signin.set_password(org.id, email, PASSWORD)
    return org.id, email


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


def _sign_in(client: Any, email: str, password: str = PASSWORD) -> Any:
    token = _csrf(client.get("/console/signin").text)
    return client.post(
        "/console/signin",
        data={"csrf_token": token, "email": email, "password": password},
        follow_redirects=False,
    )


@pytest.fixture
def web(sqlite_container: Container) -> Any:
    with TestClient(create_app(sqlite_container)) as client:
        yield client


def test_signing_in_sets_a_session_cookie_the_page_script_cannot_read(
    web: Any, sqlite_container: Container
) -> None:
    org_id, email = _org(sqlite_container)

    answer = _sign_in(web, email)

    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/orgs/{org_id}"
    cookie = answer.headers["set-cookie"].lower()
    assert "cc_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/console" in cookie


def test_a_page_without_a_session_sends_the_browser_to_sign_in(
    web: Any, sqlite_container: Container
) -> None:
    org_id, _ = _org(sqlite_container)
    answer = web.get(f"/console/orgs/{org_id}/billing/products/credits", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/signin"


def test_an_admin_never_reaches_another_organization(web: Any, sqlite_container: Container) -> None:
    _, email = _org(sqlite_container)
    other, _ = _org(sqlite_container)
    _sign_in(web, email)

    answer = web.get(f"/console/orgs/{other}/billing/products/credits")

    assert answer.status_code == 404
    assert "Contoso" not in answer.text.split("<main", 1)[1]


def test_the_sign_in_form_needs_its_own_csrf_token(web: Any, sqlite_container: Container) -> None:
    _, email = _org(sqlite_container)
    web.get("/console/signin")
    answer = web.post(
        "/console/signin",
        data={"csrf_token": "forged", "email": email, "password": PASSWORD},
        follow_redirects=False,
    )
    assert answer.status_code == 403


def test_signing_out_ends_the_session(web: Any, sqlite_container: Container) -> None:
    org_id, email = _org(sqlite_container)
    _sign_in(web, email)
    page = web.get(f"/console/orgs/{org_id}/users")
    cookie = web.cookies.get("cc_session")

    web.post("/console/signout", data={"csrf_token": _csrf(page.text)}, follow_redirects=False)

    web.cookies.set("cc_session", cookie, path="/console")
    answer = web.get(f"/console/orgs/{org_id}/users", follow_redirects=False)
    assert answer.status_code == 303


def test_a_burst_of_sign_ins_from_one_address_is_slowed_down(
    web: Any, sqlite_container: Container
) -> None:
    statuses = [
        _sign_in(web, f"nobody{n}@contoso.example", "wrong password!").status_code
        for n in range(21)
    ]
    assert statuses[:20] == [401] * 20
    assert statuses[20] == 429


def test_a_locked_address_is_told_so(web: Any, sqlite_container: Container) -> None:
    _, email = _org(sqlite_container)
    for _ in range(5):
        _sign_in(web, email, "wrong password!")
    answer = _sign_in(web, email)
    assert answer.status_code == 401
    assert "locked" in answer.text


def test_a_teams_admin_sees_users_but_cannot_buy(web: Any, sqlite_container: Container) -> None:
    org_id, email = _org(sqlite_container, ("teams_admin",))
    _sign_in(web, email)
    assert web.get(f"/console/orgs/{org_id}/users").status_code == 200
    assert web.get(f"/console/orgs/{org_id}/billing/products/credits").status_code == 200
    assert web.get(f"/console/orgs/{org_id}/billing/purchase/credits").status_code == 403


def test_console_routes_stay_out_of_the_api_schema(web: Any) -> None:
    paths = web.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/console")]


def test_an_invitation_link_lets_the_admin_choose_a_password(
    web: Any, sqlite_container: Container
) -> None:
    org = sqlite_container.orgs.create(NewOrganization("Fabrikam", "US", "USD", "prepaid"))
    sqlite_container.orgs.add_admin(org.id, "new@fabrikam.example", "New", ["billing_admin"])
    token = sqlite_container.signin.invite(org.id, "new@fabrikam.example")

    form = web.get(f"/console/invitations/{token}")
    answer = web.post(
        f"/console/invitations/{token}",
        data={"csrf_token": _csrf(form.text), "password": PASSWORD, "confirm": PASSWORD},
        follow_redirects=False,
    )

    assert answer.status_code == 303
    assert sqlite_container.signin.sign_in("new@fabrikam.example", PASSWORD).org_id == org.id
    assert web.get(f"/console/invitations/{token}").status_code == 404


def test_the_admins_commands_set_a_password_and_make_an_invitation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    container = build(Settings(database_url=url, sandbox_journal=None))
    org = container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid"))
    container.orgs.add_admin(org.id, "pat@contoso.example", "Pat", ["global_admin"])
    container.close()
    runner = CliRunner()
    common = ["--org", org.id, "--email", "pat@contoso.example", "--database-url", url]

    set_password = runner.invoke(
        cli, ["admins", "set-password", *common, "--json"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    invite = runner.invoke(cli, ["admins", "invite", *common, "--json"])

    assert set_password.exit_code == 0, set_password.output
    assert invite.exit_code == 0, invite.output
    link = json.loads(invite.output)["link"]
    assert re.fullmatch(r"http://127\.0\.0\.1:8000/console/invitations/[\w-]{40,}", link)
    container = build(Settings(database_url=url, sandbox_journal=None))
    try:
        assert container.signin.sign_in("pat@contoso.example", PASSWORD).org_id == org.id
    finally:
        container.close()
