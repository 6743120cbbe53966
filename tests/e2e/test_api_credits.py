"""The Credits contract over HTTP (API.md "Credits"; RULES.md R-01..R-05 and R-20..R-28).

Every test here moves money through the real service on SQLite with the sandbox gateway and a
simulated clock starting 2026-01-15T09:00Z; `ledger verify` must be clean after each one.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from commcredits.adapters.payments import GatewayTimeout, SandboxGateway
from commcredits.app import Container
from tests.conftest import CollectingTransport

Client = TestClient  # type: ignore[type-arg]

pytestmark = pytest.mark.usefixtures("sqlite_ledger_checked")

CONTOSO = {"name": "Contoso", "country": "US", "currency": "USD", "billing": "prepaid"}
VISA_OK = "4242 4242 4242 4242"
VISA_DECLINED = "4000000000000002"
AUTO_RECHARGE = {"enabled": True, "trigger_amount": "20.00", "recharge_amount": "50.00"}


def _org(client: Client, **overrides: Any) -> str:
    response = client.post("/v1/orgs", json={**CONTOSO, **overrides})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _key(client: Client, org_id: str, role: str) -> str:
    response = client.post(f"/v1/orgs/{org_id}/keys", json={"name": f"{role} key", "role": role})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])
    return dict(body["error"])


def _admin(client: Client, org_id: str, email: str, *roles: str) -> None:
    body = {"email": email, "display_name": email.split("@")[0].title(), "roles": list(roles)}
    response = client.post(f"/v1/orgs/{org_id}/admins", json=body)
    assert response.status_code == 201, response.text


def _card_body(number: str = VISA_OK, **overrides: Any) -> dict[str, Any]:
    body = {
        "type": "card",
        "number": number,
        "exp_month": 12,
        "exp_year": 2030,
        "cvc": "123",
        "holder": "Pat Doe",
    }
    return {**body, **overrides}


def _card(client: Client, org_id: str, number: str = VISA_OK, **overrides: Any) -> str:
    response = client.post(
        f"/v1/orgs/{org_id}/payment-methods", json=_card_body(number, **overrides)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _order(client: Client, org_id: str, method: str, amount: str = "100.00", **extra: Any) -> Any:
    body = {"amount": amount, "payment_method": method, **extra}
    return client.post(f"/v1/orgs/{org_id}/credits/orders", json=body)


def _paid(client: Client, org_id: str, method: str, amount: str = "100.00", **extra: Any) -> Any:
    response = _order(client, org_id, method, amount, **extra)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "paid", response.text
    return response.json()


def _adjust(client: Client, org_id: str, amount: str, reason: str = "support") -> Any:
    return client.post(
        f"/v1/orgs/{org_id}/credits/adjustments", json={"amount": amount, "reason": reason}
    )


def _adjust_as(client: Client, org: str, key: str, amount: str) -> Any:
    return client.post(
        f"/v1/orgs/{org}/credits/adjustments",
        json={"amount": amount, "reason": "support"},
        headers=_as(key),
    )


def _credits(client: Client, org_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/orgs/{org_id}/credits")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _notifications(client: Client, org_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    response = client.get(f"/v1/orgs/{org_id}/notifications")
    assert response.status_code == 200, response.text
    return [n for n in response.json() if kind is None or n["kind"] == kind]


def _move_clock(client: Client, now: str) -> list[dict[str, Any]]:
    response = client.post("/v1/system/clock", json={"now": now})
    assert response.status_code == 200, response.text
    return list(response.json()["jobs"])


def _sandbox(container: Container) -> SandboxGateway:
    assert isinstance(container.gateway, SandboxGateway)
    return container.gateway


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _database_bytes(container: Container) -> bytes:
    path = Path(container.settings.database_url.removeprefix("sqlite:///"))
    files = [path, path.with_name(f"{path.name}-wal")]
    assert path.exists()
    return b"".join(file.read_bytes() for file in files if file.exists())


# -- payment methods (R-25) -------------------------------------------------------------------


def test_a_card_is_kept_as_brand_last4_and_expiry_and_its_number_and_cvc_are_stored_nowhere(
    client: Client, sqlite_container: Container
) -> None:
    """R-25; docs/payments.md: the number and the security code are never stored."""
    org = _org(client)
    # An Amex test number: its four-digit security code is too specific to turn up by chance
    # among the random ids and tokens in the database file.
    number, cvc = "3782 822463 10005", "7391"
    response = client.post(
        f"/v1/orgs/{org}/payment-methods",
        json=_card_body(number, cvc=cvc, exp_month=7, exp_year=2031),
    )
    assert response.status_code == 201, response.text
    card = response.json()
    assert card["id"].startswith("pm_")
    assert (card["type"], card["brand"], card["last4"]) == ("card", "amex", "0005")
    assert (card["exp_month"], card["exp_year"]) == (7, 2031)
    assert not {"number", "cvc", "token"} & set(card)
    listed = client.get(f"/v1/orgs/{org}/payment-methods")
    digits = number.replace(" ", "")
    for text in (response.text, listed.text):
        assert digits not in text
        assert cvc not in text
    stored = _database_bytes(sqlite_container)
    assert b"tok_sb_" in stored  # the card row itself is there to be searched
    for secret in (digits, number, "822463", cvc):
        assert secret.encode() not in stored, secret


def test_a_card_number_failing_the_luhn_check_is_422_invalid_card_number(client: Client) -> None:
    """R-25: checked before the gateway is asked; the error does not repeat the number."""
    org = _org(client)
    response = client.post(
        f"/v1/orgs/{org}/payment-methods", json=_card_body("4242 4242 4242 4241")
    )
    assert response.status_code == 422, response.text
    error = _error(response)
    assert (error["code"], error["field"]) == ("invalid_card_number", "number")
    assert "4242" not in error["message"]
    assert client.get(f"/v1/orgs/{org}/payment-methods").json() == []


def test_a_card_expired_by_the_service_clock_is_422_card_expired(client: Client) -> None:
    """R-25, judged by the service clock."""
    org = _org(client)
    # The simulated clock reads January 2026: December 2025 is over, January 2026 is not.
    expired = client.post(
        f"/v1/orgs/{org}/payment-methods", json=_card_body(exp_month=12, exp_year=2025)
    )
    assert expired.status_code == 422, expired.text
    assert _error(expired)["code"] == "card_expired"
    current = client.post(
        f"/v1/orgs/{org}/payment-methods", json=_card_body(exp_month=1, exp_year=2026)
    )
    assert current.status_code == 201, current.text


def test_an_enterprise_agreement_pays_at_once_and_its_purchase_order_reaches_the_invoice(
    client: Client, sqlite_container: Container
) -> None:
    """R-25: several agreements; the buyer picks one and may attach a purchase order (R-24)."""
    org = _org(client)
    first = client.post(
        f"/v1/orgs/{org}/payment-methods",
        json={"type": "enterprise_agreement", "agreement_number": "EA-1", "purchase_order": "PO-7"},
    )
    assert first.status_code == 201, first.text
    assert first.json()["agreement_number"] == "EA-1"
    assert first.json()["purchase_order"] == "PO-7"
    second = client.post(
        f"/v1/orgs/{org}/payment-methods",
        json={"type": "enterprise_agreement", "agreement_number": "EA-2"},
    )
    assert second.status_code == 201, second.text
    again = client.post(
        f"/v1/orgs/{org}/payment-methods",
        json={"type": "enterprise_agreement", "agreement_number": "EA-2"},
    )
    assert again.status_code == 409
    assert _error(again)["code"] == "payment_method_exists"

    with_po = _paid(client, org, second.json()["id"], "500.00", purchase_order="PO-99")
    default_po = _paid(client, org, first.json()["id"], "250.00")
    invoices = {i["order_id"]: i for i in client.get(f"/v1/orgs/{org}/invoices").json()}
    assert invoices[with_po["id"]]["purchase_order"] == "PO-99"
    assert invoices[with_po["id"]]["payment_method"] == "Enterprise agreement EA-2"
    assert invoices[default_po["id"]]["purchase_order"] == "PO-7"
    assert invoices[default_po["id"]]["payment_method"] == "Enterprise agreement EA-1"
    assert _credits(client, org)["balance"] == "750.00"
    assert _sandbox(sqlite_container).charges() == []


# -- orders (R-20, R-24, R-27) ----------------------------------------------------------------


def test_an_order_paid_by_card_is_201_paid_with_an_invoice_and_a_lot(
    client: Client, sqlite_container: Container
) -> None:
    """R-20, R-21 (its own lot), R-24 (its invoice), R-27 (charged once)."""
    org = _org(client)
    card = _card(client, org)
    response = _order(client, org, card, "100.00")
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "paid"
    assert (order["amount"], order["currency"]) == ("100.00", "USD")
    assert order["invoice_id"].startswith("inv_")
    assert order["lot_id"].startswith("lot_")
    assert order["failure_code"] is None
    assert _sandbox(sqlite_container).charges_for(order["id"]) == 1
    assert _sandbox(sqlite_container).succeeded_total() == Decimal("100.00")
    invoice = client.get(f"/v1/orgs/{org}/invoices/{order['invoice_id']}").json()
    assert (invoice["kind"], invoice["amount"], invoice["status"]) == ("credits", "100.00", "paid")
    assert invoice["payment_method"] == "Visa ending 4242"


def test_get_credits_shows_decimal_strings_and_lots_expiring_exactly_twelve_months_later(
    client: Client,
) -> None:
    """R-20, R-21: balance = sum of unexpired remaining; available = balance - reserved."""
    org = _org(client)
    card = _card(client, org)
    order = _paid(client, org, card, "100.00")
    _move_clock(client, "2026-03-31T17:45:12Z")
    _paid(client, org, card, "50.50")
    credits = _credits(client, org)
    assert credits["currency"] == "USD"
    assert (credits["balance"], credits["reserved"], credits["available"]) == (
        "150.50",
        "0.00",
        "150.50",
    )
    lots = credits["lots"]
    assert [(lot["source"], lot["amount"], lot["remaining"]) for lot in lots] == [
        ("deposit", "100.00", "100.00"),
        ("deposit", "50.50", "50.50"),
    ]
    assert lots[0]["id"] == order["lot_id"]
    assert [lot["purchased_at"] for lot in lots] == ["2026-01-15T09:00:00Z", "2026-03-31T17:45:12Z"]
    for lot in lots:
        bought = _at(lot["purchased_at"])
        assert _at(lot["expires_at"]) == bought.replace(year=bought.year + 1)
        assert lot["status"] == "active"


def test_a_declined_card_gives_a_201_failed_order_and_adds_nothing(
    client: Client, sqlite_container: Container
) -> None:
    """R-27: a failed payment adds nothing, and its auto-recharge settings are not applied."""
    org = _org(client)
    card = _card(client, org, VISA_DECLINED)
    response = _order(client, org, card, "100.00", auto_recharge=AUTO_RECHARGE)
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "failed"
    assert order["failure_code"] == "card_declined"
    assert (order["invoice_id"], order["lot_id"]) == (None, None)
    credits = _credits(client, org)
    assert (credits["balance"], credits["lots"]) == ("0.00", [])
    assert credits["auto_recharge"]["enabled"] is False
    assert client.get(f"/v1/orgs/{org}/invoices").json() == []
    assert client.get(f"/v1/orgs/{org}/credits/transactions").json() == []
    assert _sandbox(sqlite_container).succeeded_total() == 0


def test_a_postpaid_organization_cannot_buy_credits_and_nothing_is_charged(
    client: Client, sqlite_container: Container
) -> None:
    """R-02."""
    org = _org(client, billing="postpaid")
    card = _card(client, org)
    response = _order(client, org, card, "100.00")
    assert response.status_code == 409, response.text
    assert _error(response)["code"] == "credits_not_available_for_postpaid"
    assert _sandbox(sqlite_container).charges() == []
    assert _credits(client, org)["balance"] == "0.00"


@pytest.mark.parametrize(("country", "currency"), [("RU", "RUB"), ("KR", "KRW"), ("TW", "TWD")])
def test_credits_are_not_offered_to_organizations_billed_in_ru_kr_or_tw(
    client: Client, sqlite_container: Container, country: str, currency: str
) -> None:
    """R-05: the default catalogue leaves out RU, KR and TW."""
    org = _org(client, country=country, currency=currency)
    card = _card(client, org)
    amount = "5000" if currency == "KRW" else "100.00"
    response = _order(client, org, card, amount)
    assert response.status_code == 409, response.text
    assert _error(response)["code"] == "credits_not_available_in_country"
    assert _sandbox(sqlite_container).charges() == []


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"amount": "49.99"}, "amount_below_minimum", "amount"),
        ({"amount": "100.001"}, "too_many_decimals", "amount"),
        (
            {"auto_recharge": {"enabled": True, "trigger_amount": "0", "recharge_amount": "50.00"}},
            "invalid_auto_recharge",
            "trigger_amount",
        ),
        (
            {
                "auto_recharge": {
                    "enabled": True,
                    "trigger_amount": "20.00",
                    "recharge_amount": "5.00",
                }
            },
            "invalid_auto_recharge",
            "recharge_amount",
        ),
    ],
)
def test_an_order_refused_by_a_rule_is_422_naming_the_field_and_charges_nothing(
    client: Client,
    sqlite_container: Container,
    body: dict[str, Any],
    code: str,
    field: str,
) -> None:
    """R-20 (minimum 50.00), R-23 (trigger > 0, recharge >= 10.00), R-41 (minor units)."""
    org = _org(client)
    card = _card(client, org)
    response = client.post(
        f"/v1/orgs/{org}/credits/orders",
        json={"amount": "100.00", "payment_method": card, **body},
    )
    assert response.status_code == 422, response.text
    error = _error(response)
    assert (error["code"], error.get("field")) == (code, field)
    assert _sandbox(sqlite_container).charges() == []
    assert client.get(f"/v1/orgs/{org}/credits/orders").json() == []


def test_an_amount_sent_as_a_json_number_is_400_invalid_type(client: Client) -> None:
    """R-41: never a float."""
    org = _org(client)
    card = _card(client, org)
    response = client.post(
        f"/v1/orgs/{org}/credits/orders", json={"amount": 100.0, "payment_method": card}
    )
    assert response.status_code == 400, response.text
    error = _error(response)
    assert (error["code"], error.get("field")) == ("invalid_type", "amount")


def test_an_unknown_or_another_organizations_payment_method_is_422_unknown_payment_method(
    client: Client, sqlite_container: Container
) -> None:
    """R-25, R-27: nothing is charged to a method the organization does not hold."""
    org = _org(client)
    _card(client, org)
    theirs = _card(client, _org(client, name="Fabrikam"))
    for method in ("pm_doesnotexist", theirs):
        response = _order(client, org, method, "100.00")
        assert response.status_code == 422, response.text
        error = _error(response)
        assert (error["code"], error.get("field")) == ("unknown_payment_method", "payment_method")
    assert _sandbox(sqlite_container).charges() == []


# -- auto-recharge (R-03, R-23, R-26) ---------------------------------------------------------


def test_auto_recharge_cannot_be_turned_on_for_a_postpaid_organization(client: Client) -> None:
    """R-03."""
    org = _org(client, billing="postpaid")
    card = _card(client, org)
    response = client.put(
        f"/v1/orgs/{org}/credits/auto-recharge", json={**AUTO_RECHARGE, "payment_method": card}
    )
    assert response.status_code == 409, response.text
    assert _error(response)["code"] == "auto_recharge_not_allowed_for_postpaid"
    assert _credits(client, org)["auto_recharge"]["enabled"] is False


def test_an_organization_switched_to_postpaid_has_auto_recharge_turned_off(
    client: Client,
) -> None:
    """R-03: otherwise the balance would refill itself indefinitely."""
    org = _org(client)
    card = _card(client, org)
    _paid(client, org, card, "100.00", auto_recharge=AUTO_RECHARGE)
    before = _credits(client, org)["auto_recharge"]
    assert (before["enabled"], before["status"], before["payment_method"]) == (True, "ok", card)
    patched = client.patch(f"/v1/orgs/{org}", json={"billing": "postpaid"})
    assert patched.status_code == 200, patched.text
    credits = _credits(client, org)
    assert credits["auto_recharge"]["enabled"] is False
    assert credits["auto_recharge"]["status"] == "off"
    # The prepaid balance it still holds is kept, to be used up first.
    assert credits["balance"] == "100.00"
    spent = _adjust(client, org, "-90.00")
    assert spent.status_code == 201, spent.text
    assert [lot["source"] for lot in _credits(client, org)["lots"]] == ["deposit"]


def test_a_debit_below_the_trigger_recharges_once_and_mails_only_the_billing_admins(
    client: Client, sqlite_container: Container, mail: CollectingTransport
) -> None:
    """R-23 (one recharge), R-24 (its invoice), R-26 (the mail to billing and global admins)."""
    org = _org(client)
    _admin(client, org, "pat@contoso.example", "billing_admin")
    _admin(client, org, "gus@contoso.example", "global_admin", "teams_admin")
    _admin(client, org, "tia@contoso.example", "teams_admin")
    _admin(client, org, "rex@contoso.example", "reports_reader")
    card = _card(client, org)
    _paid(client, org, card, "100.00", auto_recharge=AUTO_RECHARGE)

    spent = _adjust(client, org, "-85.00", "test spend")
    assert spent.status_code == 201, spent.text
    assert spent.json()["balance_after"] == "15.00"
    ran = client.post("/v1/system/jobs/run")
    assert ran.status_code == 200, ran.text

    credits = _credits(client, org)
    assert credits["balance"] == "65.00"
    recharge_lots = [lot for lot in credits["lots"] if lot["source"] == "recharge"]
    assert [(lot["amount"], lot["remaining"]) for lot in recharge_lots] == [("50.00", "50.00")]
    assert credits["auto_recharge"]["status"] == "ok"
    recharges = client.get(f"/v1/orgs/{org}/credits/orders", params={"kind": "recharge"}).json()
    assert [(o["status"], o["amount"], o["lot_id"]) for o in recharges] == [
        ("paid", "50.00", recharge_lots[0]["id"])
    ]
    invoice = client.get(f"/v1/orgs/{org}/invoices/{recharges[0]['invoice_id']}").json()
    assert invoice["amount"] == "50.00"
    assert invoice["lines"][0]["description"] == "Communications Credits auto-recharge"
    assert _sandbox(sqlite_container).succeeded_total() == Decimal("150.00")

    notices = _notifications(client, org)
    assert [n["kind"] for n in notices] == ["recharge_succeeded"]
    assert sorted(notices[0]["recipients"]) == ["gus@contoso.example", "pat@contoso.example"]
    assert notices[0]["status"] == "sent"
    assert "50.00 USD" in notices[0]["body"]
    assert len(mail.sent) == 1
    assert sorted(mail.sent[0]["To"].split(", ")) == ["gus@contoso.example", "pat@contoso.example"]


def test_a_declined_recharge_is_retried_after_1h_6h_and_24h_then_waits_for_new_settings(
    client: Client, sqlite_container: Container
) -> None:
    """R-23 (our choice: the retry schedule), R-26 (each failure is mailed)."""
    org = _org(client)
    _admin(client, org, "pat@contoso.example", "billing_admin")
    good = _card(client, org)
    declined = _card(client, org, VISA_DECLINED)
    _paid(client, org, good, "100.00", auto_recharge={**AUTO_RECHARGE, "payment_method": declined})
    assert _adjust(client, org, "-90.00").status_code == 201

    expected = [
        (None, 1, "retrying", "2026-01-15T10:00:00Z"),
        ("2026-01-15T10:00:00Z", 2, "retrying", "2026-01-15T16:00:00Z"),
        ("2026-01-15T16:00:00Z", 3, "retrying", "2026-01-16T16:00:00Z"),
        ("2026-01-16T16:00:00Z", 4, "failing", None),
        ("2026-02-15T00:00:00Z", 4, "failing", None),
    ]
    for now, failures, status, next_retry_at in expected:
        if now is not None:
            _move_clock(client, now)
        settings = _credits(client, org)["auto_recharge"]
        assert (settings["failures"], settings["status"], settings["next_retry_at"]) == (
            failures,
            status,
            next_retry_at,
        ), now
    declines = [c for c in _sandbox(sqlite_container).charges() if not c.result.succeeded]
    assert len(declines) == 4
    failed = _notifications(client, org, "recharge_failed")
    assert len(failed) == 4
    assert "will not try again" in failed[0]["body"]
    assert _credits(client, org)["balance"] == "10.00"

    # A new payment method resets the policy; the next debit below the trigger recharges.
    changed = client.put(
        f"/v1/orgs/{org}/credits/auto-recharge", json={**AUTO_RECHARGE, "payment_method": good}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["status"], changed.json()["failures"]) == ("ok", 0)
    assert _adjust(client, org, "-1.00").status_code == 201
    assert _credits(client, org)["balance"] == "59.00"
    assert len(_notifications(client, org, "recharge_succeeded")) == 1


def test_a_recharge_on_a_card_that_expired_meanwhile_fails_and_is_mailed(
    client: Client,
) -> None:
    """R-26: "a recharge fails (for example an expired card)"."""
    org = _org(client)
    _admin(client, org, "pat@contoso.example", "billing_admin")
    card = _card(client, org, exp_month=1, exp_year=2026)
    _paid(client, org, card, "100.00", auto_recharge=AUTO_RECHARGE)
    _move_clock(client, "2026-02-01T00:00:00Z")
    assert _adjust(client, org, "-90.00").status_code == 201
    recharge = client.get(f"/v1/orgs/{org}/credits/orders", params={"kind": "recharge"}).json()
    assert [(o["status"], o["failure_code"]) for o in recharge] == [("failed", "expired_card")]
    failed = _notifications(client, org, "recharge_failed")
    assert len(failed) == 1
    assert failed[0]["recipients"] == ["pat@contoso.example"]
    assert _credits(client, org)["balance"] == "10.00"


def test_a_recharge_failed_mail_states_the_reason_as_one_sentence(client: Client) -> None:
    """R-26."""
    org = _org(client)
    _admin(client, org, "pat@contoso.example", "billing_admin")
    declined = _card(client, org, VISA_DECLINED)
    _paid(
        client,
        org,
        _card(client, org),
        "100.00",
        auto_recharge={**AUTO_RECHARGE, "payment_method": declined},
    )
    assert _adjust(client, org, "-90.00").status_code == 201
    (failed,) = _notifications(client, org, "recharge_failed")
    assert "The card was declined." in failed["body"]
    assert ".." not in failed["body"]


# -- adjustments ------------------------------------------------------------------------------


def test_a_positive_adjustment_is_a_new_lot_of_source_adjustment(client: Client) -> None:
    """R-21: it expires 12 months later like a purchase."""
    org = _org(client)
    response = _adjust(client, org, "25.00", "goodwill for the outage")
    assert response.status_code == 201, response.text
    entry = response.json()
    assert (entry["kind"], entry["amount"], entry["balance_after"]) == (
        "adjustment",
        "25.00",
        "25.00",
    )
    assert entry["reason"] == "goodwill for the outage"
    lots = _credits(client, org)["lots"]
    assert [(lot["id"], lot["source"], lot["amount"]) for lot in lots] == [
        (entry["lot_id"], "adjustment", "25.00")
    ]
    assert lots[0]["expires_at"] == "2027-01-15T09:00:00Z"


def test_a_negative_adjustment_larger_than_the_available_balance_is_422_insufficient_credits(
    client: Client,
) -> None:
    """R-28: the balance never goes below zero."""
    org = _org(client)
    _paid(client, org, _card(client, org), "60.00")
    response = _adjust(client, org, "-60.01")
    assert response.status_code == 422, response.text
    error = _error(response)
    assert (error["code"], error.get("field")) == ("insufficient_credits", "amount")
    assert _credits(client, org)["balance"] == "60.00"
    assert _adjust(client, org, "-60.00").status_code == 201
    assert _credits(client, org)["balance"] == "0.00"


def test_an_insufficient_credits_refusal_states_the_available_balance_as_money(
    client: Client,
) -> None:
    """R-28; API.md Conventions: money in the currency's decimals."""
    org = _org(client)
    _paid(client, org, _card(client, org), "60.00")
    message = _error(_adjust(client, org, "-60.01"))["message"]
    assert "60.000000" not in message
    assert "60.00" in message


def test_adjustments_are_for_the_operator_and_org_admins_not_for_billing_keys(
    client: Client,
) -> None:
    """API.md Credits: adjustments are for the operator or an org admin."""
    org = _org(client)
    billing = _adjust_as(client, org, _key(client, org, "billing"), "10.00")
    assert billing.status_code == 403, billing.text
    assert _error(billing)["code"] == "forbidden"
    admin = _adjust_as(client, org, _key(client, org, "admin"), "10.00")
    assert admin.status_code == 201, admin.text
    assert _credits(client, org)["balance"] == "10.00"


def test_debits_are_paid_from_the_oldest_lot_first(client: Client) -> None:
    """R-22: one entry per lot the debit drew on."""
    org = _org(client)
    card = _card(client, org)
    older = _paid(client, org, card, "100.00")
    _move_clock(client, "2026-02-01T00:00:00Z")
    newer = _paid(client, org, card, "60.00")
    response = _adjust(client, org, "-120.00")
    assert response.status_code == 201, response.text
    adjustment = response.json()
    assert (adjustment["amount"], adjustment["balance_after"]) == ("-120.00", "40.00")
    assert [(e["lot_id"], e["amount"], e["balance_after"]) for e in adjustment["entries"]] == [
        (older["lot_id"], "-100.00", "60.00"),
        (newer["lot_id"], "-20.00", "40.00"),
    ]
    lots = {lot["id"]: lot for lot in _credits(client, org)["lots"]}
    assert (lots[older["lot_id"]]["remaining"], lots[older["lot_id"]]["status"]) == ("0.00", "used")
    assert lots[newer["lot_id"]]["remaining"] == "40.00"


# -- transactions and invoices (R-24) ---------------------------------------------------------


def test_transactions_list_signed_amounts_newest_first_with_the_balance_after_each(
    client: Client,
) -> None:
    """R-21: the balance is a projection of signed ledger entries."""
    org = _org(client)
    order = _paid(client, org, _card(client, org), "100.00")
    spent = _adjust(client, org, "-30.50", "refund of a test call").json()
    credit = _adjust(client, org, "5.00", "goodwill").json()
    response = client.get(f"/v1/orgs/{org}/credits/transactions")
    assert response.status_code == 200, response.text
    entries = response.json()
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in entries] == [
        ("adjustment", "5.00", "74.50"),
        ("adjustment", "-30.50", "69.50"),
        ("deposit", "100.00", "100.00"),
    ]
    assert [e["id"] for e in entries[:2]] == [credit["id"], spent["id"]]
    assert (entries[2]["lot_id"], entries[2]["reference"]) == (order["lot_id"], order["id"])
    assert entries[1]["lot_id"] == order["lot_id"]
    assert all(e["at"].endswith("Z") for e in entries)


def test_invoices_are_listed_and_read_one_by_one_within_their_organization(
    client: Client,
) -> None:
    """R-24: one invoice per deposit."""
    org = _org(client)
    card = _card(client, org)
    first = _paid(client, org, card, "100.00")
    second = _paid(client, org, card, "75.00")
    listed = client.get(f"/v1/orgs/{org}/invoices")
    assert listed.status_code == 200, listed.text
    invoices = listed.json()
    assert [(i["id"], i["amount"], i["currency"]) for i in invoices] == [
        (second["invoice_id"], "75.00", "USD"),
        (first["invoice_id"], "100.00", "USD"),
    ]
    one = client.get(f"/v1/orgs/{org}/invoices/{first['invoice_id']}")
    assert one.status_code == 200, one.text
    assert one.json() == invoices[1]
    assert one.json()["kind"] == "credits"
    assert one.json()["lines"] == [
        {"description": "Communications Credits deposit", "quantity": 1, "amount": "100.00"}
    ]

    unknown = client.get(f"/v1/orgs/{org}/invoices/inv_doesnotexist")
    assert unknown.status_code == 404
    assert _error(unknown)["code"] == "invoice_not_found"
    other = _org(client, name="Fabrikam")
    elsewhere = client.get(f"/v1/orgs/{other}/invoices/{first['invoice_id']}")
    assert elsewhere.status_code == 404
    assert _error(elsewhere)["code"] == "invoice_not_found"
    foreign_key = client.get(
        f"/v1/orgs/{org}/invoices/{first['invoice_id']}", headers=_as(_key(client, other, "admin"))
    )
    assert foreign_key.status_code == 404
    assert _error(foreign_key)["code"] == "organization_not_found"


# -- expiry and zero balance (R-21, R-26, R-28) -----------------------------------------------


def test_a_lot_expires_after_twelve_months_with_an_expiry_entry_after_two_warnings(
    client: Client,
) -> None:
    """R-21 (forfeited and recorded), R-26 (our addition: warnings 30 and 7 days before)."""
    org = _org(client)
    _admin(client, org, "pat@contoso.example", "billing_admin")
    order = _paid(client, org, _card(client, org), "100.00")
    assert _adjust(client, org, "-30.00").status_code == 201
    jobs = _move_clock(client, "2027-02-01T00:00:00Z")
    assert {(j["job"], j["at"]) for j in jobs} >= {
        ("lot_expiry_warnings", "2026-12-16T09:00:00Z"),
        ("lot_expiry_warnings", "2027-01-08T09:00:00Z"),
        ("credit_expiry", "2027-01-15T09:00:00Z"),
    }
    expiry = client.get(f"/v1/orgs/{org}/credits/transactions").json()[0]
    assert (expiry["kind"], expiry["amount"], expiry["balance_after"]) == (
        "expiry",
        "-70.00",
        "0.00",
    )
    assert (expiry["at"], expiry["lot_id"]) == ("2027-01-15T09:00:00Z", order["lot_id"])
    credits = _credits(client, org)
    assert credits["balance"] == "0.00"
    assert [(lot["remaining"], lot["status"]) for lot in credits["lots"]] == [("0.00", "expired")]
    warnings = _notifications(client, org, "lots_expiring")
    assert sorted(w["created_at"] for w in warnings) == [
        "2026-12-16T09:00:00Z",
        "2027-01-08T09:00:00Z",
    ]
    assert all("70.00 USD" in w["body"] for w in warnings)
    assert len(_notifications(client, org, "balance_zero")) == 1


def test_an_expired_lot_is_never_drawn_on_even_before_the_sweep_ran(
    client: Client, sqlite_container: Container
) -> None:
    """R-21."""
    org = _org(client)
    _paid(client, org, _card(client, org), "100.00")
    # Move the clock without running any job: the expiry sweep has not happened yet.
    sqlite_container.clock.set(_at("2027-01-15T09:00:00Z"))
    credits = _credits(client, org)
    assert (credits["balance"], credits["available"]) == ("0.00", "0.00")
    assert credits["lots"][0]["status"] == "expired"
    response = _adjust(client, org, "-1.00")
    assert response.status_code == 422, response.text
    assert _error(response)["code"] == "insufficient_credits"


def test_a_lot_bought_on_29_february_expires_on_28_february(client: Client) -> None:
    """R-21: twelve months, never more."""
    _move_clock(client, "2028-02-29T12:00:00Z")
    org = _org(client)
    order = _paid(client, org, _card(client, org), "50.00")
    (lot,) = _credits(client, org)["lots"]
    assert lot["id"] == order["lot_id"]
    assert (lot["purchased_at"], lot["expires_at"]) == (
        "2028-02-29T12:00:00Z",
        "2029-02-28T12:00:00Z",
    )


def test_the_balance_zero_mail_is_sent_once_each_time_the_balance_gets_there(
    client: Client,
) -> None:
    """R-26, R-28."""
    org = _org(client)
    _admin(client, org, "pat@contoso.example", "global_admin")
    _paid(client, org, _card(client, org), "50.00")
    assert _adjust(client, org, "-50.00").status_code == 201
    assert len(_notifications(client, org, "balance_zero")) == 1
    assert _adjust(client, org, "10.00").status_code == 201
    assert _adjust(client, org, "-4.00").status_code == 201
    assert len(_notifications(client, org, "balance_zero")) == 1
    assert _adjust(client, org, "-6.00").status_code == 201
    zero = _notifications(client, org, "balance_zero")
    assert len(zero) == 2
    assert zero[0]["recipients"] == ["pat@contoso.example"]


# -- idempotency (API.md Conventions, R-27) ---------------------------------------------------


def test_a_repeated_order_with_the_same_idempotency_key_replays_it_and_charges_once(
    client: Client, sqlite_container: Container
) -> None:
    """R-27: no order is ever charged twice."""
    org = _org(client)
    card = _card(client, org)
    headers = {"Idempotency-Key": "order-2026-01-15"}
    body = {"amount": "100.00", "payment_method": card, "auto_recharge": AUTO_RECHARGE}
    first = client.post(f"/v1/orgs/{org}/credits/orders", json=body, headers=headers)
    second = client.post(f"/v1/orgs/{org}/credits/orders", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert second.json() == first.json()
    gateway = _sandbox(sqlite_container)
    assert gateway.charges_for(first.json()["id"]) == 1
    assert gateway.succeeded_total() == Decimal("100.00")
    assert _credits(client, org)["balance"] == "100.00"
    assert len(client.get(f"/v1/orgs/{org}/invoices").json()) == 1


def test_an_order_idempotency_key_reused_with_another_body_is_409(
    client: Client, sqlite_container: Container
) -> None:
    """API.md Conventions; R-27."""
    org = _org(client)
    card = _card(client, org)
    headers = {"Idempotency-Key": "order-1"}
    assert _order(client, org, card, "100.00").status_code == 201
    first = client.post(
        f"/v1/orgs/{org}/credits/orders",
        json={"amount": "100.00", "payment_method": card},
        headers=headers,
    )
    assert first.status_code == 201
    reused = client.post(
        f"/v1/orgs/{org}/credits/orders",
        json={"amount": "200.00", "payment_method": card},
        headers=headers,
    )
    assert reused.status_code == 409, reused.text
    assert _error(reused)["code"] == "idempotency_key_reused"
    assert _sandbox(sqlite_container).succeeded_total() == Decimal("200.00")
    assert _credits(client, org)["balance"] == "200.00"


def test_a_repeated_adjustment_with_the_same_idempotency_key_replays_and_a_reuse_is_409(
    client: Client,
) -> None:
    """API.md Conventions: an adjustment moves money."""
    org = _org(client)
    url = f"/v1/orgs/{org}/credits/adjustments"
    headers = {"Idempotency-Key": "adj-ticket-4711"}
    body = {"amount": "25.00", "reason": "goodwill"}
    first = client.post(url, json=body, headers=headers)
    second = client.post(url, json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert _credits(client, org)["balance"] == "25.00"
    reused = client.post(url, json={**body, "amount": "26.00"}, headers=headers)
    assert reused.status_code == 409, reused.text
    assert _error(reused)["code"] == "idempotency_key_reused"
    assert len(client.get(f"/v1/orgs/{org}/credits/transactions").json()) == 1


def test_a_repeated_declined_order_replays_the_failure_without_asking_the_gateway_again(
    client: Client, sqlite_container: Container
) -> None:
    """R-27: a retry of a failed purchase is a new order, under a new key."""
    org = _org(client)
    card = _card(client, org, VISA_DECLINED)
    headers = {"Idempotency-Key": "declined-1"}
    body = {"amount": "100.00", "payment_method": card}
    first = client.post(f"/v1/orgs/{org}/credits/orders", json=body, headers=headers)
    second = client.post(f"/v1/orgs/{org}/credits/orders", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert first.json()["status"] == "failed"
    assert _sandbox(sqlite_container).attempts_for(first.json()["id"]) == 1


@pytest.mark.parametrize("first", ["order", "adjustment"])
def test_an_idempotency_key_used_on_one_money_endpoint_is_409_on_the_other(
    client: Client, first: str
) -> None:
    """API.md Conventions: the same key with a different body answers 409."""
    org = _org(client)
    card = _card(client, org)
    headers = {"Idempotency-Key": "ticket-4711"}
    requests = {
        "order": (
            f"/v1/orgs/{org}/credits/orders",
            {"amount": "100.00", "payment_method": card},
        ),
        "adjustment": (
            f"/v1/orgs/{org}/credits/adjustments",
            {"amount": "5.00", "reason": "goodwill"},
        ),
    }
    then = "adjustment" if first == "order" else "order"
    url, body = requests[first]
    assert client.post(url, json=body, headers=headers).status_code == 201
    url, body = requests[then]
    reused = client.post(url, json=body, headers=headers)
    assert reused.status_code == 409, reused.text
    assert _error(reused)["code"] == "idempotency_key_reused"


class _TimesOut:
    """The sandbox behind a network that loses the first answers: the card is charged, the
    caller hears nothing back."""

    def __init__(self, sandbox: SandboxGateway, lost_answers: int) -> None:
        self.sandbox = sandbox
        self.lost_answers = lost_answers

    def tokenize_card(self, *args: Any, **kwargs: Any) -> Any:
        return self.sandbox.tokenize_card(*args, **kwargs)

    def charge(self, **kwargs: Any) -> Any:
        result = self.sandbox.charge(**kwargs)
        if self.lost_answers:
            self.lost_answers -= 1
            raise GatewayTimeout("no answer")
        return result


def test_a_payment_that_times_out_stays_pending_until_the_job_settles_it_with_the_same_key(
    client: Client, sqlite_container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R-27: funds only once paid; never charged twice."""
    org = _org(client)
    card = _card(client, org)
    sandbox = _sandbox(sqlite_container)
    monkeypatch.setattr(sqlite_container.credits, "gateway", _TimesOut(sandbox, lost_answers=3))
    response = _order(client, org, card, "100.00")
    assert response.status_code == 201, response.text
    order = response.json()
    assert (order["status"], order["lot_id"], order["invoice_id"]) == ("pending", None, None)
    assert _credits(client, org)["balance"] == "0.00"

    jobs = _move_clock(client, "2026-01-15T09:05:00Z")
    assert ("credit_orders", 1) in {(j["job"], j["processed"]) for j in jobs}
    settled = client.get(f"/v1/orgs/{org}/credits/orders/{order['id']}").json()
    assert settled["status"] == "paid"
    assert settled["settled_at"] == "2026-01-15T09:05:00Z"
    assert _credits(client, org)["balance"] == "100.00"
    assert sandbox.attempts_for(order["id"]) == 4
    assert sandbox.charges_for(order["id"]) == 1
    assert sandbox.succeeded_total() == Decimal("100.00")


# -- who may do what (API.md Conventions) -----------------------------------------------------


@pytest.mark.parametrize(
    ("role", "method", "path", "status"),
    [
        ("reader", "get", "/credits", 200),
        ("reader", "get", "/credits/transactions", 200),
        ("reader", "get", "/invoices", 200),
        ("reader", "get", "/notifications", 200),
        ("reader", "post", "/credits/orders", 403),
        ("reader", "put", "/credits/auto-recharge", 403),
        ("reader", "post", "/payment-methods", 403),
        ("reader", "post", "/credits/adjustments", 403),
        ("telephony", "get", "/credits", 403),
        ("telephony", "post", "/credits/orders", 403),
        ("billing", "get", "/credits", 200),
        ("billing", "post", "/credits/orders", 201),
        ("billing", "put", "/credits/auto-recharge", 200),
        ("billing", "post", "/payment-methods", 201),
        ("admin", "post", "/credits/orders", 201),
    ],
)
def test_each_key_role_reaches_exactly_its_part_of_credits(
    client: Client, role: str, method: str, path: str, status: int
) -> None:
    """API.md Conventions: billing and admin read/write credits, reader reads, telephony none."""
    org = _org(client)
    card = _card(client, org)
    bodies: dict[str, Any] = {
        "/credits/orders": {"amount": "50.00", "payment_method": card},
        "/credits/auto-recharge": {**AUTO_RECHARGE, "payment_method": card},
        "/payment-methods": _card_body(),
        "/credits/adjustments": {"amount": "5.00", "reason": "support"},
    }
    kwargs: dict[str, Any] = {"headers": _as(_key(client, org, role))}
    if method != "get":
        kwargs["json"] = bodies[path]
    response = getattr(client, method)(f"/v1/orgs/{org}{path}", **kwargs)
    assert response.status_code == status, response.text
    if status == 403:
        assert _error(response)["code"] == "forbidden"


def test_an_organization_key_gets_404_from_every_credits_endpoint_of_another_organization(
    client: Client, sqlite_container: Container
) -> None:
    """API.md Conventions: a key never reaches another organization; nothing there changes."""
    mine = _org(client)
    theirs = _org(client, name="Fabrikam")
    card = _card(client, theirs)
    order = _paid(client, theirs, card, "100.00")
    key = _key(client, mine, "admin")
    endpoints: list[tuple[str, str, Any]] = [
        ("post", "/payment-methods", _card_body()),
        ("get", "/payment-methods", None),
        ("delete", f"/payment-methods/{card}", None),
        ("post", "/credits/orders", {"amount": "50.00", "payment_method": card}),
        ("get", "/credits/orders", None),
        ("get", f"/credits/orders/{order['id']}", None),
        ("get", "/credits", None),
        ("put", "/credits/auto-recharge", {**AUTO_RECHARGE, "payment_method": card}),
        ("post", "/credits/adjustments", {"amount": "-100.00", "reason": "theft"}),
        ("get", "/credits/transactions", None),
        ("get", "/invoices", None),
        ("get", f"/invoices/{order['invoice_id']}", None),
        ("get", "/notifications", None),
    ]
    for method, path, body in endpoints:
        kwargs: dict[str, Any] = {"headers": _as(key)}
        if body is not None:
            kwargs["json"] = body
        response = getattr(client, method)(f"/v1/orgs/{theirs}{path}", **kwargs)
        assert response.status_code == 404, (method, path, response.text)
        assert _error(response)["code"] == "organization_not_found"
    credits = _credits(client, theirs)
    assert (credits["balance"], credits["auto_recharge"]["enabled"]) == ("100.00", False)
    assert [m["id"] for m in client.get(f"/v1/orgs/{theirs}/payment-methods").json()] == [card]
    assert _sandbox(sqlite_container).succeeded_total() == Decimal("100.00")


# -- a zero-decimal currency (R-41) -----------------------------------------------------------


def test_a_jpy_organization_buys_whole_yen_and_sees_amounts_without_decimals(
    client: Client,
) -> None:
    """R-20 (minimum in the organization's currency), R-41 (the currency's minor unit)."""
    org = _org(client, name="Nippon", country="JP", currency="JPY")
    card = _card(client, org)
    order = _paid(client, org, card, "5000")
    assert (order["amount"], order["currency"]) == ("5000", "JPY")
    credits = _credits(client, org)
    assert (credits["currency"], credits["balance"], credits["reserved"]) == ("JPY", "5000", "0")
    assert credits["available"] == "5000"
    assert [(lot["amount"], lot["remaining"]) for lot in credits["lots"]] == [("5000", "5000")]
    spent = _adjust(client, org, "-1234").json()
    assert (spent["amount"], spent["balance_after"]) == ("-1234", "3766")
    invoice = client.get(f"/v1/orgs/{org}/invoices/{order['invoice_id']}").json()
    assert invoice["amount"] == "5000"

    fraction = _order(client, org, card, "5000.5")
    assert fraction.status_code == 422, fraction.text
    error = _error(fraction)
    assert (error["code"], error.get("field")) == ("too_many_decimals", "amount")
    assert _credits(client, org)["balance"] == "3766"
