"""docs/quickstart.md works as written: every ``sh``/``bash`` block, in order, in one shell.

The blocks run in a fresh temporary folder (so against fresh databases under its ``var/``),
with this virtual environment's ``commcredits`` first on the ``PATH`` and ``PORT`` set to a
free port. ``console`` blocks are transcripts for the reader (``make run`` serves until
stopped) and are not run. A whole-line comment inside a shell block shows what the command
above it prints: each must appear in the output (up to a trailing ``...``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.postgres import free_port

QUICKSTART = Path(__file__).parents[2] / "docs" / "quickstart.md"
SHELL_BLOCK = re.compile(r"^```(?:sh|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def shell_blocks(markdown: str) -> list[str]:
    return [block.group(1) for block in SHELL_BLOCK.finditer(markdown)]


def expected_lines(block: str) -> list[str]:
    lines = [line.strip() for line in block.splitlines()]
    shown = [line.removeprefix("# ") for line in lines if line.startswith("# ")]
    return [line.removesuffix(" ...").rstrip() for line in shown]


def test_the_block_finder_sees_shell_blocks_and_skips_transcripts() -> None:
    text = "```sh\necho a\n# a\n```\n```console\n$ make run\n```\n```bash\necho b  # b\n```\n"
    assert shell_blocks(text) == ["echo a\n# a\n", "echo b  # b\n"]
    assert [expected_lines(block) for block in shell_blocks(text)] == [["a"], []]


def test_every_shell_block_of_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    blocks = shell_blocks(QUICKSTART.read_text(encoding="utf-8"))
    assert len(blocks) >= 5
    script = "set -euo pipefail\n" + "\n".join(blocks)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PORT": str(free_port()),
        "COLUMNS": "200",
    }
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    # What the page says the commands print.
    shown = [line for block in blocks for line in expected_lines(block)]
    assert len(shown) >= 8
    missing = [line for line in shown if line not in output]
    assert missing == [], output[-4000:]
    assert "Fabrikam (demo): 1 simulated month" in output
    assert "ledger verify: consistent" in output
