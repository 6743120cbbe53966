"""Billing > Purchase services > Communications Credits (the checkout) and
Billing > Your products > Communications Credits (balance, lots, auto-recharge, invoices)."""

from __future__ import annotations

import secrets
from typing import Any

from litestar import get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromPath, FromQuery
from litestar.response import Response

from commcredits.api.support import blocking
from commcredits.console.web import (
    AnyRequest,
    Page,
    checked_form,
    page_context,
    see_other,
    text,
)
from commcredits.domain.credits import PaymentMethod, check_credits_offered
from commcredits.domain.errors import CommcreditsError, NotFound, RuleViolation
from commcredits.domain.money import Money, parse_money
from commcredits.services.advice import Advisor
from commcredits.services.charts import CHARTS, Charts
from commcredits.services.credits import AutoRechargeSettings, NewOrder

PURCHASE = "/console/orgs/{org}/billing/purchase/credits"
PRODUCTS = "/console/orgs/{org}/billing/products/credits"

NOTICES = {
    "order_paid": "Your order is paid: the credits are in your balance.",
    "order_pending": "The payment is being processed; the credits appear once it succeeds.",
    "auto_recharge_saved": "Auto-recharge settings saved.",
    "auto_recharge_off": "Auto-recharge is off.",
}

CARD_FIELDS = ("card_number", "exp_month", "exp_year", "cvc", "holder")
_SERVICE_FIELDS = {
    "number": "card_number",
    "payment_method": "payment",
    "Idempotency-Key": "payment",
    "id": "payment",
}


_AUTO_RECHARGE_FIELDS = {name: name for name in ("trigger_amount", "recharge_amount")} | {
    "payment_method": "payment_method",
    "id": "payment_method",
}


def _field(exc: CommcreditsError) -> str:
    return _SERVICE_FIELDS.get(exc.field or "", exc.field or "form")


def _refusal(org_country: str, billing: str) -> str | None:
    """Why this organization cannot buy credits, in plain words (R-02, R-05), or None."""
    try:
        check_credits_offered(org_country, billing)
    except CommcreditsError as exc:
        if exc.code == "credits_not_available_for_postpaid":
            return (
                "Your organization pays for calls after it makes them (postpaid billing), so it"
                " does not buy Communications Credits. Calls that go beyond the included minutes"
                " are billed as overage on your monthly invoice when overage is turned on."
            )
        return (
            "Communications Credits are not sold to organizations billed in your country."
            f" ({exc.message}.)"
        )
    return None


async def _purchase_page(
    page: Page,
    *,
    values: dict[str, str],
    errors: dict[str, str],
    status_code: int = 200,
) -> Response[Any]:
    assert page.org is not None
    methods: list[PaymentMethod] = await blocking(
        page.container.credits.payment_methods, page.org.id
    )
    values.setdefault("payment", _default_payment(methods))
    return page.render(
        "purchase.html",
        status_code=status_code,
        title="Purchase Communications Credits",
        nav="purchase",
        refusal=_refusal(page.org.country, page.org.billing),
        cards=[m for m in methods if m.type == "card"],
        agreements=[m for m in methods if m.type == "enterprise_agreement"],
        values=values,
        errors=errors,
        order_key=secrets.token_urlsafe(16),
        minimum=Money(page.container.credits.minimum_deposit, page.org.currency).format(),
    )


def _default_payment(methods: list[PaymentMethod]) -> str:
    cards = [m for m in methods if m.type == "card"]
    return f"method:{cards[-1].id}" if cards else "new_card"


@get("/orgs/{org:str}/billing/purchase/credits")
async def purchase_form(request: AnyRequest, org: FromPath[str]) -> Response[Any]:
    page = await page_context(request, org, "credits", "write")
    return await _purchase_page(
        page, values={"amount": "", "trigger_amount": "", "recharge_amount": ""}, errors={}
    )


def _form_values(form: FormMultiDict) -> dict[str, str]:
    names = (
        "amount",
        "auto_recharge",
        "trigger_amount",
        "recharge_amount",
        "payment",
        "exp_month",
        "exp_year",
        "holder",
        "agreement_number",
        "purchase_order",
    )
    # The card number and security code are never sent back to the browser.
    return {name: text(form, name) for name in names}


def _check_fields(page: Page, values: dict[str, str], form: FormMultiDict) -> dict[str, str]:
    """The mistakes worth pointing out before anything is charged or stored."""
    assert page.org is not None
    errors: dict[str, str] = {}
    try:
        amount = parse_money(values["amount"] or "", page.org.currency).amount
        if amount < page.container.credits.minimum_deposit:
            minimum = Money(page.container.credits.minimum_deposit, page.org.currency)
            errors["amount"] = f"The smallest deposit is {minimum.format()} {page.org.currency}."
    except CommcreditsError:
        errors["amount"] = f"Enter an amount in {page.org.currency}, for example 100.00."
    if values["auto_recharge"]:
        for name, label in (("recharge_amount", "recharge"), ("trigger_amount", "trigger")):
            if not values[name]:
                errors[name] = f"Enter the {label} amount, or turn auto-recharge off."
    payment = values["payment"]
    if payment == "new_card":
        for name in CARD_FIELDS:
            if not text(form, name):
                errors[name] = "Required for a new card."
    elif payment == "new_agreement":
        if not values["agreement_number"]:
            errors["agreement_number"] = "Enter the enterprise agreement number."
    elif not payment.startswith("method:"):
        errors["payment"] = "Choose how to pay."
    return errors


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise RuleViolation("enter a number", code="invalid_value", field=name) from None


@post("/orgs/{org:str}/billing/purchase/credits")
async def place_order(request: AnyRequest, org: FromPath[str]) -> Response[Any]:
    page = await page_context(request, org, "credits", "write")
    assert page.org is not None
    form = await checked_form(request, page)
    values = _form_values(form)
    if _refusal(page.org.country, page.org.billing):
        return await _purchase_page(page, values=values, errors={}, status_code=409)
    errors = _check_fields(page, values, form)
    if errors:
        return await _purchase_page(page, values=values, errors=errors, status_code=422)
    credits = page.container.credits
    payment = values["payment"]
    method_id = payment.removeprefix("method:")
    try:
        if payment == "new_card":
            card = await blocking(
                credits.add_card,
                org,
                number=text(form, "card_number"),
                exp_month=_int(text(form, "exp_month"), "exp_month"),
                exp_year=_int(text(form, "exp_year"), "exp_year"),
                cvc=text(form, "cvc"),
                holder=text(form, "holder"),
            )
            method_id = card.id
        elif payment == "new_agreement":
            agreement = await blocking(credits.add_agreement, org, values["agreement_number"], None)
            method_id = agreement.id
        # Once stored, a new card or agreement is offered as a stored one if the order fails.
        values["payment"] = f"method:{method_id}"
        settings = (
            AutoRechargeSettings(
                True, values["trigger_amount"], values["recharge_amount"], method_id
            )
            if values["auto_recharge"]
            else None
        )
        new = NewOrder(values["amount"], method_id, values["purchase_order"] or None, settings)
        order_key = text(form, "order_key")
        order = await blocking(
            credits.place_order,
            org,
            new,
            # The form's one-time key: a double submission buys once.
            idempotency_key=f"console-{order_key}"[:200] if order_key else None,
            fingerprint=f"console {new}",
        )
    except CommcreditsError as exc:
        return await _purchase_page(
            page, values=values, errors={_field(exc): _sentence(exc.message)}, status_code=422
        )
    if order.status == "failed":
        values["payment"] = f"method:{order.payment_method_id}"
        reason = order.failure_message or "The payment was refused."
        return await _purchase_page(
            page,
            values=values,
            errors={"payment": f"{_sentence(reason)} Nothing was charged and no credits added."},
            status_code=422,
        )
    notice = "order_paid" if order.status == "paid" else "order_pending"
    return see_other(PRODUCTS.format(org=org), notice=notice)


def _sentence(message: str) -> str:
    message = message.strip()
    if not message:
        return message
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


# -- your products --------------------------------------------------------------------------


@get("/orgs/{org:str}/billing/products/credits")
async def products(
    request: AnyRequest, org: FromPath[str], notice: FromQuery[str | None] = None
) -> Response[Any]:
    page = await page_context(request, org, "credits")
    return await _products_page(page, notice=NOTICES.get(notice or ""), errors={})


async def _products_page(
    page: Page, *, notice: str | None, errors: dict[str, str], status_code: int = 200
) -> Response[Any]:
    assert page.org is not None
    container = page.container
    view = await blocking(container.credits.view, page.org.id)
    methods = await blocking(container.credits.payment_methods, page.org.id)
    recharges = await blocking(container.credits.orders, page.org.id, kind="recharge", limit=20)
    invoices = await blocking(container.credits.invoices, page.org.id, limit=20)
    advice = None
    try:
        advice = await blocking(_advisor(page).advice, page.org.id)
    except CommcreditsError:
        advice = None
    describe = {m.id: m.describe() for m in methods}
    return page.render(
        "products.html",
        status_code=status_code,
        title="Communications Credits",
        nav="products",
        notice=notice,
        view=view,
        lots=sorted(view.lots, key=lambda lot: lot.purchased_at, reverse=True),
        settings=view.account.auto_recharge,
        methods=methods,
        describe=describe,
        recharges=recharges,
        invoices=invoices,
        advice=advice,
        errors=errors,
        currency=page.org.currency,
        postpaid=page.org.is_postpaid,
    )


def _advisor(page: Page) -> Advisor:
    return page.container.advisor


@post("/orgs/{org:str}/billing/products/credits/auto-recharge")
async def save_auto_recharge(request: AnyRequest, org: FromPath[str]) -> Response[Any]:
    page = await page_context(request, org, "credits", "write")
    form = await checked_form(request, page)
    enabled = bool(text(form, "enabled"))
    settings = AutoRechargeSettings(
        enabled,
        text(form, "trigger_amount") or None,
        text(form, "recharge_amount") or None,
        text(form, "payment_method") or None,
    )
    try:
        await blocking(page.container.credits.set_auto_recharge, org, settings)
    except CommcreditsError as exc:
        return await _products_page(
            page,
            notice=None,
            errors={
                _AUTO_RECHARGE_FIELDS.get(exc.field or "", "auto_recharge"): _sentence(exc.message)
            },
            status_code=422 if exc.code != "auto_recharge_not_allowed_for_postpaid" else 409,
        )
    notice = "auto_recharge_saved" if enabled else "auto_recharge_off"
    return see_other(PRODUCTS.format(org=org), notice=notice)


@post("/orgs/{org:str}/billing/products/credits/auto-recharge/off")
async def auto_recharge_off(request: AnyRequest, org: FromPath[str]) -> Response[Any]:
    page = await page_context(request, org, "credits", "write")
    await checked_form(request, page)
    await blocking(
        page.container.credits.set_auto_recharge, org, AutoRechargeSettings(enabled=False)
    )
    return see_other(PRODUCTS.format(org=org), notice="auto_recharge_off")


@get("/orgs/{org:str}/billing/invoices/{invoice_id:str}")
async def invoice(
    request: AnyRequest, org: FromPath[str], invoice_id: FromPath[str]
) -> Response[Any]:
    page = await page_context(request, org, "credits")
    found = await blocking(page.container.credits.invoice, org, invoice_id)
    return page.render(
        "invoice.html",
        title=f"Invoice {found.number}",
        nav="products",
        invoice=found,
    )


@get("/orgs/{org:str}/billing/invoices/{invoice_id:str}/download")
async def invoice_download(
    request: AnyRequest, org: FromPath[str], invoice_id: FromPath[str]
) -> Response[Any]:
    page = await page_context(request, org, "credits")
    found = await blocking(page.container.credits.invoice, org, invoice_id)
    response = page.render(
        "invoice_file.html",
        title=f"Invoice {found.number}",
        nav="products",
        invoice=found,
    )
    response.headers["Content-Disposition"] = f'attachment; filename="invoice-{found.number}.html"'
    return response


@get("/orgs/{org:str}/charts/{name:str}")
async def chart(
    request: AnyRequest,
    org: FromPath[str],
    name: FromPath[str],
    days: FromQuery[str | None] = None,
    from_date: FromQuery[str | None] = None,
    to_date: FromQuery[str | None] = None,
    month: FromQuery[str | None] = None,
) -> Response[bytes]:
    """A chart as SVG for an <img> on a console page."""
    chart_name = name.removesuffix(".svg")
    if chart_name not in CHARTS:
        raise NotFound("no such chart", code="chart_not_found")
    page = await page_context(request, org, "reports")
    container = page.container
    charts = Charts(container.store, container.clock, container.calls)
    data = await blocking(
        charts.chart,
        chart_name,
        org,
        days=int(days) if days and days.isdigit() else None,
        from_=from_date or None,
        to=to_date or None,
        month=month or None,
    )
    image = await blocking(charts.render, data, "svg")
    return Response(image, media_type="image/svg+xml")


handlers = [
    purchase_form,
    place_order,
    products,
    save_auto_recharge,
    auto_recharge_off,
    invoice,
    invoice_download,
    chart,
]
