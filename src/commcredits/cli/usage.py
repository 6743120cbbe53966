"""``commcredits cdrs import``: finished calls from a CSV file, rated and charged."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
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
    app,
    console,
    errors,
)
from commcredits.domain.errors import CommcreditsError
from commcredits.services.calls import CdrRecord

cdrs_app = typer.Typer(
    help="Finished calls (CDRs): rated and charged once each.", no_args_is_help=True
)
app.add_typer(cdrs_app, name="cdrs")

COLUMNS = ("call_id", "call_type", "user", "from", "to", "start_time", "duration_seconds")
# Records handed to the charging engine at a time (the progress bar moves per chunk).
CHUNK = 20_000


def _cell(row: dict[str, str | None], name: str) -> str:
    """A cell's text, stripped; a short row's missing cells read as empty."""
    return (row.get(name) or "").strip()


def _record(line: int, row: dict[str, str | None]) -> CdrRecord:
    try:
        start = datetime.fromisoformat(_cell(row, "start_time"))
        # In UTC now: an offset can carry a time past year 9999 (or before year 1).
        start = (start if start.tzinfo else start.replace(tzinfo=UTC)).astimezone(UTC)
        duration = int(_cell(row, "duration_seconds"))
    except (ValueError, OverflowError) as exc:
        raise ValueError(
            f"line {line}: start_time must be RFC 3339 and duration_seconds whole seconds ({exc})"
        ) from None
    return CdrRecord(
        call_id=_cell(row, "call_id"),
        call_type=_cell(row, "call_type"),
        user=_cell(row, "user") or None,
        from_number=_cell(row, "from"),
        to_number=_cell(row, "to"),
        start_time=start,
        duration_seconds=duration,
        conference_id=_cell(row, "conference_id") or None,
    )


@cdrs_app.command("import")
def import_cdrs(
    file: Annotated[Path, typer.Argument(help=f"CSV with {', '.join(COLUMNS)}[, conference_id].")],
    org: Annotated[str, typer.Option("--org", help="The organization's id.")],
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Rate and charge finished calls; a call id is charged at most once ever, and a bad
    record is reported while the good ones go through."""
    if not file.exists():
        errors.print(f"[red]error[/red] file_not_found: {file}")
        raise typer.Exit(2)
    records: list[CdrRecord] = []
    rejected: list[dict[str, Any]] = []
    try:
        with file.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            reader.fieldnames = [(name or "").strip().lower() for name in reader.fieldnames or []]
            missing = [c for c in COLUMNS if c not in reader.fieldnames]
            if missing:
                errors.print(f"[red]error[/red] missing_column: {', '.join(missing)}")
                raise typer.Exit(2)
            for row in reader:
                try:
                    records.append(_record(reader.line_num, row))
                except ValueError as exc:
                    rejected.append(
                        {"call_id": _cell(row, "call_id"), "status": "rejected", "error": str(exc)}
                    )
    except (UnicodeDecodeError, csv.Error) as exc:
        errors.print(f"[red]error[/red] unreadable_file: {file} is not a UTF-8 CSV file ({exc})")
        raise typer.Exit(2) from None
    counts = {"charged": 0, "duplicate": 0, "rejected": len(rejected)}
    container = _container(database_url)
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
        ) as progress:
            task = progress.add_task("charging calls", total=len(records))
            for start in range(0, len(records), CHUNK):
                for result in container.calls.import_cdrs(org, records[start : start + CHUNK]):
                    counts[result.status] += 1
                    if result.status == "rejected":
                        rejected.append(
                            {"call_id": result.call_id, "status": "rejected", "error": result.error}
                        )
                progress.update(task, advance=len(records[start : start + CHUNK]))
    except CommcreditsError as exc:
        _fail(exc)
    finally:
        container.close()
    if as_json:
        _print_json({**counts, "rejected_records": rejected})
    else:
        console.print(
            f"charged {counts['charged']}, duplicates {counts['duplicate']},"
            f" rejected {counts['rejected']}"
        )
        if rejected:
            _output("rejected", rejected[:50], False)
