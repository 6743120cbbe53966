"""The command line, and ``commcredits serve`` as a real process on a real port."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from commcredits.cli.main import app
from tests.support.postgres import free_port

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_orgs_are_created_and_listed_from_the_command_line(db: str) -> None:
    created = json.loads(
        _run(
            "orgs",
            "create",
            "--name",
            "Contoso",
            "--country",
            "DE",
            "--currency",
            "EUR",
            "--database-url",
            db,
            "--json",
        )
    )
    assert created["country"] == "DE"
    listed = json.loads(_run("orgs", "list", "--database-url", db, "--json"))
    assert [org["id"] for org in listed] == [created["id"]]
    shown = json.loads(_run("orgs", "show", created["id"], "--database-url", db, "--json"))
    assert shown["name"] == "Contoso"


def test_a_bad_country_fails_the_command_with_its_code(db: str) -> None:
    result = runner.invoke(
        app,
        [
            "orgs",
            "create",
            "--name",
            "X",
            "--country",
            "XX",
            "--currency",
            "EUR",
            "--database-url",
            db,
        ],
    )
    assert result.exit_code == 1
    assert "invalid_country" in result.output


def test_an_operator_key_from_the_command_line_is_printed_once_and_stored_hashed(
    db: str, tmp_path: Path
) -> None:
    issued = json.loads(_run("keys", "create-operator", "--database-url", db, "--json"))
    assert issued["role"] == "operator"
    assert issued["key"].startswith("cck_")
    secret = issued["key"].split(".", 1)[1]
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("cli.db*"))
    assert issued["id"].encode() in stored
    assert secret.encode() not in stored


def test_db_upgrade_and_jobs_run_work_on_a_new_database(db: str) -> None:
    assert "database at revision" in _run("db", "upgrade", "--database-url", db)
    assert json.loads(_run("jobs", "run", "--database-url", db, "--json")) == []


def test_the_simulated_clock_refuses_to_go_back_from_the_command_line(db: str) -> None:
    _run("clock", "set", "2027-01-01T00:00:00+00:00", "--database-url", db)
    result = runner.invoke(app, ["clock", "set", "2026-01-01T00:00:00Z", "--database-url", db])
    assert result.exit_code == 1
    assert "clock_cannot_go_backwards" in result.output


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    """`commcredits serve` started the way `make run` starts it, in an empty folder."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMCREDITS_")}
    env["COMMCREDITS_CONFIG"] = str(tmp_path / "none.toml")
    process = subprocess.Popen(
        [sys.executable, "-m", "commcredits.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = ""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        output += line
        try:
            if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200 and "cck_" in output:
                break
        except httpx.TransportError:
            continue
    else:
        process.kill()
        pytest.fail(f"serve did not start:\n{output}")
    key = re.search(r"(cck_\S+)", output)
    assert key is not None, output
    assert f"listening on {base}" in output
    yield base, key.group(1), process
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def test_serve_prints_where_it_listens_and_the_operator_key_it_made(
    served: tuple[str, str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    base, key, _ = served
    headers = {"Authorization": f"Bearer {key}"}
    created = httpx.post(
        f"{base}/v1/orgs",
        json={"name": "Contoso", "country": "US", "currency": "USD", "billing": "prepaid"},
        headers=headers,
    )
    assert created.status_code == 201
    assert httpx.get(f"{base}/v1/orgs", headers=headers).json()[0]["name"] == "Contoso"
    database = tmp_path / "var" / "commcredits.db"
    assert database.exists()
    stored = b"".join(path.read_bytes() for path in database.parent.glob("commcredits.db*"))
    assert key.split(".", 1)[1].encode() not in stored
    assert key.split(".", 1)[0].removeprefix("cck_").encode() in stored  # the id is, the secret not
