"""The directory from the command line: users import and export, bulk license changes (R-14)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from commcredits.app import build
from commcredits.cli.main import app
from commcredits.services.directory import UserChanges
from commcredits.settings import Settings

runner = CliRunner()

BAD_IMPORT = """upn,display_name,usage_location,licenses
ada@contoso.com,Ada,US,MCOEV;MCOPSTN1
not-a-upn,Nobody,US,
bob@contoso.com,Bob,XX,

cy@contoso.com,Cy,US,MCOEV;NOT_A_SKU
dee@contoso.com,,US,
eve@contoso.com,"Doe, Eve",gb,SPE_E5
"""


def _invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def _json_of(result: Result) -> Any:
    """The JSON document a ``--json`` command printed, after any progress line before it."""
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("{", "[")))
    return json.loads("\n".join(lines[start:]))


def _ok(*args: str) -> Any:
    result = _invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return _json_of(result)


def _new_org(db: str, name: str) -> str:
    created = _ok(
        "orgs", "create", "--name", name, "--country", "US", "--currency", "USD",
        "--database-url", db,
    )  # fmt: skip
    return str(created["id"])


def _seats(db: str, org_id: str, **quantities: int) -> None:
    for sku, quantity in quantities.items():
        _ok(
            "subscriptions", "set", "--org", org_id, "--sku", sku, "--quantity", str(quantity),
            "--database-url", db,
        )  # fmt: skip


def _users(db: str, org_id: str, *extra: str) -> dict[str, dict[str, Any]]:
    listed = _ok("users", "list", "--org", org_id, "--database-url", db, *extra)
    return {row["upn"]: row for row in listed}


@pytest.fixture
def org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    org_id = _new_org(db, "Contoso")
    _seats(db, org_id, MCOEV=10, MCOPSTN1=10, SPE_E5=10)
    return db, org_id


def _import(db: str, org_id: str, path: Path, *extra: str) -> Result:
    return _invoke("users", "import", "--org", org_id, str(path), "--database-url", db, *extra)


def test_users_import_reports_bad_rows_by_line_and_imports_the_good_ones(
    org: tuple[str, str], tmp_path: Path
) -> None:
    db, org_id = org
    path = tmp_path / "users.csv"
    path.write_text(BAD_IMPORT)

    result = _import(db, org_id, path, "--json")

    assert result.exit_code == 1, result.output
    report = _json_of(result)
    assert (report["created"], report["updated"], report["unchanged"]) == (2, 0, 0)
    # Physical line numbers: the header is line 1 and the blank line 5 still counts.
    assert [(e["line"], e["upn"], e["code"]) for e in report["errors"]] == [
        (3, "not-a-upn", "invalid_upn"),
        (4, "bob@contoso.com", "invalid_country"),
        (6, "cy@contoso.com", "unknown_sku"),
        (7, "dee@contoso.com", "invalid_name"),
    ]
    assert all(e["message"] for e in report["errors"])
    users = _users(db, org_id)
    assert sorted(users) == ["ada@contoso.com", "eve@contoso.com"]
    assert users["ada@contoso.com"]["licenses"] == "MCOEV;MCOPSTN1"
    assert (
        users["eve@contoso.com"]["display_name"],
        users["eve@contoso.com"]["usage_location"],
    ) == (
        "Doe, Eve",
        "GB",
    )

    # Without --json: a summary for people, and still exit code 1.
    people = _import(db, org_id, path)
    assert people.exit_code == 1
    assert "created 0, updated 0, unchanged 2, refused 4" in people.stdout


def test_importing_the_same_file_again_changes_nothing(
    org: tuple[str, str], tmp_path: Path
) -> None:
    db, org_id = org
    path = tmp_path / "good.csv"
    path.write_text(
        "UPN,Display_Name,Usage_Location,Licenses\r\n"
        "ada@contoso.com,Ada,US,MCOEV;MCOPSTN1\r\n"
        "bob@contoso.com,Bob,,\r\n"
        "eve@contoso.com,Eve,GB,SPE_E5\r\n",
        encoding="utf-8-sig",
    )
    first = _import(db, org_id, path, "--json")
    assert first.exit_code == 0, first.output
    assert _json_of(first) == {"created": 3, "updated": 0, "unchanged": 0, "errors": []}
    users_before = _users(db, org_id)

    again = _import(db, org_id, path, "--json")

    assert again.exit_code == 0, again.output
    assert _json_of(again) == {"created": 0, "updated": 0, "unchanged": 3, "errors": []}
    assert _users(db, org_id) == users_before
    subscriptions = {s["sku"]: s for s in _ok("subscriptions", "list", "--org", org_id,
                                                "--database-url", db)}  # fmt: skip
    assert subscriptions["MCOEV"]["assigned"] == 1
    assert subscriptions["SPE_E5"]["assigned"] == 1


def test_users_export_round_trips_into_a_second_organization(
    org: tuple[str, str], tmp_path: Path
) -> None:
    db, org_id = org
    source = tmp_path / "source.csv"
    source.write_text(
        "upn,display_name,usage_location,licenses\n"
        "ada@contoso.com,Ada,US,MCOEV;MCOPSTN1\n"
        'bob@contoso.com,"Bob ""the builder"", Jr",,\n'
        "eve@contoso.com,Ève,FR,SPE_E5\n"
    )
    assert _import(db, org_id, source).exit_code == 0
    exported = tmp_path / "export.csv"
    written = _invoke("users", "export", "--org", org_id, "-o", str(exported), "--database-url", db)
    assert written.exit_code == 0, written.output
    assert "3 users written" in written.stdout

    other = _new_org(db, "Fabrikam")
    _seats(db, other, MCOEV=1, MCOPSTN1=1, SPE_E5=1)
    imported = _import(db, other, exported, "--json")
    assert imported.exit_code == 0, imported.output
    assert _json_of(imported)["created"] == 3

    def comparable(org_ref: str) -> dict[str, tuple[Any, ...]]:
        return {
            upn: (row["display_name"], row["usage_location"], row["licenses"])
            for upn, row in _users(db, org_ref).items()
        }

    assert comparable(other) == comparable(org_id)
    assert comparable(other)["bob@contoso.com"] == ('Bob "the builder", Jr', None, "")
    again = _invoke("users", "export", "--org", other, "--database-url", db)
    assert again.exit_code == 0
    assert again.stdout == exported.read_text()


def test_users_export_round_trips_the_policies_too_R37(
    org: tuple[str, str], tmp_path: Path
) -> None:
    db, org_id = org
    container = build(Settings(database_url=db, sandbox_journal=None, mail_spool_dir=tmp_path))
    try:
        container.directory.create_user(org_id, "ada@contoso.com", "Ada", "US", actor="test")
        container.directory.update_user(
            org_id,
            "ada@contoso.com",
            UserChanges(pstn_policy="domestic", dialout_policy="zone_a", spend_limit="25.00"),
            actor="test",
        )
    finally:
        container.close()
    exported = tmp_path / "export.csv"
    written = _invoke("users", "export", "--org", org_id, "-o", str(exported), "--database-url", db)
    assert written.exit_code == 0, written.output
    other = _new_org(db, "Fabrikam")
    assert _import(db, other, exported).exit_code == 0
    again = _invoke("users", "export", "--org", other, "--database-url", db)
    assert again.stdout == exported.read_text()


def test_licenses_assign_from_a_users_file_prints_a_summary_R14(
    org: tuple[str, str], tmp_path: Path
) -> None:
    db, org_id = org
    for upn, location in [("a@contoso.com", "US"), ("b@contoso.com", "US"), ("c@contoso.com", "")]:
        _ok(
            "users", "create", "--org", org_id, "--upn", upn, "--display-name", upn[0].upper(),
            *(["--usage-location", location] if location else []), "--database-url", db,
        )  # fmt: skip
    users_file = tmp_path / "users.txt"
    users_file.write_text(
        "# the pilot group\na@contoso.com\n\nB@Contoso.com,extra column\nghost@contoso.com\n"
        "c@contoso.com\n"
    )
    args = ["licenses", "assign", "--org", org_id, "--sku", "MCOEV", "--sku", "MCOPSTN1"]

    result = _invoke(*args, "--users-file", str(users_file), "--database-url", db, "--json")

    assert result.exit_code == 1, result.output
    summary = _json_of(result)
    assert (summary["succeeded"], summary["failed"]) == (2, 2)
    assert [(f["user"], f["code"]) for f in summary["failures"]] == [
        ("ghost@contoso.com", "user_not_found"),
        ("c@contoso.com", "usage_location_required"),
    ]
    users = _users(db, org_id)
    assert users["a@contoso.com"]["licenses"] == users["b@contoso.com"]["licenses"]
    assert users["a@contoso.com"]["licenses"] == "MCOEV;MCOPSTN1"
    assert users["c@contoso.com"]["licenses"] == ""

    users_file.write_text("a@contoso.com\nb@contoso.com\n")
    again = _invoke(*args, "--users-file", str(users_file), "--database-url", db)
    assert again.exit_code == 0, again.output
    assert "2 users changed, 0 refused" in again.stdout
    # R-13 per user: Teams Phone cannot go while the calling plan stays.
    removal = _invoke(
        "licenses", "remove", "--org", org_id, "--sku", "MCOEV", "--users-file", str(users_file),
        "--database-url", db, "--json",
    )  # fmt: skip
    assert removal.exit_code == 1
    assert {f["code"] for f in _json_of(removal)["failures"]} == {"license_required_by_other"}


def test_licenses_assign_and_remove_by_usage_location_filter_R14(org: tuple[str, str]) -> None:
    db, org_id = org
    for upn, location in [
        ("us1@contoso.com", "US"),
        ("gb@contoso.com", "GB"),
        ("us2@contoso.com", "US"),
    ]:
        _ok(
            "users", "create", "--org", org_id, "--upn", upn, "--display-name", "User",
            "--usage-location", location, "--database-url", db,
        )  # fmt: skip
    base = ["--org", org_id, "--sku", "SPE_E5", "--database-url", db]

    assigned = _ok("licenses", "assign", *base, "--filter", "usage_location=US")

    assert assigned == {"succeeded": 2, "failed": 0, "failures": []}
    holders = _users(db, org_id, "--sku", "SPE_E5")
    assert sorted(holders) == ["us1@contoso.com", "us2@contoso.com"]
    assert _ok("licenses", "assign", *base, "--filter", "usage_location=GB")["succeeded"] == 1
    removed = _ok("licenses", "remove", *base, "--filter", "usage_location=US")
    assert removed["succeeded"] == 2
    assert sorted(_users(db, org_id, "--sku", "SPE_E5")) == ["gb@contoso.com"]

    for bad in (["--filter", "colour=blue"], ["--filter", "usage_location="], []):
        refused = _invoke("licenses", "assign", *base, *bad)
        assert refused.exit_code == 2, (bad, refused.output)


def test_json_output_of_long_commands_is_only_json(org: tuple[str, str], tmp_path: Path) -> None:
    db, org_id = org
    path = tmp_path / "users.csv"
    path.write_text("upn,display_name,usage_location\nada@contoso.com,Ada,US\n")
    imported = _import(db, org_id, path, "--json")
    assert imported.exit_code == 0
    assert json.loads(imported.stdout)["created"] == 1
    users_file = tmp_path / "users.txt"
    users_file.write_text("ada@contoso.com\n")
    assigned = _invoke(
        "licenses", "assign", "--org", org_id, "--sku", "MCOEV", "--users-file", str(users_file),
        "--database-url", db, "--json",
    )  # fmt: skip
    assert json.loads(assigned.stdout)["succeeded"] == 1
