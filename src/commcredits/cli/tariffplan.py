"""CGRateS tariff plans from the shell: ``rates import-tariffplan`` and ``rates quote
--tariffplan``. The format and its semantics are in docs/tariffplan.md."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from commcredits.cli.main import DatabaseUrl, JsonFlag, _container, _output, errors
from commcredits.cli.rates import rates_app
from commcredits.domain.tariffplan import (
    TariffPlan,
    TariffPlanError,
    UnauthorizedDestination,
    parse_duration,
)
from commcredits.services.tariffplans import store_tariffplan


def _load(folder: Path) -> TariffPlan:
    if not folder.is_dir():
        errors.print(f"[red]error[/red] not_a_folder: {folder}")
        raise typer.Exit(2)
    try:
        return TariffPlan.load(folder)
    except TariffPlanError as exc:
        errors.print(f"[red]error[/red] invalid_tariff_plan: {exc}")
        raise typer.Exit(1) from None


def quote_tariffplan(
    folder: Path,
    tenant: str | None,
    category: str,
    subject: str | None,
    destination: str | None,
    answer_time: datetime | None,
    usage: str | None,
    as_json: bool,
) -> None:
    missing = [
        name
        for name, value in (
            ("--tenant", tenant),
            ("--subject", subject),
            ("--destination", destination),
        )
        if not value
    ]
    if missing:
        errors.print(f"[red]error[/red] missing_option: {', '.join(missing)}")
        raise typer.Exit(2)
    assert tenant is not None
    assert subject is not None
    assert destination is not None
    try:
        duration = parse_duration(usage or "60s")
    except ValueError as exc:
        errors.print(f"[red]error[/red] invalid_usage: {exc}")
        raise typer.Exit(2) from None
    plan = _load(folder)
    try:
        result = plan.quote(
            tenant=tenant,
            category=category,
            subject=subject,
            destination=destination,
            answer_time=answer_time or datetime.now(UTC),
            usage=duration,
        )
    except UnauthorizedDestination as exc:
        errors.print(f"UNAUTHORIZED_DESTINATION: {exc.message}")
        raise typer.Exit(1) from None
    _output(
        "tariff plan quote",
        [
            {
                "cost": format(result.cost, "f"),
                "connect_fee": format(result.connect_fee, "f"),
                "rating_plan": result.rating_plan,
                "destination_id": result.destination_id,
                "matched_prefix": result.matched_prefix,
                "usage_seconds": int(duration.total_seconds()),
            }
        ],
        as_json,
        one=True,
    )


@rates_app.command("import-tariffplan")
def import_tariffplan(
    folder: Annotated[Path, typer.Argument(help="A folder of CGRateS tariff-plan CSV files.")],
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Check a CGRateS tariff plan (every bad line listed) and keep it as the active plan."""
    plan = _load(folder)
    container = _container(database_url)
    try:
        stored = store_tariffplan(container.store, container.clock, folder, plan)
    finally:
        container.close()
    _output("tariff plan", [stored], as_json, one=True)
