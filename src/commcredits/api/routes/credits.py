"""HTTP: Communications Credits (API.md, "Credits")."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, Router, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from commcredits.api.schemas_credits import (
    AddAgreement,
    AddCard,
    Adjust,
    AdjustmentOut,
    AutoRechargeIn,
    AutoRechargeOut,
    CreditsOut,
    EntryOut,
    InvoiceOut,
    NotificationOut,
    OrderOut,
    PaymentMethodOut,
    PlaceOrder,
)
from commcredits.api.support import blocking, container_of, idempotency_for
from commcredits.services.credits import AutoRechargeSettings, NewOrder
from commcredits.services.idempotency import check_key, fingerprint

AnyRequest = Request[Any, Any, Any]
Limit = Annotated[int, Parameter(ge=1, le=1000)]


def _settings(data: AutoRechargeIn) -> AutoRechargeSettings:
    return AutoRechargeSettings(
        enabled=data.enabled,
        trigger_amount=data.trigger_amount,
        recharge_amount=data.recharge_amount,
        payment_method_id=data.payment_method,
    )


@post(
    "/payment-methods",
    opt={"area": "credits"},
    status_code=201,
    summary="Add a card (only a token, brand, last4 and expiry are kept) or an agreement",
)
async def add_payment_method(
    request: AnyRequest, org: FromPath[str], data: JSONBody[AddCard | AddAgreement]
) -> PaymentMethodOut:
    credits = container_of(request).credits
    if isinstance(data, AddCard):
        method = await blocking(
            credits.add_card,
            org,
            number=data.number,
            exp_month=data.exp_month,
            exp_year=data.exp_year,
            cvc=data.cvc,
            holder=data.holder,
        )
    else:
        method = await blocking(
            credits.add_agreement, org, data.agreement_number, data.purchase_order
        )
    return PaymentMethodOut.of(method)


@get("/payment-methods", opt={"area": "credits"}, summary="List payment methods")
async def list_payment_methods(request: AnyRequest, org: FromPath[str]) -> list[PaymentMethodOut]:
    methods = await blocking(container_of(request).credits.payment_methods, org)
    return [PaymentMethodOut.of(method) for method in methods]


@delete("/payment-methods/{method_id:str}", opt={"area": "credits"}, summary="Remove one")
async def remove_payment_method(
    request: AnyRequest, org: FromPath[str], method_id: FromPath[str]
) -> None:
    await blocking(container_of(request).credits.remove_payment_method, org, method_id)


@post(
    "/credits/orders",
    opt={"area": "credits"},
    status_code=201,
    summary="Buy credits: a deposit with optional auto-recharge (R-20)",
)
async def place_order(
    request: AnyRequest, org: FromPath[str], data: JSONBody[PlaceOrder]
) -> Response[OrderOut]:
    credits = container_of(request).credits
    key = request.headers.get("idempotency-key")
    digest = None
    replayed = False
    if key is not None:
        key = check_key(key)
        digest = fingerprint(request.method, request.url.path, await request.body())
        replayed = await blocking(credits.order_for_key, org, key) is not None
    order = await blocking(
        credits.place_order,
        org,
        NewOrder(
            amount=data.amount,
            payment_method_id=data.payment_method,
            purchase_order=data.purchase_order,
            auto_recharge=_settings(data.auto_recharge) if data.auto_recharge else None,
        ),
        idempotency_key=key,
        fingerprint=digest,
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return Response(OrderOut.of(order), status_code=201, headers=headers)


@get("/credits/orders", opt={"area": "credits"}, summary="Deposits and recharges, newest first")
async def list_orders(
    request: AnyRequest, org: FromPath[str], kind: FromQuery[str | None] = None, limit: Limit = 100
) -> list[OrderOut]:
    orders = await blocking(container_of(request).credits.orders, org, kind=kind, limit=limit)
    return [OrderOut.of(order) for order in orders]


@get("/credits/orders/{order_id:str}", opt={"area": "credits"}, summary="One order")
async def get_order(request: AnyRequest, org: FromPath[str], order_id: FromPath[str]) -> OrderOut:
    return OrderOut.of(await blocking(container_of(request).credits.get_order, org, order_id))


@get("/credits", opt={"area": "credits"}, summary="Balance, reserved, available, lots")
async def get_credits(request: AnyRequest, org: FromPath[str]) -> CreditsOut:
    return CreditsOut.of(await blocking(container_of(request).credits.view, org))


@put(
    "/credits/auto-recharge",
    opt={"area": "credits"},
    summary="Auto-recharge settings (R-23; refused for postpaid, R-03)",
)
async def put_auto_recharge(
    request: AnyRequest, org: FromPath[str], data: JSONBody[AutoRechargeIn]
) -> AutoRechargeOut:
    container = container_of(request)
    settings = await blocking(container.credits.set_auto_recharge, org, _settings(data))
    currency = (await blocking(container.orgs.get, org)).currency
    return AutoRechargeOut.of(settings, currency)


@post(
    "/credits/adjustments",
    opt={"area": "adjustments"},
    status_code=201,
    summary="Support's signed adjustment of the balance (operator and org admin)",
)
async def adjust(request: AnyRequest, org: FromPath[str], data: JSONBody[Adjust]) -> AdjustmentOut:
    container = container_of(request)
    currency = (await blocking(container.orgs.get, org)).currency

    def render(adjustment: Any) -> AdjustmentOut:
        return AdjustmentOut.of(adjustment, currency)

    request_key = await idempotency_for(request, org, 201, render)
    adjustment = await blocking(
        container.credits.adjust, org, data.amount, data.reason, request=request_key
    )
    return render(adjustment)


@get("/credits/transactions", opt={"area": "credits"}, summary="Ledger entries, newest first")
async def transactions(
    request: AnyRequest,
    org: FromPath[str],
    limit: Limit = 100,
    before: Annotated[
        int | None, Parameter(ge=1, le=2**63 - 1, description="a seq to page from")
    ] = None,
) -> list[EntryOut]:
    container = container_of(request)
    currency = (await blocking(container.orgs.get, org)).currency
    entries = await blocking(container.credits.transactions, org, limit=limit, before_seq=before)
    return [EntryOut.of(entry, currency) for entry in entries]


@get("/invoices", opt={"area": "credits"}, summary="Invoices, newest first")
async def list_invoices(
    request: AnyRequest, org: FromPath[str], limit: Limit = 100
) -> list[InvoiceOut]:
    invoices = await blocking(container_of(request).credits.invoices, org, limit=limit)
    return [InvoiceOut.of(invoice) for invoice in invoices]


@get("/invoices/{invoice_id:str}", opt={"area": "credits"}, summary="One invoice")
async def get_invoice(
    request: AnyRequest, org: FromPath[str], invoice_id: FromPath[str]
) -> InvoiceOut:
    return InvoiceOut.of(await blocking(container_of(request).credits.invoice, org, invoice_id))


@get("/notifications", opt={"area": "credits"}, summary="Mails sent to the billing admins")
async def notifications(
    request: AnyRequest, org: FromPath[str], kind: FromQuery[str | None] = None, limit: Limit = 100
) -> list[NotificationOut]:
    container = container_of(request)
    await blocking(container.orgs.get, org)
    messages = await blocking(container.mailer.list_for_org, org, kind=kind, limit=limit)
    return [NotificationOut.of(message) for message in messages]


router = Router(
    path="/v1/orgs/{org:str}",
    route_handlers=[
        add_payment_method,
        list_payment_methods,
        remove_payment_method,
        place_order,
        list_orders,
        get_order,
        get_credits,
        put_auto_recharge,
        adjust,
        transactions,
        list_invoices,
        get_invoice,
        notifications,
    ],
    tags=["credits"],
)
