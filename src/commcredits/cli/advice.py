"""``commcredits advise``: funding advice from recent usage, or from a file of past calls."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from commcredits.api.routes.advice import AdviceOut, SizedAdviceOut, advisor_of
from commcredits.cli.main import DatabaseUrl, JsonFlag, _container, _fail, _print_json, app
from commcredits.cli.main import console as out
from commcredits.cli.main import errors as err
from commcredits.domain.errors import CommcreditsError


def _print_advice(data: dict[str, Any], title: str) -> None:
    currency = data["currency"]
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    basis = f"{data['basis_days']} days ({data['basis_from']} to {data['basis_to']})"
    if data["short_basis"]:
        basis += ", short"
    for label, value in (
        ("basis", basis),
        ("daily spend p50", f"{data['daily_spend_p50']} {currency}"),
        ("daily spend p95", f"{data['daily_spend_p95']} {currency}"),
        ("daily spend mean", f"{data['daily_spend_mean']} {currency}"),
        ("recommended deposit", f"{data['recommended_deposit']} {currency}"),
        ("recommended trigger", f"{data['recommended_trigger']} {currency}"),
        ("recommended recharge", f"{data['recommended_recharge']} {currency}"),
        ("balance", f"{data['balance']} {currency}"),
        ("days until empty", str(data["days_until_empty"])),
        ("runs out around", data["projected_empty_at"][:16].replace("T", " ") + " UTC"),
        ("auto-recharge", "on" if data["auto_recharge"] else "off"),
    ):
        table.add_row(label, value)
    out.print(table)
    if data["expiring_unused"]:
        lots = Table(title="lots expiring unused at this pace")
        for column in ("lot", "expires at", "remaining", "unused"):
            lots.add_column(column)
        for lot in data["expiring_unused"]:
            lots.add_row(lot["lot"], lot["expires_at"][:10], lot["remaining"], lot["unused"])
        out.print(lots)


def _print_sized(data: dict[str, Any]) -> None:
    _print_advice(data["advice"], "funding advice from the call file")
    months = Table(title="month by month")
    for column in ("month", "calls", "refused", "pool minutes used", "credit spend", "overage"):
        months.add_column(column)
    for m in data["months"]:
        pools = ", ".join(
            f"{p['country'] or '*'} {p['capability']} {p['kind']}: {p['used']}/{p['size']}"
            for p in m["pools"]
        )
        months.add_row(
            m["month"],
            str(m["calls"]),
            str(m["refused"]),
            pools or "-",
            m["credit_spend"],
            m["overage_spend"],
        )
    out.print(months)
    if data["refused"]:
        out.print("refused: " + ", ".join(f"{k} {v}" for k, v in data["refused"].items()))
    for problem in data["rejected_rows"][:50]:
        err.print(f"[yellow]line {problem['line']}[/yellow]: {problem['error']}")
    for note in data["notes"]:
        out.print(f"note: {note}")


def _rows(file: Path) -> list[dict[str, str]]:
    with file.open(encoding="utf-8-sig", newline="") as handle:
        return [dict(row) for row in csv.DictReader(handle)]


@app.command()
def advise(
    org: Annotated[str, typer.Option("--org", help="The organization's id.")],
    from_cdrs: Annotated[
        Path | None,
        typer.Option(
            "--from-cdrs",
            help="Size from a CSV of past calls (start, duration, user or caller, destination,"
            " direction); nothing is charged.",
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Recommend a deposit, an auto-recharge trigger and amount, and forecast the balance."""
    if from_cdrs is not None and not from_cdrs.exists():
        err.print(f"[red]error[/red] file_not_found: {from_cdrs}")
        raise typer.Exit(2)
    rows = _rows(from_cdrs) if from_cdrs is not None else None
    container = _container(database_url)
    try:
        advisor = advisor_of(container)
        answer: AdviceOut | SizedAdviceOut
        if rows is None:
            answer = AdviceOut.of(advisor.advice(org))
        else:
            answer = SizedAdviceOut.of(advisor.advise_from_cdrs(org, rows))
    except CommcreditsError as exc:
        _fail(exc)
    finally:
        container.close()
    # The same body as the HTTP API answers.
    data: dict[str, Any] = msgspec.to_builtins(answer)
    if as_json:
        _print_json(data)
    elif rows is None:
        _print_advice(data, "funding advice")
    else:
        _print_sized(data)
