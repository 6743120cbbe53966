"""The deployment recipe's pieces: the sample systemd unit and the commands it runs."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from commcredits.cli.main import app

UNIT = Path(__file__).parents[2] / "docs" / "commcredits.service"
INSTALLED = "/srv/commcredits/.venv/bin/commcredits"


def _commands(key: str) -> list[list[str]]:
    lines = UNIT.read_text(encoding="utf-8").splitlines()
    return [shlex.split(line.split("=", 1)[1]) for line in lines if line.startswith(f"{key}=")]


def test_the_unit_runs_the_installed_command_line() -> None:
    [start] = _commands("ExecStart")
    [migrate] = _commands("ExecStartPre")
    assert start[:2] == [INSTALLED, "serve"]
    assert migrate == [INSTALLED, "db", "upgrade"]
    # Every option the unit passes exists: an unknown one fails before --help is shown.
    result = CliRunner().invoke(app, [*start[1:], "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    here = str(Path(sys.executable).parent / "commcredits")
    unit = tmp_path / "commcredits.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED, here), encoding="utf-8")
    checked = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "commcredits.service" not in checked.stderr, checked.stderr
