"""``make audit``: the installed packages checked against known vulnerabilities (pip-audit).

A vulnerability found always fails. When the vulnerability service cannot be reached (no
network, or an index mirror that does not serve PyPI's per-release JSON, so every package
comes back "not found"), nothing was checked: that is said plainly, and the target passes
unless ``AUDIT_STRICT=1`` (set it where the service is reachable, so a broken audit cannot
pass silently).

Run as ``python -m tests.security.dependency_audit``; extra arguments go to pip-audit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

PIP_AUDIT = [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off"]


@dataclass
class Audit:
    vulnerable: list[str] = field(default_factory=list)
    """One line per known vulnerability: package, version, id, fixed versions."""
    audited: int = 0
    skipped: list[str] = field(default_factory=list)
    unreachable: str | None = None
    """Why the service could not be asked at all, if it could not."""


def read_report(stdout: str, stderr: str, returncode: int) -> Audit:
    """What one pip-audit run found, from its JSON report (or its failure)."""
    try:
        report: dict[str, Any] = json.loads(stdout) if stdout.strip() else {}
    except json.JSONDecodeError:
        report = {}
    dependencies = report.get("dependencies")
    if not isinstance(dependencies, list):
        last = (stderr.strip().splitlines() or [f"pip-audit exited {returncode}"])[-1]
        return Audit(unreachable=last)
    audit = Audit()
    for dependency in dependencies:
        name = f"{dependency.get('name')} {dependency.get('version', '')}".strip()
        if "skip_reason" in dependency:
            audit.skipped.append(name)
            continue
        audit.audited += 1
        for vulnerability in dependency.get("vulns") or []:
            fixed = ", ".join(vulnerability.get("fix_versions") or []) or "no fix yet"
            audit.vulnerable.append(f"{name}: {vulnerability.get('id')} (fixed in {fixed})")
    if not audit.audited and audit.skipped and not audit.vulnerable:
        audit.unreachable = (
            f"none of the {len(audit.skipped)} packages could be looked up"
            " (the index answers, but not with PyPI's vulnerability data)"
        )
    return audit


def verdict(audit: Audit, *, strict: bool) -> tuple[int, str]:
    """The exit status and what to print."""
    if audit.vulnerable:
        lines = "\n  ".join(audit.vulnerable)
        return 1, f"dependency audit: {len(audit.vulnerable)} known vulnerabilities:\n  {lines}"
    if audit.unreachable is not None:
        message = (
            "dependency audit NOT DONE: the vulnerability service could not be reached"
            f" ({audit.unreachable})."
        )
        if strict:
            return 1, message
        return 0, message + " Passing anyway; set AUDIT_STRICT=1 to fail instead."
    note = f"; {len(audit.skipped)} could not be checked" if audit.skipped else ""
    return 0, f"dependency audit: no known vulnerabilities in {audit.audited} packages{note}"


def main(argv: list[str]) -> int:
    run = subprocess.run(
        [*PIP_AUDIT, "--skip-editable", *argv], capture_output=True, text=True, check=False
    )
    status, message = verdict(
        read_report(run.stdout, run.stderr, run.returncode),
        strict=os.environ.get("AUDIT_STRICT") == "1",
    )
    print(message, file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
