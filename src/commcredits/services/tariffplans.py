"""Keeping imported CGRateS tariff plans: the files as imported, and what they hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

from commcredits.adapters.clock import Clock
from commcredits.domain.ids import new_id
from commcredits.domain.tariffplan import TariffPlan
from commcredits.store import tables
from commcredits.store.database import Store

FILES = (
    "Destinations.csv",
    "Timings.csv",
    "Rates.csv",
    "DestinationRates.csv",
    "RatingPlans.csv",
    "RatingProfiles.csv",
)


def store_tariffplan(store: Store, clock: Clock, folder: Path, plan: TariffPlan) -> dict[str, Any]:
    """Store a checked plan's files verbatim and make it the active plan."""
    files = {name: (folder / name).read_text("utf-8") for name in FILES if (folder / name).exists()}
    summary = plan.summary()
    plan_id = new_id("tp")
    with store.unit_of_work() as uow:
        uow.conn.execute(
            update(tables.tariff_plans).where(tables.tariff_plans.c.active).values(active=False)
        )
        uow.conn.execute(
            insert(tables.tariff_plans).values(
                id=plan_id,
                loaded_at=clock.now(),
                name=folder.name[:200] or "tariffplan",
                files=files,
                summary=summary,
                active=True,
            )
        )
        uow.commit()
    return {"id": plan_id, "name": folder.name, **summary}
