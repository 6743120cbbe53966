"""``commcredits rates load|quote|import-tariffplan``: rate tables from the shell."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from commcredits.cli.main import (
    DatabaseUrl,
    JsonFlag,
    _container,
    _fail,
    _output,
    app,
    console,
    errors,
)
from commcredits.domain.errors import CommcreditsError
from commcredits.domain.money import Money, plain
from commcredits.domain.rating import RateTableError

rates_app = typer.Typer(
    help="Rate tables: load, quote, import CGRateS tariff plans.", no_args_is_help=True
)
app.add_typer(rates_app, name="rates")


def _time(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        errors.print(
            f"[red]error[/red] invalid_time: {option} takes RFC 3339, e.g. 2026-11-27T10:00:00Z"
        )
        raise typer.Exit(2) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@rates_app.command("load")
def load(
    file: Annotated[Path, typer.Argument(help="The rate table CSV.")],
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Check a rate table and make it the active one; every bad row is listed, nothing is
    loaded unless the whole file is valid."""
    if not file.exists():
        errors.print(f"[red]error[/red] file_not_found: {file}")
        raise typer.Exit(2)
    container = _container(database_url)
    try:
        with console.status(f"checking {file.name}"):
            loaded = container.rating.load(file.read_text(encoding="utf-8"), file.name)
    except RateTableError as exc:
        for problem in exc.problems[:200]:
            errors.print(f"{file}:{problem}")
        errors.print(
            f"[red]error[/red] invalid_rate_table: {len(exc.problems)} problems; nothing loaded"
        )
        raise typer.Exit(1) from None
    except CommcreditsError as exc:
        _fail(exc)
    finally:
        container.close()
    _output(
        "rate table",
        [{"table_id": loaded.id, "rates_loaded": loaded.rows, "name": loaded.name}],
        as_json,
        one=True,
    )


@rates_app.command("quote")
def quote(
    to: Annotated[str | None, typer.Option(help="The number, E.164.")] = None,
    service: Annotated[
        str, typer.Option(help="outbound, toll_free_in, conf_dialout, sms_out, sms_in")
    ] = "outbound",
    duration: Annotated[int, typer.Option(help="Seconds (messages: segments).")] = 60,
    at: Annotated[
        str | None, typer.Option(help="When the call starts (RFC 3339); default now.")
    ] = None,
    currency: Annotated[str | None, typer.Option(help="Only rows in this currency.")] = None,
    tariffplan: Annotated[
        Path | None, typer.Option(help="Quote from a CGRateS tariff-plan folder instead.")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Tariff plan: the tenant.")] = None,
    category: Annotated[str, typer.Option(help="Tariff plan: the category.")] = "call",
    subject: Annotated[str | None, typer.Option(help="Tariff plan: the subject.")] = None,
    destination: Annotated[
        str | None, typer.Option(help="Tariff plan: the destination number.")
    ] = None,
    answer_time: Annotated[
        str | None, typer.Option(help="Tariff plan: when the call was answered.")
    ] = None,
    usage: Annotated[
        str | None, typer.Option(help="Tariff plan: how long, e.g. 45s or 1m30s.")
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Price a call or message: from the active rate table, or from a tariff-plan folder."""
    if tariffplan is not None:
        from commcredits.cli.tariffplan import quote_tariffplan

        quote_tariffplan(
            tariffplan,
            tenant,
            category,
            subject,
            destination or to,
            _time(answer_time, "--answer-time"),
            usage,
            as_json,
        )
        return
    if to is None:
        errors.print("[red]error[/red] missing_option: --to NUMBER")
        raise typer.Exit(2)
    container = _container(database_url)
    try:
        table_id, dest, charge = container.rating.quote(
            to, service, duration, _time(at, "--at"), currency
        )
    except CommcreditsError as exc:
        _fail(exc)
    finally:
        container.close()
    rate = charge.rate
    _output(
        "quote",
        [
            {
                "to": dest.e164,
                "country": dest.country,
                "number_type": dest.number_type,
                "service": service,
                "rate": plain(rate.rate),
                "connection_fee": Money(rate.connection_fee, rate.currency).format_exact(),
                "billed_seconds": charge.units,
                "charge": Money(charge.charge, rate.currency).format(),
                "currency": rate.currency,
                "matched_line": rate.line,
                "matched": rate.prefix or f"{rate.country} {rate.number_type}",
                "description": rate.description,
                "table_id": table_id,
            }
        ],
        as_json,
        one=True,
    )
