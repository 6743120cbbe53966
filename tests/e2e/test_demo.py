"""``commcredits demo``: a seeded story through the real API, summarized from what the service
reports, repeatable, and kept away from databases it did not make."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from typer.testing import CliRunner

from commcredits.api.app import create_app
from commcredits.app import Container, build
from commcredits.cli.main import app
from commcredits.demo import DatabaseState, DemoOptions, DemoOutcome, inspect_database, run_demo
from commcredits.demo.people import ADMIN_EMAIL, build_organization
from commcredits.demo.run import demo_settings
from commcredits.demo.summary import DemoSummary
from commcredits.demo.traffic import TrafficGenerator
from commcredits.services.orgs import NewOrganization
from commcredits.services.verify import verify_ledger
from tests.conftest import assert_ledger_clean
from tests.support.postgres import PostgresAdmin

# Two months, so the card that expires at the end of the first one declines a recharge in the
# second; eight people, the smallest demo, to keep the run short.
STORY = DemoOptions(seed=1, months=2, users=8)
runner = CliRunner()


def _build(directory: Path) -> Container:
    return build(demo_settings(f"sqlite:///{directory / 'demo.db'}"))


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Container, DemoOutcome]]:
    container = _build(tmp_path_factory.mktemp("demo"))
    outcome = run_demo(container, STORY)
    yield container, outcome
    container.close()


def _report_rows(container: Container, key: str, org_id: str, report: str) -> list[dict[str, Any]]:
    """Every row of a report over the demo's months, page by page as JSON (the summary read
    the CSV export)."""
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"from": "2026-09-01", "to": "2026-10-31", "limit": 1000}
    with TestClient(create_app(container)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        while True:
            page = client.get(f"/v1/orgs/{org_id}/reports/{report}", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            rows += body["rows"]
            if not body["next_cursor"]:
                return rows
            params["cursor"] = body["next_cursor"]


def test_the_summary_agrees_with_the_reports_and_ledger_verify(
    story: tuple[Container, DemoOutcome],
) -> None:
    container, outcome = story
    summary, org_id = outcome.summary, outcome.org_id
    key = outcome.operator_key.secret
    calls = _report_rows(container, key, org_id, "pstn")
    assert summary.total.calls == len(calls) > 0
    paid_by_credits = sum(
        (Decimal(row["Charge"]) for row in calls if row["Capability"] == "MCOPSTNPP"), Decimal(0)
    )
    pools = _report_rows(container, key, org_id, "pools")
    assert summary.total.pool_minutes == sum(
        int(row["Used"]) for row in pools if row["Unit"] == "minutes"
    )

    problems, [totals] = verify_ledger(container.store, org_id)
    assert problems == []
    assert summary.ledger is not None
    assert summary.ledger.consistent
    # Every cent charged to credits in the report left the ledger as usage, and nothing else did.
    assert summary.total.charged == paid_by_credits == totals.spent > 0
    assert summary.total.expired == totals.forfeited > 0  # the pilot lot expired unused
    assert summary.balance == totals.balance
    assert_ledger_clean(container)


def test_the_story_has_an_expired_card_that_the_admin_replaces(
    story: tuple[Container, DemoOutcome],
) -> None:
    container, outcome = story
    september, october = outcome.summary.months
    assert (september.expiries, october.expiries) == (1, 0)
    # The card expired at the end of September: October's recharges are declined (R-26,
    # R-27) until the admin adds a new card, then a recharge is paid.
    assert september.recharges_declined == 0 < october.recharges_declined
    assert october.recharges >= 1
    assert outcome.result is not None
    assert outcome.result.card_replaced_at is not None
    assert outcome.result.card_replaced_at.month == 10
    mails = outcome.summary.mails_by_kind
    assert mails["lots_expiring"] == 2  # 30 and 7 days before
    assert mails["recharge_failed"] == october.recharges_declined
    orders = container.credits.orders(outcome.org_id, kind="recharge")
    failed = [o for o in orders if o.status == "failed"]
    assert {o.failure_code for o in failed} == {"expired_card"}
    assert outcome.result.refused == {}, "the balance covered every call"


def _figures(summary: DemoSummary) -> dict[str, Any]:
    return {
        "months": [asdict(month) for month in summary.months],
        "balance": summary.balance,
        "mails": summary.mails_by_kind,
    }


def test_the_same_seed_tells_the_same_story(
    story: tuple[Container, DemoOutcome], tmp_path: Path
) -> None:
    container = _build(tmp_path)
    try:
        again = run_demo(container, STORY)
    finally:
        container.close()
    assert _figures(again.summary) == _figures(story[1].summary)


@pytest.mark.postgres
def test_the_story_is_the_same_on_postgresql(
    story: tuple[Container, DemoOutcome], postgres: PostgresAdmin
) -> None:
    name = f"demo_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name)
    container = build(demo_settings(url))
    try:
        on_postgresql = run_demo(container, STORY)
        assert_ledger_clean(container)
    finally:
        container.close()
        postgres.drop_database(name)
    assert _figures(on_postgresql.summary) == _figures(story[1].summary)


def test_another_seed_draws_other_people_and_other_calls() -> None:
    def first_day(seed: int) -> tuple[list[str], list[tuple[str, str, int]]]:
        rng = random.Random(seed)
        org = build_organization(rng, 8)
        calls = TrafficGenerator(rng, org).day(date(2026, 9, 1))
        return [p.upn for p in org.people], [(c.to_number, c.call_type, c.duration) for c in calls]

    assert first_day(1) == first_day(1)
    assert first_day(1) != first_day(2)


def test_run_again_it_shows_the_demo_it_built(story: tuple[Container, DemoOutcome]) -> None:
    container, outcome = story
    url = container.settings.database_url
    assert inspect_database(url) is DatabaseState.DEMO
    shown = runner.invoke(app, ["demo", "--database-url", url, "--no-serve", "--json"])
    assert shown.exit_code == 0, shown.output
    again = json.loads(shown.output)
    total = outcome.summary.total
    assert (again["org"], again["built_now"]) == (outcome.org_id, False)
    assert again["total"]["calls"] == total.calls
    assert again["total"]["charged"] == f"{total.charged:.2f}"
    assert again["balance"] == f"{outcome.summary.balance:.2f}"
    assert again["ledger"]["consistent"] is True
    assert again["sign_in"]["email"] == ADMIN_EMAIL
    # A new console password each run, set on the demo's global admin.
    session = container.signin.sign_in(ADMIN_EMAIL, again["sign_in"]["password"], outcome.org_id)
    assert session.reaches(outcome.org_id)

    printed = runner.invoke(app, ["demo", "--database-url", url, "--no-serve"])
    assert printed.exit_code == 0, printed.output
    assert "built earlier" in printed.output
    assert f"{total.calls:,}" in printed.output
    assert "ledger verify: consistent" in printed.output


def test_the_demo_never_writes_to_a_database_it_did_not_make(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'production.db'}"
    container = build(demo_settings(url, clock="system"))
    container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid", False))
    container.close()
    assert inspect_database(url) is DatabaseState.FOREIGN

    for extra in ([], ["--fresh"]):
        result = runner.invoke(app, ["demo", "--database-url", url, "--no-serve", *extra])
        assert result.exit_code == 1
        assert "database_not_demo" in result.output
    assert (tmp_path / "production.db").exists()
    container = build(demo_settings(url, clock="system"), upgrade=False)
    try:
        assert [org.name for org in container.orgs.list_orgs()] == ["Contoso"]
    finally:
        container.close()


def test_a_database_with_a_platform_key_is_not_the_demos(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    container = build(demo_settings(url, clock="system"))
    container.keys.ensure_operator_key()  # what `commcredits serve` does on its first start
    container.close()
    assert inspect_database(url) is DatabaseState.FOREIGN
    assert inspect_database(f"sqlite:///{tmp_path / 'new.db'}") is DatabaseState.EMPTY


def test_the_demo_keeps_to_its_own_settings_whatever_the_operators_say(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COMMCREDITS_SMTP_URL", "smtp://mailer:secret@smtp.internal:587")
    monkeypatch.setenv("COMMCREDITS_CLOCK", "system")
    monkeypatch.setenv("COMMCREDITS_MINIMUM_DEPOSIT", "500.00")
    monkeypatch.setenv("COMMCREDITS_PORT", "9001")
    settings = demo_settings(f"sqlite:///{tmp_path / 'demo.db'}")
    # Its mail is spooled beside its database, never sent to fabrikam.example over SMTP.
    assert settings.smtp_url is None
    assert settings.mail_spool_dir == tmp_path / "demo-mail"
    assert (settings.clock, settings.minimum_deposit) == ("simulated", Decimal("50.00"))
    assert settings.port == 9001  # where it listens is the operator's choice
