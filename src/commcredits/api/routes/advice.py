"""HTTP: funding advice (API.md, ``/funding-advice``; R-55)."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any

from litestar import Request, Router, get, post
from litestar.params import FromPath
from msgspec import Struct

from commcredits.api.support import blocking, container_of
from commcredits.app import Container
from commcredits.domain.errors import InvalidRequest
from commcredits.domain.money import Money
from commcredits.services.advice import Advisor, FundingAdvice, SizedAdvice

AnyRequest = Request[Any, Any, Any]
MAX_FILE_BYTES = 64 * 1024 * 1024


def advisor_of(container: Container) -> Advisor:
    """The container's advisor, or one built from its parts."""
    advisor = getattr(container, "advisor", None)
    if isinstance(advisor, Advisor):
        return advisor
    return Advisor(
        container.store,
        container.clock,
        container.catalogue,
        container.rating,
        minimum_deposit=container.settings.minimum_deposit,
    )


class ExpiringLotOut(Struct):
    lot: str
    expires_at: datetime
    remaining: str
    unused: str


class AdviceOut(Struct):
    recommended_deposit: str
    recommended_trigger: str
    recommended_recharge: str
    daily_spend_p50: str
    daily_spend_p95: str
    days_until_empty: int
    basis_days: int
    currency: str
    daily_spend_mean: str
    basis_from: date
    basis_to: date
    short_basis: bool
    balance: str
    projected_empty_at: datetime
    expiring_unused: list[ExpiringLotOut]
    auto_recharge: bool
    at: datetime

    @classmethod
    def of(cls, funding: FundingAdvice) -> AdviceOut:
        advice = funding.advice
        currency = advice.currency

        def fmt(amount: Any) -> str:
            return Money(amount, currency).format()

        runway, recommended = advice.runway, advice.recommendation
        return cls(
            recommended_deposit=fmt(recommended.deposit),
            recommended_trigger=fmt(recommended.trigger),
            recommended_recharge=fmt(recommended.recharge),
            daily_spend_p50=fmt(advice.daily_spend_p50),
            daily_spend_p95=fmt(advice.daily_spend_p95),
            days_until_empty=runway.days_until_empty,
            basis_days=advice.basis_days,
            currency=currency,
            daily_spend_mean=fmt(advice.daily_spend_mean),
            basis_from=advice.basis_from,
            basis_to=advice.basis_to,
            short_basis=advice.short_basis,
            balance=fmt(runway.balance),
            projected_empty_at=runway.empty_at,
            expiring_unused=[
                ExpiringLotOut(lot.lot_id, lot.expires_at, fmt(lot.remaining), fmt(lot.unused))
                for lot in runway.expiring_unused
            ],
            auto_recharge=funding.auto_recharge,
            at=funding.at,
        )


class PoolMonthOut(Struct):
    country: str | None
    capability: str
    kind: str
    user: str | None
    size: int
    used: int


class MonthOut(Struct):
    month: str
    calls: int
    refused: int
    pools: list[PoolMonthOut]
    credit_spend: str
    overage_spend: str


class RowProblemOut(Struct):
    line: int
    error: str


class SizedAdviceOut(Struct):
    advice: AdviceOut
    months: list[MonthOut]
    calls: int
    refused: dict[str, int]
    unknown_users: int
    rejected_rows: list[RowProblemOut]
    notes: list[str]

    @classmethod
    def of(cls, sized: SizedAdvice) -> SizedAdviceOut:
        currency = sized.advice.advice.currency
        return cls(
            advice=AdviceOut.of(sized.advice),
            months=[
                MonthOut(
                    month=m.month,
                    calls=m.calls,
                    refused=m.refused,
                    pools=[
                        PoolMonthOut(
                            p.pool.country,
                            p.pool.capability,
                            p.pool.kind,
                            p.pool.user_id,
                            p.size,
                            p.used,
                        )
                        for p in m.pools
                    ],
                    credit_spend=Money(m.credit_spend, currency).format(),
                    overage_spend=Money(m.overage_spend, currency).format(),
                )
                for m in sized.months
            ],
            calls=sized.calls,
            refused=sized.refused,
            unknown_users=sized.unknown_users,
            rejected_rows=[RowProblemOut(p.line, p.error) for p in sized.rejected],
            notes=sized.notes,
        )


def read_csv(body: bytes) -> list[dict[str, str]]:
    """The rows of a CSV file of calls, header first; UTF-8 with or without a BOM."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest("the call file must be UTF-8 text", code="invalid_encoding") from None
    return [dict(row) for row in csv.DictReader(io.StringIO(text, newline=""))]


@get(
    "/funding-advice",
    opt={"area": "credits"},
    summary="Recommended deposit, trigger and recharge from recent usage (R-55)",
)
async def funding_advice(request: AnyRequest, org: FromPath[str]) -> AdviceOut:
    advisor = advisor_of(container_of(request))
    return AdviceOut.of(await blocking(advisor.advice, org))


@post(
    "/funding-advice:from-cdrs",
    opt={"area": "credits", "access": "read", "body_media_type": "text/csv"},
    status_code=200,
    request_max_body_size=MAX_FILE_BYTES,
    summary="Size funding from a CSV file of past calls (text/csv); charges nothing",
)
async def funding_advice_from_cdrs(request: AnyRequest, org: FromPath[str]) -> SizedAdviceOut:
    rows = read_csv(await request.body())
    advisor = advisor_of(container_of(request))
    return SizedAdviceOut.of(await blocking(advisor.advise_from_cdrs, org, rows))


router = Router(
    path="/v1/orgs/{org:str}",
    route_handlers=[funding_advice, funding_advice_from_cdrs],
    tags=["credits"],
)
