"""Which admin roles may see and change what in the console."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from commcredits.console.access import ADMIN_PERMISSIONS, may
from commcredits.domain.roles import ADMIN_ROLES
from commcredits.services.signin import ConsoleSession

AT = datetime(2026, 1, 15, tzinfo=UTC)


def _admin(*roles: str) -> ConsoleSession:
    return ConsoleSession("t", "admin", "org_1", "adm_1", "a@b.example", "A", roles, AT)


def test_every_admin_role_has_a_row() -> None:
    assert set(ADMIN_PERMISSIONS) == set(ADMIN_ROLES)


@pytest.mark.parametrize(
    ("roles", "area", "access", "allowed"),
    [
        (("reports_reader",), "credits", "write", False),
        (("reports_reader",), "credits", "read", False),
        (("reports_reader",), "reports", "read", True),
        (("billing_admin",), "credits", "write", True),
        (("billing_admin",), "directory", "read", False),
        (("teams_admin",), "directory", "write", True),
        (("teams_admin",), "credits", "write", False),
        (("global_admin",), "credits", "write", True),
        (("global_admin",), "platform", "read", False),
        (("reports_reader", "billing_admin"), "credits", "write", True),
    ],
)
def test_roles_decide_access(roles: tuple[str, ...], area: str, access: str, allowed: bool) -> None:
    assert may(_admin(*roles), area, access) is allowed  # type: ignore[arg-type]


def test_the_operator_may_do_everything() -> None:
    operator = ConsoleSession("t", "operator", None, None, None, "Operator", (), AT)
    assert may(operator, "platform", "write")
    assert operator.reaches("org_anything")
    assert not _admin("global_admin").reaches("org_other")
