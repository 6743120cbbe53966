"""`commcredits cdrs import`: finished calls from CSV, each call id charged once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from commcredits.app import build
from commcredits.cli.main import app
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization
from commcredits.services.verify import verify_ledger
from commcredits.settings import Settings

runner = CliRunner()


@pytest.fixture
def funded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'cdrs.db'}"
    container = build(Settings(database_url=db, sandbox_journal=None))
    container.rating.ensure_loaded()
    org = container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid"))
    method = container.credits.add_agreement(org.id, "EA-1")
    container.credits.place_order(org.id, NewOrder("100.00", method.id))
    for sku in ("MCOEV", "MCOPSTN1"):
        container.directory.set_subscription(org.id, sku, 5, actor="t")
    container.directory.create_user(org.id, "pat@contoso.com", "Pat", "US", actor="t")
    container.directory.change_licenses(
        org.id, "pat@contoso.com", ["MCOEV", "MCOPSTN1", "MCOPSTNPP"], [], actor="t"
    )
    container.close()
    return db, org.id


def test_a_file_of_finished_calls_is_charged_once_with_bad_lines_reported(
    funded: tuple[str, str], tmp_path: Path
) -> None:
    db, org = funded
    calls = tmp_path / "calls.csv"
    calls.write_text(
        "call_id,call_type,user,from,to,start_time,duration_seconds\n"
        "a1,user_out,pat@contoso.com,+14255550100,+442071234567,2026-11-20T10:00:00Z,90\n"
        "a2,user_out,pat@contoso.com,+14255550100,+12025550123,2026-11-20T09:00:00Z,61\n"
        "a3,user_out,pat@contoso.com,+14255550100,+442071234567,yesterday,61\n"
        "a4,user_out,nobody@contoso.com,+14255550100,+442071234567,2026-11-20T11:00:00Z,61\n"
    )
    first = runner.invoke(
        app, ["cdrs", "import", str(calls), "--org", org, "--database-url", db, "--json"]
    )
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert (report["charged"], report["duplicate"], report["rejected"]) == (2, 0, 2)
    again = runner.invoke(
        app, ["cdrs", "import", str(calls), "--org", org, "--database-url", db, "--json"]
    )
    assert json.loads(again.stdout)["duplicate"] == 2  # never charged twice
    container = build(Settings(database_url=db, sandbox_journal=None))
    view = container.credits.view(org)
    problems, _ = verify_ledger(container.store)
    container.close()
    assert str(view.balance) == "99.950000"  # a1: GB fixed 0.024/min x 2 min; a2 from the pool
    assert problems == []
