"""``commcredits credits|payment-methods|invoices|ledger``: credits from the shell."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from commcredits.cli.main import (
    DatabaseUrl,
    JsonFlag,
    _output,
    _print_json,
    _run,
    _table,
    app,
    console,
)
from commcredits.domain.money import Money, plain
from commcredits.services.credits import AutoRechargeSettings, CreditsView, NewOrder
from commcredits.services.verify import verify_ledger

credits_app = typer.Typer(
    help="The credit balance: buy, show, auto-recharge, adjust.", no_args_is_help=True
)
methods_app = typer.Typer(help="Cards and enterprise agreements.", no_args_is_help=True)
ledger_app = typer.Typer(help="The ledger of credits.", no_args_is_help=True)
app.add_typer(credits_app, name="credits")
app.add_typer(methods_app, name="payment-methods")
app.add_typer(ledger_app, name="ledger")

Org = Annotated[str, typer.Option("--org", help="The organization's id.")]


def _view_rows(view: CreditsView) -> dict[str, Any]:
    currency = view.org.currency
    settings = view.account.auto_recharge

    def fmt(amount: Any) -> str | None:
        return None if amount is None else Money(amount, currency).format()

    return {
        "currency": currency,
        "balance": fmt(view.balance),
        "reserved": fmt(view.reserved),
        "available": fmt(view.available),
        "auto_recharge": {
            "enabled": settings.enabled,
            "trigger_amount": fmt(settings.trigger_amount),
            "recharge_amount": fmt(settings.recharge_amount),
            "payment_method": settings.payment_method_id,
            "status": settings.status,
        },
        "lots": [
            {
                "id": lot.id,
                "source": lot.source,
                "amount": fmt(lot.amount),
                "remaining": fmt(lot.remaining),
                "purchased_at": lot.purchased_at.isoformat(),
                "expires_at": lot.expires_at.isoformat(),
                "status": lot.status(view.at),
            }
            for lot in view.lots
        ],
    }


@credits_app.command("show")
def show(org: Org, database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """Balance, reserved, available, auto-recharge and every lot."""
    data = _view_rows(_run(database_url, lambda c: c.credits.view(org)))
    if as_json:
        _print_json(data)
        return
    console.print(
        f"balance [bold]{data['balance']} {data['currency']}[/bold]"
        f"  reserved {data['reserved']}  available {data['available']}"
    )
    recharge = data["auto_recharge"]
    if recharge["enabled"]:
        console.print(
            f"auto-recharge: {recharge['recharge_amount']} when below"
            f" {recharge['trigger_amount']} ({recharge['status']})"
        )
    else:
        console.print("auto-recharge: off")
    _table("lots", data["lots"])


@credits_app.command("buy")
def buy(
    org: Org,
    amount: Annotated[str, typer.Option(help='The deposit, e.g. "100.00".')],
    payment_method: Annotated[str, typer.Option(help="A payment method id.")],
    purchase_order: Annotated[str | None, typer.Option(help="A purchase-order number.")] = None,
    auto_recharge: Annotated[bool, typer.Option(help="Turn auto-recharge on.")] = False,
    trigger: Annotated[
        str | None, typer.Option(help="Recharge when the balance falls below.")
    ] = None,
    recharge: Annotated[str | None, typer.Option(help="Recharge with this amount.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Makes a retried purchase safe.")
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Buy credits: a deposit paid by a card or an enterprise agreement."""
    settings = AutoRechargeSettings(True, trigger, recharge) if auto_recharge else None
    order = _run(
        database_url,
        lambda c: c.credits.place_order(
            org,
            NewOrder(amount, payment_method, purchase_order, settings),
            idempotency_key=idempotency_key,
            fingerprint=f"cli {amount} {payment_method} {purchase_order} {settings}",
        ),
    )
    row = {
        "id": order.id,
        "status": order.status,
        "amount": Money(order.amount, order.currency).format(),
        "currency": order.currency,
        "invoice_id": order.invoice_id,
        "lot_id": order.lot_id,
        "failure_code": order.failure_code,
    }
    if as_json:
        _print_json(row)
    else:
        _table("order", [row])
    if order.status == "failed":
        raise typer.Exit(1)


@credits_app.command("auto-recharge")
def auto_recharge_command(
    org: Org,
    enable: Annotated[bool, typer.Option("--enable/--disable", help="On or off.")],
    trigger: Annotated[
        str | None, typer.Option(help="Recharge when the balance falls below.")
    ] = None,
    recharge: Annotated[str | None, typer.Option(help="Recharge with this amount.")] = None,
    payment_method: Annotated[str | None, typer.Option(help="The method to charge.")] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Change the auto-recharge settings (refused for postpaid organizations)."""
    wanted = AutoRechargeSettings(enable, trigger, recharge, payment_method)
    settings = _run(database_url, lambda c: c.credits.set_auto_recharge(org, wanted))
    row = {
        "enabled": settings.enabled,
        "trigger_amount": str(settings.trigger_amount) if settings.trigger_amount else None,
        "recharge_amount": str(settings.recharge_amount) if settings.recharge_amount else None,
        "payment_method": settings.payment_method_id,
        "status": settings.status,
    }
    if as_json:
        _print_json(row)
    else:
        _table("auto-recharge", [row])


@credits_app.command("adjust")
def adjust(
    org: Org,
    amount: Annotated[str, typer.Option(help='Signed, e.g. "25.00" or "-10.00".')],
    reason: Annotated[str, typer.Option(help="Why; kept in the ledger.")],
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Support's correction: add a lot, or spend FIFO like usage."""
    done, currency = _run(
        database_url,
        lambda c: (c.credits.adjust(org, amount, reason), c.orgs.get(org).currency),
    )
    rows = [
        {
            "id": e.id,
            "amount": Money(e.amount, currency).format(),
            "lot_id": e.lot_id,
            "balance_after": Money(e.balance_after, currency).format(),
        }
        for e in done.entries
    ]
    if as_json:
        _print_json(rows)
    else:
        _table("adjustment", rows)


@credits_app.command("transactions")
def transactions(
    org: Org,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """The ledger entries of an organization."""
    entries = _run(database_url, lambda c: c.credits.transactions(org, limit=limit))
    rows = [
        {
            "seq": e.seq,
            "at": e.at.isoformat(),
            "kind": e.kind,
            "amount": plain(e.amount),
            "lot_id": e.lot_id,
            "balance_after": plain(e.balance_after),
            "reference": e.reference,
        }
        for e in entries
    ]
    if as_json:
        _print_json(rows)
    else:
        _table("transactions", rows)


@methods_app.command("add-card")
def add_card(
    org: Org,
    number: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            help="The card number (never stored); asked"
            " for when left out, so it stays out of the shell's history.",
        ),
    ],
    exp_month: Annotated[int, typer.Option(help="1 to 12.")],
    exp_year: Annotated[int, typer.Option(help="Four digits.")],
    cvc: Annotated[
        str, typer.Option(prompt=True, hide_input=True, help="The security code (never stored).")
    ],
    holder: Annotated[str, typer.Option(help="The name on the card.")] = "",
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a card: only the token, brand, last four digits and expiry are kept."""
    method = _run(
        database_url,
        lambda c: c.credits.add_card(
            org, number=number, exp_month=exp_month, exp_year=exp_year, cvc=cvc, holder=holder
        ),
    )
    row = {
        "id": method.id,
        "brand": method.brand,
        "last4": method.last4,
        "expiry": f"{method.exp_month:02d}/{method.exp_year}",
    }
    _output("card", [row], as_json, one=True)


@methods_app.command("add-agreement")
def add_agreement(
    org: Org,
    agreement_number: Annotated[str, typer.Option(help="The enterprise agreement number.")],
    purchase_order: Annotated[str | None, typer.Option(help="A default purchase order.")] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Add an enterprise agreement (R-25)."""
    method = _run(
        database_url, lambda c: c.credits.add_agreement(org, agreement_number, purchase_order)
    )
    row = {
        "id": method.id,
        "agreement_number": method.agreement_number,
        "purchase_order": method.purchase_order,
    }
    _output("enterprise agreement", [row], as_json, one=True)


@methods_app.command("list")
def list_methods(org: Org, database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """The organization's payment methods."""
    methods = _run(database_url, lambda c: c.credits.payment_methods(org))
    rows = [{"id": m.id, "type": m.type, "name": m.describe()} for m in methods]
    _output("payment methods", rows, as_json)


@app.command("invoices")
def invoices(org: Org, database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """An organization's invoices, newest first."""
    found = _run(database_url, lambda c: c.credits.invoices(org))
    rows = [
        {
            "id": i.id,
            "number": i.number,
            "issued_at": i.issued_at.isoformat(),
            "amount": Money(i.amount, i.currency).format(),
            "currency": i.currency,
            "payment_method": i.payment_method,
            "purchase_order": i.purchase_order,
        }
        for i in found
    ]
    _output("invoices", rows, as_json)


@ledger_app.command("verify")
def verify(
    org: Annotated[str | None, typer.Option("--org", help="Only this organization.")] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Recompute every balance and lot from the ledger entries; exit 1 on any mismatch."""
    problems, totals = _run(database_url, lambda c: verify_ledger(c.store, org))
    if as_json:
        _print_json(
            {
                "ok": not problems,
                "problems": [str(p) for p in problems],
                "organizations": [
                    {
                        "org": t.org_id,
                        "credited": plain(t.credited),
                        "spent": plain(t.spent),
                        "forfeited": plain(t.forfeited),
                        "balance": plain(t.balance),
                    }
                    for t in totals
                ],
            }
        )
    else:
        for problem in problems:
            console.print(f"[red]mismatch[/red] {problem}")
        console.print(
            f"{len(totals)} organizations checked: "
            + (
                "[green]ledger consistent[/green]"
                if not problems
                else f"{len(problems)} mismatches"
            )
        )
    if problems:
        raise typer.Exit(1)
