"""``commcredits demo``: build the demo organization, run its months, summarize, serve."""

from __future__ import annotations

import secrets
from dataclasses import asdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import make_url

from commcredits.app import Container, build
from commcredits.cli.main import DatabaseUrl, JsonFlag, _print_json, app, console, errors
from commcredits.domain.money import Money

if TYPE_CHECKING:
    from commcredits.demo import DemoOptions, DemoOutcome
    from commcredits.demo.summary import DemoSummary, MonthFigures

# The demo's modules load when the command runs, not with every other command.
DEFAULT_DATABASE_URL = "sqlite:///var/demo.db"


@app.command()
def demo(
    seed: Annotated[
        int, typer.Option(help="Seed of the simulated traffic: same seed, same demo.")
    ] = 1,
    months: Annotated[int, typer.Option(min=1, max=12, help="Months of traffic to simulate.")] = 3,
    users: Annotated[int, typer.Option(min=8, max=500, help="People in the organization.")] = 50,
    database_url: DatabaseUrl = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Delete an earlier demo database and build it again.")
    ] = False,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the API and console afterwards.")
    ] = True,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Build a demo organization, run simulated months of traffic through the real API, print a
    summary read back from the reports and the ledger, then serve it (unless --no-serve).

    The demo has its own database (sqlite:///var/demo.db unless --database-url says otherwise)
    and never writes to one that holds anything it did not make. Run again, it shows the demo
    it built before; --fresh builds it again.
    """
    from commcredits import logs
    from commcredits.demo import DatabaseState, DemoOptions, inspect_database
    from commcredits.demo.run import demo_settings

    url = database_url or DEFAULT_DATABASE_URL
    state = inspect_database(url)
    if state is DatabaseState.FOREIGN:
        errors.print(
            f"[red]error[/red] database_not_demo: {url} holds organizations or keys the demo"
            " did not make; the demo runs on an empty database or its own"
            f" (default {DEFAULT_DATABASE_URL})"
        )
        raise typer.Exit(1)
    if fresh and state is DatabaseState.DEMO:
        _delete_demo_database(url)
    settings = demo_settings(url, host=host, port=port)
    logs.configure(settings.log_level)
    container = build(settings)
    try:
        options = DemoOptions(seed=seed, months=months, users=users)
        outcome = _run(container, options, show_progress=not as_json)
        if outcome is None:
            raise typer.Exit(1)
        password = _demo_sign_in(container, outcome.org_id)
        url_base = f"http://{settings.host}:{settings.port}"
        if as_json:
            _print_json(_as_json(outcome, url_base, password))
        else:
            _print_summary(outcome, built_now=outcome.result is not None)
            _print_where_to_look(container, outcome, url_base, password, serving=serve)
        if serve:
            import uvicorn

            from commcredits.api.app import create_app

            uvicorn.run(
                create_app(container),
                host=settings.host,
                port=settings.port,
                log_level=settings.log_level.lower(),
                access_log=False,
            )
    finally:
        container.close()


def _delete_demo_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        errors.print(
            "[red]error[/red] fresh_needs_sqlite: --fresh deletes the demo's SQLite file;"
            " for another database, drop and create it yourself"
        )
        raise typer.Exit(1)
    for suffix in ("", "-wal", "-shm"):
        Path(parsed.database + suffix).unlink(missing_ok=True)


def _run(container: Container, options: DemoOptions, *, show_progress: bool) -> DemoOutcome | None:
    from commcredits.demo import run_demo
    from commcredits.demo.run import UnfinishedDemo

    progress = Progress(
        TextColumn("[bold]simulating[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=False,
        disable=not show_progress,
    )
    with progress:
        task = progress.add_task("signing up", total=None)

        def advance(done: int, total: int, line: str) -> None:
            progress.update(task, completed=done, total=total, description=line)

        try:
            return run_demo(container, options, advance)
        except UnfinishedDemo as exc:
            errors.print(f"[red]error[/red] demo_unfinished: {exc}")
            return None


def _money(amount: Decimal, currency: str) -> str:
    return Money(amount, currency).format()


def _print_summary(outcome: DemoOutcome, *, built_now: bool) -> None:
    from commcredits.demo.people import ORG_NAME

    summary = outcome.summary
    currency = summary.currency
    cols = [*summary.months, summary.total]
    plural = "s" if outcome.months > 1 else ""
    table = Table(title=f"{ORG_NAME}: {outcome.months} simulated month{plural}")
    table.add_column("")
    for month in summary.months:
        year, number = (int(part) for part in month.month.split("-"))
        label = date(year, number, 1).strftime("%b %Y")
        table.add_column(label, justify="right")
    table.add_column("total", justify="right", style="bold")
    rows: list[tuple[str, list[str]]] = [
        ("calls (PSTN usage report)", [f"{m.calls:,}" for m in cols]),
        ("call minutes", [f"{m.call_minutes:,}" for m in cols]),
        ("minutes from calling-plan and dial-out pools", [f"{m.pool_minutes:,}" for m in cols]),
        ("charged to credits", [_money(m.charged, currency) for m in cols]),
        ("recharges paid", [f"{m.recharges} ({_money(m.recharged, currency)})" for m in cols]),
        ("recharges declined", [str(m.recharges_declined) for m in cols]),
        (
            "lots expired (forfeited)",
            [f"{m.expiries} ({_money(m.expired, currency)})" for m in cols],
        ),
        ("mails sent", [str(m.mails_sent) for m in cols]),
    ]
    for label, values in rows:
        table.add_row(label, *values)
    console.print(table)
    _print_ledger(summary)
    if not built_now:
        console.print("(built earlier in this database; [bold]--fresh[/bold] builds it again)")


def _as_json(outcome: DemoOutcome, base: str, password: str) -> dict[str, Any]:
    """The summary for scripts: amounts as decimal strings, as everywhere in the API."""
    from commcredits.demo.people import ADMIN_EMAIL

    summary = outcome.summary

    def figures(month: MonthFigures) -> dict[str, Any]:
        return {
            key: _money(value, summary.currency) if isinstance(value, Decimal) else value
            for key, value in asdict(month).items()
        }

    ledger = summary.ledger
    return {
        "org": outcome.org_id,
        "currency": summary.currency,
        "months": [figures(month) for month in summary.months],
        "total": figures(summary.total),
        "balance": _money(summary.balance, summary.currency),
        "auto_recharge_status": summary.auto_recharge_status,
        "mails_by_kind": summary.mails_by_kind,
        "ledger": None
        if ledger is None
        else {
            "consistent": ledger.consistent,
            "problems": list(ledger.problems),
            "credited": _money(ledger.credited, summary.currency),
            "spent": _money(ledger.spent, summary.currency),
            "forfeited": _money(ledger.forfeited, summary.currency),
            "balance": _money(ledger.balance, summary.currency),
        },
        "built_now": outcome.result is not None,
        "console": f"{base}/console",
        "sign_in": {"email": ADMIN_EMAIL, "password": password},
        "operator_key": outcome.operator_key.secret,
    }


def _print_ledger(summary: DemoSummary) -> None:
    currency = summary.currency
    console.print(
        f"balance {_money(summary.balance, currency)} {currency};"
        f" auto-recharge {summary.auto_recharge_status}"
    )
    ledger = summary.ledger
    if ledger is None:
        return
    verdict = "[green]consistent[/green]" if ledger.consistent else "[red]MISMATCH[/red]"
    console.print(
        f"ledger verify: {verdict} since sign-up: in {_money(ledger.credited, currency)}"
        f" = spent {_money(ledger.spent, currency)}"
        f" + forfeited {_money(ledger.forfeited, currency)}"
        f" + balance {_money(ledger.balance, currency)}"
    )
    for problem in ledger.problems:
        console.print(f"  [red]mismatch[/red] {problem}")
    mails = summary.mails_by_kind
    console.print(
        f"mails sent since sign-up: {sum(mails.values())}"
        + (" (" + ", ".join(f"{kind} {count}" for kind, count in mails.items()) + ")")
    )


def _demo_sign_in(container: Container, org_id: str) -> str:
    """Give the demo's global admin a fresh console password, shown once like a key."""
    from commcredits.demo.people import ADMIN_EMAIL

    password = secrets.token_urlsafe(12)
    container.signin.set_password(org_id, ADMIN_EMAIL, password)
    return password


def _print_where_to_look(
    container: Container, outcome: DemoOutcome, base: str, password: str, *, serving: bool
) -> None:
    from commcredits.demo.people import ADMIN_EMAIL

    org = outcome.org_id
    console.print()
    console.print(f"console:  [bold]{base}/console[/bold]")
    console.print(f"  sign in as [bold]{ADMIN_EMAIL}[/bold] with [bold]{password}[/bold]")
    console.print(f"API:      {base}/v1/orgs/{org}  (OpenAPI at {base}/openapi.json)")
    console.print(f"  operator key (shown once): [bold]{outcome.operator_key.secret}[/bold]")
    console.print(f"database: {container.settings.database_url}; clock: simulated")
    console.print(f"mail:     {container.settings.mail_spool_dir}/*.eml")
    if serving:
        console.print(f"serving on {base} (Ctrl-C to stop)")
