"""``commcredits edge check``: can a telephony edge (a SIP proxy) reach the API with its key?

Run it on the proxy's machine with the URL and key written in its configuration. Exit status:
0 the API answers and the key may do call control; 1 the API answers but refuses the key
(401 unknown, 403 not allowed); 2 the API cannot be reached, or what answers is not it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import httpx
import typer
from rich.markup import escape

from commcredits.cli.main import app, console, errors

edge_app = typer.Typer(help="The telephony edge: SIP proxies that ask before every call.")
app.add_typer(edge_app, name="edge", no_args_is_help=True)

OK = 0
KEY_REFUSED = 1
UNREACHABLE = 2

CREATE_KEY_HINT = "create one with `commcredits keys create-telephony`"


@dataclass(frozen=True)
class Verdict:
    status: int
    message: str


def _error_of(response: httpx.Response) -> str:
    """The contract's error body as ``code: message``, or the status line when there is none."""
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def check(url: str, key: str, *, timeout: float = 5.0) -> Verdict:
    """Ask the API at ``url`` whether ``key`` may use the edge's call endpoints.

    The probe is ``POST /v1/calls`` with an empty JSON object: the key is checked before the
    body, so a refused key answers 401 or 403, and an accepted one gets 400 for the missing
    fields. Nothing is authorized, reserved or recorded.
    """
    base = url.rstrip("/")
    if not key.strip():
        return Verdict(KEY_REFUSED, f"no key given; {CREATE_KEY_HINT}")
    try:
        with httpx.Client(base_url=base, timeout=timeout) as client:
            health = client.get("/healthz")
            if health.status_code != 200:
                return Verdict(
                    UNREACHABLE,
                    f"{base} answered {_error_of(health)} to GET /healthz: "
                    "not commcredits, or commcredits cannot reach its database",
                )
            probe = client.post(
                "/v1/calls", json={}, headers={"Authorization": f"Bearer {key.strip()}"}
            )
    except httpx.TimeoutException:
        return Verdict(UNREACHABLE, f"cannot reach {base}: no answer within {timeout:g} s")
    except httpx.TransportError as exc:
        return Verdict(UNREACHABLE, f"cannot reach {base}: {exc or type(exc).__name__}")
    if probe.status_code == 401:
        return Verdict(
            KEY_REFUSED,
            f"401 the key is not known or was revoked ({_error_of(probe)}); {CREATE_KEY_HINT}",
        )
    if probe.status_code == 403:
        return Verdict(
            KEY_REFUSED,
            f"403 the key may not do call control for the edge ({_error_of(probe)}); it needs "
            f"a platform telephony key or the operator key: {CREATE_KEY_HINT}",
        )
    if probe.status_code in (400, 200, 201):
        return Verdict(OK, f"ok: {base} answers and the key may do call control")
    return Verdict(
        UNREACHABLE,
        f"{base} answered {_error_of(probe)} to POST /v1/calls: not a commcredits with the "
        "edge endpoints",
    )


@edge_app.command("check")
def check_command(
    url: Annotated[str, typer.Option("--url", help="The API's address, as the proxy has it.")],
    key: Annotated[str, typer.Option("--key", help="The key in the proxy's configuration.")],
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each answer.")
    ] = 5.0,
) -> None:
    """Verify that the API at URL answers and that KEY may use the call endpoints.

    Exit status 0 when it may, 1 when the API refuses the key, 2 when it cannot be reached."""
    verdict = check(url, key, timeout=timeout)
    if verdict.status == OK:
        console.print(verdict.message, highlight=False, markup=False)
        return
    errors.print(f"[red]error[/red] {escape(verdict.message)}", highlight=False)
    raise typer.Exit(verdict.status)
