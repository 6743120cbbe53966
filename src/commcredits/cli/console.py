"""``commcredits admins``: console passwords and invitations for an organization's admins."""

from __future__ import annotations

from typing import Annotated

import typer

from commcredits.app import Container
from commcredits.cli.main import DatabaseUrl, JsonFlag, _print_json, _run, app, console
from commcredits.domain.organizations import Admin

admins_app = typer.Typer(help="Admins' access to the web console.", no_args_is_help=True)
app.add_typer(admins_app, name="admins")

Org = Annotated[str, typer.Option("--org", help="The organization's id.")]
Email = Annotated[str, typer.Option("--email", help="The admin's e-mail address.")]


def invitation_link(public_url: str | None, token: str) -> str:
    base = (public_url or "http://127.0.0.1:8000").rstrip("/")
    return f"{base}/console/invitations/{token}"


@admins_app.command("set-password")
def set_password(
    org: Org,
    email: Email,
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="COMMCREDITS_ADMIN_PASSWORD",
            help="The new password (asked for when not given; or COMMCREDITS_ADMIN_PASSWORD).",
        ),
    ],
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Set an admin's console password (their open sessions end)."""
    admin: Admin = _run(database_url, lambda c: c.signin.set_password(org, email, password))
    if as_json:
        _print_json({"org": admin.org_id, "admin": admin.id, "email": admin.email})
    else:
        console.print(f"password set for {admin.email}")


@admins_app.command("invite")
def invite(
    org: Org,
    email: Email,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a one-time link (valid 7 days) with which an admin chooses their password."""

    def action(container: Container) -> tuple[str, str | None]:
        return container.signin.invite(org, email), container.settings.public_url

    token, public_url = _run(database_url, action)
    link = invitation_link(public_url, token)
    if as_json:
        _print_json({"org": org, "email": email, "link": link})
    else:
        console.print(f"invitation for {email} (one use, valid 7 days):")
        console.print(link, soft_wrap=True)
