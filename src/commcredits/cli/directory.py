"""``commcredits users|licenses|subscriptions|numbers``: the directory from the shell."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from commcredits.cli.main import (
    DatabaseUrl,
    JsonFlag,
    _container,
    _fail,
    _output,
    _print_json,
    _run,
    app,
    console,
    errors,
)
from commcredits.domain.directory import User
from commcredits.domain.errors import CommcreditsError
from commcredits.domain.money import Money

users_app = typer.Typer(help="Users: create, list, import and export CSV.", no_args_is_help=True)
licenses_app = typer.Typer(
    help="Assign and remove licenses, for one user or many.", no_args_is_help=True
)
subs_app = typer.Typer(help="Subscriptions: seats bought per SKU.", no_args_is_help=True)
numbers_app = typer.Typer(help="The organization's phone numbers.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(licenses_app, name="licenses")
app.add_typer(subs_app, name="subscriptions")
app.add_typer(numbers_app, name="numbers")

Org = Annotated[str, typer.Option("--org", help="The organization's id.")]
ACTOR = "cli"
CSV_COLUMNS = (
    "upn",
    "display_name",
    "usage_location",
    "licenses",
    "pstn_policy",
    "dialout_policy",
    "spend_limit",
)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,  # stdout stays clean for --json
        transient=False,
    )


def _user_row(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "upn": user.upn,
        "display_name": user.display_name,
        "usage_location": user.usage_location,
        "licenses": ";".join(sorted(user.licenses)),
    }


@users_app.command("create")
def create_user(
    org: Org,
    upn: Annotated[str, typer.Option(help="The user principal name.")],
    display_name: Annotated[str, typer.Option(help="The name people see.")],
    usage_location: Annotated[str | None, typer.Option(help="ISO country, e.g. US.")] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a user."""
    user = _run(
        database_url,
        lambda container: container.directory.create_user(
            org, upn, display_name, usage_location, actor=ACTOR
        ),
    )
    _output("user", [_user_row(user)], as_json, one=True)


@users_app.command("list")
def list_users(
    org: Org,
    sku: Annotated[str | None, typer.Option(help="Only users holding this license.")] = None,
    search: Annotated[str | None, typer.Option(help="Part of a UPN or a name.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 100,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """List users by UPN."""
    users = _run(
        database_url,
        lambda container: container.directory.list_users(org, sku=sku, search=search, limit=limit),
    )
    _output("users", [_user_row(u) for u in users], as_json)


def _read_rows(path: Path) -> tuple[list[tuple[int, dict[str, str]]], list[str]]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8-sig")
        reader = csv.DictReader(io.StringIO(text))
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        reader.fieldnames = fields
        rows = [
            (reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}) for row in reader
        ]
    except (UnicodeDecodeError, csv.Error) as exc:
        errors.print(f"[red]error[/red] unreadable_file: {path} is not a UTF-8 CSV file ({exc})")
        raise typer.Exit(2) from None
    return rows, fields


@users_app.command("import")
def import_users(
    org: Org,
    file: Annotated[
        Path,
        typer.Argument(help="CSV with upn, display_name, usage_location[, licenses]; - for stdin."),
    ],
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Create or update users from a CSV file. Bad rows are reported by line and skipped;
    importing the same file again changes nothing."""
    if str(file) != "-" and not file.exists():
        errors.print(f"[red]error[/red] file_not_found: {file}")
        raise typer.Exit(2)
    rows, fields = _read_rows(file)
    missing = {"upn", "display_name"} - set(fields)
    if missing:
        errors.print(f"[red]error[/red] missing_column: the CSV needs {', '.join(sorted(missing))}")
        raise typer.Exit(2)
    container = _container(database_url)
    try:
        with _progress() as progress:
            task = progress.add_task("importing users", total=len(rows))
            report = container.directory.import_users(
                org, rows, actor=ACTOR, progress=lambda done: progress.update(task, completed=done)
            )
    except CommcreditsError as exc:
        _fail(exc)
    finally:
        container.close()
    refused = [
        {"line": line, "upn": upn, "code": code, "message": message}
        for line, upn, code, message in report.errors
    ]
    summary = {
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "errors": refused,
    }
    if as_json:
        _print_json(summary)
    else:
        console.print(
            f"created {report.created}, updated {report.updated}, unchanged {report.unchanged},"
            f" refused {len(report.errors)}"
        )
        if report.errors:
            _output("refused rows", refused, False)
    if report.errors:
        raise typer.Exit(1)


@users_app.command("export")
def export_users(
    org: Org,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="The CSV file; - for stdout.")
    ] = Path("-"),
    database_url: DatabaseUrl = None,
) -> None:
    """Write every user as CSV (the import format, plus policies)."""
    container = _container(database_url)
    try:
        users = container.directory.all_users(org)
        currency = container.orgs.get(org).currency
    except CommcreditsError as exc:
        _fail(exc)
    finally:
        container.close()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for user in users:
        writer.writerow(
            [
                user.upn,
                user.display_name,
                user.usage_location or "",
                ";".join(sorted(user.licenses)),
                user.pstn_policy or "",
                user.dialout_policy or "",
                Money(user.spend_limit, currency).format() if user.spend_limit is not None else "",
            ]
        )
    if str(output) == "-":
        typer.echo(buffer.getvalue(), nl=False)
    else:
        output.write_text(buffer.getvalue(), encoding="utf-8")
        console.print(f"{len(users)} users written to {output}")


def _targets(users_file: Path | None, filters: list[str], container: Any, org: str) -> list[str]:
    if users_file is not None:
        lines = (
            sys.stdin.read() if str(users_file) == "-" else users_file.read_text()
        ).splitlines()
        return [
            line.split(",")[0].strip()
            for line in lines
            if line.strip() and not line.startswith("#")
        ]
    wanted: dict[str, str] = {}
    for item in filters:
        key, _, value = item.partition("=")
        if key.strip() not in {"usage_location", "sku", "search"} or not value:
            errors.print(
                "[red]error[/red] invalid_filter: use usage_location=US, sku=SKU or search=TEXT"
            )
            raise typer.Exit(2)
        wanted[key.strip()] = value.strip()
    found: list[str] = []
    after = None
    while True:
        page = container.directory.list_users(org, limit=1000, after=after, **wanted)
        found += [u.upn for u in page]
        if len(page) < 1000:
            return found
        after = page[-1].upn


def _bulk(
    org: str,
    sku: list[str],
    users_file: Path | None,
    filters: list[str],
    database_url: str | None,
    as_json: bool,
    *,
    remove: bool,
) -> None:
    if users_file is None and not filters:
        errors.print(
            "[red]error[/red] no_users: give --users-file FILE or --filter usage_location=US"
        )
        raise typer.Exit(2)
    container = _container(database_url)
    try:
        targets = _targets(users_file, filters, container, org)
        with _progress() as progress:
            task = progress.add_task("changing licenses", total=len(targets))
            results = container.directory.bulk_change_licenses(
                org,
                targets,
                [] if remove else sku,
                sku if remove else [],
                actor=ACTOR,
                progress=lambda done: progress.update(task, completed=done),
            )
    except CommcreditsError as exc:
        _fail(exc)
    finally:
        container.close()
    failures = [
        {
            "user": r.user,
            "code": r.error.code if r.error else "",
            "message": r.error.message if r.error else "",
        }
        for r in results
        if not r.ok
    ]
    ok = len(results) - len(failures)
    if as_json:
        _print_json({"succeeded": ok, "failed": len(failures), "failures": failures})
    else:
        console.print(f"{ok} users changed, {len(failures)} refused")
        if failures:
            _output("refused", failures[:50], False)
    if failures:
        raise typer.Exit(1)


UsersFile = Annotated[
    Path | None, typer.Option("--users-file", help="One UPN per line; - for stdin.")
]
Filters = Annotated[
    list[str], typer.Option("--filter", help="usage_location=US, sku=SKU or search=TEXT")
]
SkuOption = Annotated[list[str], typer.Option("--sku", help="A SKU; repeat for several.")]


@licenses_app.command("assign")
def assign(
    org: Org,
    sku: SkuOption,
    users_file: UsersFile = None,
    filters: Filters = [],  # noqa: B006
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Assign licenses to many users: each user all or nothing (R-14)."""
    _bulk(org, sku, users_file, filters, database_url, as_json, remove=False)


@licenses_app.command("remove")
def remove(
    org: Org,
    sku: SkuOption,
    users_file: UsersFile = None,
    filters: Filters = [],  # noqa: B006
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Remove licenses from many users: each user all or nothing (R-13, R-14)."""
    _bulk(org, sku, users_file, filters, database_url, as_json, remove=True)


@subs_app.command("set")
def set_subscription(
    org: Org,
    sku: Annotated[str, typer.Option(help="The SKU.")],
    quantity: Annotated[int, typer.Option(help="Seats bought.")],
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Set the number of seats bought of a SKU."""
    found = _run(
        database_url,
        lambda container: container.directory.set_subscription(org, sku, quantity, actor=ACTOR),
    )
    _output(
        "subscription",
        [{"sku": found.sku, "quantity": found.quantity, "assigned": found.assigned}],
        as_json,
        one=True,
    )


@subs_app.command("list")
def list_subscriptions(
    org: Org, database_url: DatabaseUrl = None, as_json: JsonFlag = False
) -> None:
    """Seats bought, assigned and available per SKU."""
    found = _run(database_url, lambda container: container.directory.subscriptions(org))
    _output(
        "subscriptions",
        [
            {"sku": s.sku, "quantity": s.quantity, "assigned": s.assigned, "available": s.available}
            for s in found
        ],
        as_json,
    )


@numbers_app.command("add")
def add_number(
    org: Org,
    number: Annotated[str, typer.Option(help="E.164, e.g. +14255550100.")],
    kind: Annotated[
        str, typer.Option(help="user, service, service_toll_free, conference, conference_toll_free")
    ],
    assigned_to: Annotated[str | None, typer.Option(help="The user's UPN (user numbers).")] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a phone number to the organization."""
    phone = _run(
        database_url,
        lambda container: container.directory.add_number(
            org, number, kind, assigned_to, actor=ACTOR
        ),
    )
    _output(
        "number",
        [
            {
                "number": phone.number,
                "kind": phone.kind,
                "country": phone.country,
                "assigned_to": assigned_to,
            }
        ],
        as_json,
        one=True,
    )


@numbers_app.command("list")
def list_numbers(org: Org, database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """The organization's phone numbers."""
    found, upns = _run(database_url, lambda container: container.directory.numbers(org))
    _output(
        "numbers",
        [
            {
                "number": n.number,
                "kind": n.kind,
                "country": n.country,
                "assigned_to": upns.get(n.user_id or ""),
            }
            for n in found
        ],
        as_json,
    )
