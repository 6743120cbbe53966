"""``make audit`` fails on any known vulnerability, and says so plainly when it could not
check anything; it never passes quietly on a vulnerability."""

from __future__ import annotations

import json

from tests.security.dependency_audit import read_report, verdict

REACHABLE = {
    "dependencies": [
        {"name": "litestar", "version": "2.25.0", "vulns": []},
        {"name": "jinja2", "version": "3.1.0", "vulns": [
            {"id": "GHSA-h75v-3vvj-5mfj", "fix_versions": ["3.1.4"], "description": "..."}
        ]},
        {"name": "private-lib", "skip_reason": "Dependency not found on PyPI"},
    ],
    "fixes": [],
}  # fmt: skip
ALL_SKIPPED = {
    "dependencies": [
        {
            "name": "litestar",
            "skip_reason": "Dependency not found on PyPI and could not be audited",
        },
        {"name": "jinja2", "skip_reason": "Dependency not found on PyPI and could not be audited"},
    ],
    "fixes": [],
}


def test_a_known_vulnerability_fails_the_audit_even_when_some_packages_were_skipped() -> None:
    audit = read_report(json.dumps(REACHABLE), "", 1)
    for strict in (False, True):
        status, message = verdict(audit, strict=strict)
        assert status == 1
        assert "jinja2 3.1.0: GHSA-h75v-3vvj-5mfj (fixed in 3.1.4)" in message


def test_a_clean_audit_passes_and_counts_what_it_checked() -> None:
    clean = {"dependencies": [{"name": "litestar", "version": "2.25.0", "vulns": []}]}
    assert verdict(read_report(json.dumps(clean), "", 0), strict=True) == (
        0,
        "dependency audit: no known vulnerabilities in 1 packages",
    )


def test_an_unreachable_service_is_said_plainly_and_fails_only_when_strict() -> None:
    for audit in (
        read_report(json.dumps(ALL_SKIPPED), "", 0),
        read_report("", "requests.exceptions.ConnectionError: Failed to resolve 'api.osv.dev'", 1),
    ):
        status, message = verdict(audit, strict=False)
        assert status == 0
        assert message.startswith("dependency audit NOT DONE")
        assert verdict(audit, strict=True)[0] == 1
