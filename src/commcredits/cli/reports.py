"""``commcredits report pstn|sms|pools``: usage reports exported to a file (R-50..R-54)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from commcredits.cli.main import (
    DatabaseUrl,
    JsonFlag,
    _container,
    _fail,
    _print_json,
    app,
    console,
    errors,
)
from commcredits.domain.errors import CommcreditsError
from commcredits.services.reports import FORMATS, Reports

report_app = typer.Typer(help="Usage reports: PSTN calls, SMS, minute pools.", no_args_is_help=True)
app.add_typer(report_app, name="report")

Org = Annotated[str, typer.Option("--org", help="The organization's id.")]
Days = Annotated[int | None, typer.Option("--days", help="7 or 28: the last N UTC days.")]
From = Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD (UTC).")]
To = Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (UTC), included.")]
User = Annotated[str | None, typer.Option("--user", help="Only this user (UPN).")]
CallType = Annotated[str | None, typer.Option("--call-type", help="Only this call type.")]
Capability = Annotated[str | None, typer.Option("--capability", help="Only this capability.")]
Format = Annotated[str, typer.Option("--format", help="csv, xlsx or zip")]
Output = Annotated[
    Path | None, typer.Option("-o", "--output", help="File to write (default: its usual name).")
]
Masking = Annotated[
    bool | None,
    typer.Option(
        "--masking/--no-masking",
        help="Mask the other party's number (default: as the billing country requires).",
    ),
]


def _export(
    report: str,
    org: str,
    days: int | None,
    from_: str | None,
    to: str | None,
    user: str | None,
    call_type: str | None,
    capability: str | None,
    fmt: str,
    output: Path | None,
    masking: bool | None,
    database_url: str | None,
    as_json: bool,
) -> None:
    if fmt not in FORMATS:
        errors.print("[red]error[/red] invalid_value: --format is csv, xlsx or zip")
        raise typer.Exit(2)
    container = _container(database_url)
    try:
        reports = Reports(container.store, container.clock, container.calls)
        request = reports.request(
            report,
            org,
            days=days,
            from_=from_,
            to=to,
            user=user,
            call_type=call_type,
            capability=capability,
            masking=masking,
        )
        total = reports.count(request)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
        ) as progress:
            task = progress.add_task(f"{report} report rows", total=total)
            export = reports.export(
                request, fmt, progress=lambda rows: progress.update(task, advance=rows)
            )
            target = output or Path(export.file_name)
            partial = target.with_name(target.name + ".partial")
            size = 0
            with partial.open("wb") as handle:
                for chunk in export.chunks:
                    handle.write(chunk)
                    size += len(chunk)
            partial.replace(target)
    except CommcreditsError as exc:
        _fail(exc)
    finally:
        container.close()
    summary = {
        "report": report,
        "file": str(target),
        "format": fmt,
        "rows": total,
        "bytes": size,
        **{k: v for k, v in request.parameters().items() if k in ("from", "to", "masking")},
    }
    if as_json:
        _print_json(summary)
    else:
        console.print(
            f"{total} rows ({summary['from']} to {summary['to']}) written to {target}"
            f" ({size:,} bytes)"
        )


def _command(report: str, doc: str) -> None:
    def command(
        org: Org,
        days: Days = None,
        from_: From = None,
        to: To = None,
        user: User = None,
        call_type: CallType = None,
        capability: Capability = None,
        fmt: Format = "csv",
        output: Output = None,
        masking: Masking = None,
        database_url: DatabaseUrl = None,
        as_json: JsonFlag = False,
    ) -> None:
        _export(
            report,
            org,
            days,
            from_,
            to,
            user,
            call_type,
            capability,
            fmt,
            output,
            masking,
            database_url,
            as_json,
        )

    command.__doc__ = doc
    report_app.command(report)(command)


_command("pstn", "PSTN usage: one row per ended call, the columns of R-50 (default: 28 days).")
_command("sms", "SMS usage: one row per message sent (R-53; default: 28 days).")
_command("pools", "Minute and message pools per month (R-54; default: this month).")
