"""CGRateS tariff plans from the command line: quote from a folder, import into the store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from commcredits.cli.main import app

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tariffplan.md"
runner = CliRunner()


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    """The worked example of docs/tariffplan.md, written out as a tariff-plan folder."""
    blocks = re.findall(r"\*\*`(\w+\.csv)`\*\*\n\n```csv\n(.*?)```", DOCS.read_text(), re.DOTALL)
    folder = tmp_path / "plan"
    folder.mkdir()
    for name, text in blocks:
        (folder / name).write_text(text)
    return folder


def _quote(plan: Path, destination: str, *extra: str) -> Result:
    return runner.invoke(
        app,
        [
            "rates",
            "quote",
            "--tariffplan",
            str(plan),
            "--tenant",
            "example.net",
            "--category",
            "call",
            "--subject",
            "alice",
            "--destination",
            destination,
            "--answer-time",
            "2025-03-04T18:58:20Z",
            "--usage",
            "181s",
            "--json",
            *extra,
        ],
    )


def test_a_call_across_a_timing_boundary_is_quoted_from_the_folder(plan: Path) -> None:
    result = _quote(plan, "+442071234567")
    assert result.exit_code == 0, result.output
    quoted = json.loads(result.output)
    assert quoted["cost"] == "0.2004"
    assert quoted["connect_fee"] == "0.05"
    assert quoted["rating_plan"] == "RP_RETAIL"


def test_an_unmatched_destination_exits_non_zero_with_unauthorized_destination(
    plan: Path,
) -> None:
    result = _quote(plan, "+999123456")
    assert result.exit_code == 1
    assert "UNAUTHORIZED_DESTINATION" in result.output


def test_a_plan_is_imported_and_a_broken_one_refused_with_its_lines(
    plan: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'tp.db'}"
    result = runner.invoke(
        app, ["rates", "import-tariffplan", str(plan), "--database-url", db, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rating_profiles"] >= 1
    rates = plan / "Rates.csv"
    rates.write_text(rates.read_text() + "RT_BROKEN,abc,0.1,60s,60s,0s\n")
    refused = runner.invoke(app, ["rates", "import-tariffplan", str(plan), "--database-url", db])
    assert refused.exit_code == 1
    assert "Rates.csv:" in refused.output
