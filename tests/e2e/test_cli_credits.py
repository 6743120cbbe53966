"""Credits from the command line: buy, show, adjust, auto-recharge, invoices, ledger verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from commcredits.cli.main import app

runner = CliRunner()


def _json(*args: str) -> object:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.chdir(tmp_path)  # the sandbox gateway's journal goes under ./var
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    created = _json(
        "orgs",
        "create",
        "--name",
        "Contoso",
        "--country",
        "US",
        "--currency",
        "USD",
        "--database-url",
        db,
    )
    assert isinstance(created, dict)
    return db, str(created["id"])


def _card(db: str, org_id: str, number: str = "4242424242424242") -> str:
    card = _json(
        "payment-methods",
        "add-card",
        "--org",
        org_id,
        "--number",
        number,
        "--exp-month",
        "12",
        "--exp-year",
        "2030",
        "--cvc",
        "123",
        "--database-url",
        db,
    )
    assert isinstance(card, dict)
    return str(card["id"])


def test_credits_are_bought_shown_and_spent_from_the_command_line(org: tuple[str, str]) -> None:
    db, org_id = org
    card = _card(db, org_id)
    order = _json(
        "credits",
        "buy",
        "--org",
        org_id,
        "--amount",
        "100.00",
        "--payment-method",
        card,
        "--auto-recharge",
        "--trigger",
        "20.00",
        "--recharge",
        "50.00",
        "--database-url",
        db,
    )
    assert isinstance(order, dict)
    assert order["status"] == "paid"
    adjusted = _json(
        "credits",
        "adjust",
        "--org",
        org_id,
        "--amount",
        "-90.00",
        "--reason",
        "support correction",
        "--database-url",
        db,
    )
    assert isinstance(adjusted, list)
    assert adjusted[-1]["balance_after"] == "10.00"
    shown = _json("credits", "show", "--org", org_id, "--database-url", db)
    assert isinstance(shown, dict)
    # the debit left 10.00 under the 20.00 trigger: one recharge of 50.00.
    assert shown["balance"] == "60.00"
    assert [lot["source"] for lot in shown["lots"]] == ["deposit", "recharge"]
    invoices = _json("invoices", "--org", org_id, "--database-url", db)
    assert isinstance(invoices, list)
    assert sorted(i["amount"] for i in invoices) == ["100.00", "50.00"]
    verified = _json("ledger", "verify", "--database-url", db)
    assert isinstance(verified, dict)
    assert verified["ok"] is True
    assert verified["organizations"][0]["credited"] == "150"


def test_a_declined_purchase_fails_the_command(org: tuple[str, str]) -> None:
    db, org_id = org
    card = _card(db, org_id, "4000000000000002")
    result = runner.invoke(
        app,
        [
            "credits",
            "buy",
            "--org",
            org_id,
            "--amount",
            "60",
            "--payment-method",
            card,
            "--database-url",
            db,
            "--json",
        ],
    )
    assert result.exit_code == 1
    assert json.loads(result.output)["failure_code"] == "card_declined"


def test_auto_recharge_is_refused_for_a_postpaid_organization(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'post.db'}"
    created = _json(
        "orgs",
        "create",
        "--name",
        "Postpaid",
        "--country",
        "US",
        "--currency",
        "USD",
        "--billing",
        "postpaid",
        "--database-url",
        db,
    )
    assert isinstance(created, dict)
    result = runner.invoke(
        app,
        [
            "credits",
            "auto-recharge",
            "--org",
            str(created["id"]),
            "--enable",
            "--trigger",
            "20",
            "--recharge",
            "50",
            "--database-url",
            db,
        ],
    )
    assert result.exit_code == 1
    assert "auto_recharge_not_allowed_for_postpaid" in result.output


def test_ledger_verify_exits_1_when_a_balance_was_tampered_with(org: tuple[str, str]) -> None:
    db, org_id = org
    card = _card(db, org_id)
    _json(
        "credits",
        "buy",
        "--org",
        org_id,
        "--amount",
        "100",
        "--payment-method",
        card,
        "--database-url",
        db,
    )
    engine = create_engine(db)
    with engine.begin() as connection:
        connection.execute(text("UPDATE credit_accounts SET balance_micros = balance_micros + 1"))
    engine.dispose()
    result = runner.invoke(app, ["ledger", "verify", "--database-url", db, "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False
    assert f"{org_id}: account balance 100.000001, entries sum to 100" in report["problems"]
