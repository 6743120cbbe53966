"""The permission table (API.md, Conventions: key roles)."""

from __future__ import annotations

import pytest

from commcredits.domain.organizations import Principal
from commcredits.domain.roles import PERMISSIONS, allows


def test_the_operator_may_do_everything() -> None:
    for area in ("platform", "org", "credits", "usage", "reports", "platform_calls"):
        assert allows("operator", area, "write")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("role", "area", "access", "allowed"),
    [
        ("admin", "credits", "write", True),
        ("admin", "platform", "write", False),
        ("billing", "credits", "write", True),
        ("billing", "reports", "read", True),
        ("billing", "directory", "write", False),
        ("telephony", "usage", "write", True),
        ("telephony", "credits", "read", False),
        ("reader", "credits", "read", True),
        ("reader", "credits", "write", False),
        ("reader", "org", "write", False),
        ("platform_telephony", "platform_calls", "write", True),
        ("platform_telephony", "usage", "write", False),
        ("platform_telephony", "platform", "read", False),
    ],
)
def test_each_role_gets_exactly_its_areas(role: str, area: str, access: str, allowed: bool) -> None:
    assert allows(role, area, access) is allowed  # type: ignore[arg-type]


def test_reader_keys_only_ever_read() -> None:
    assert all(access == frozenset({"read"}) for access in PERMISSIONS["reader"].values())


def test_an_organization_key_never_reaches_another_organization() -> None:
    key = Principal(key_id="key_1", role="admin", org_id="org_a")
    assert key.reaches("org_a")
    assert not key.reaches("org_b")
    assert Principal(key_id="op", role="operator", org_id=None).reaches("org_b")
    assert not Principal(key_id="t", role="platform_telephony", org_id=None).reaches("org_a")
