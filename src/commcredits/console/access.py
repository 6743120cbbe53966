"""What each admin role may see and change in the console: one table, like the API's.

The areas and accesses are the API's (``domain.roles``); an admin with several roles may do
what any of them allows. The operator may do everything, in every organization.
"""

from __future__ import annotations

from typing import Final, get_args

from commcredits.domain.roles import PERMISSIONS, Access, Area
from commcredits.services.signin import ConsoleSession

_RW: Final[frozenset[Access]] = frozenset({"read", "write"})
_R: Final[frozenset[Access]] = frozenset({"read"})

ADMIN_PERMISSIONS: Final[dict[str, dict[Area, frozenset[Access]]]] = {
    # Everything in the organization, like an organization key with the admin role.
    "global_admin": dict(PERMISSIONS["admin"]),
    # Buys credits, manages payment methods and auto-recharge, reads invoices and reports.
    "billing_admin": {"org": _R, "credits": _RW, "reports": _R, "rates": _R},
    # Manages users, licenses and numbers; sees the balance and the usage but cannot buy.
    "teams_admin": {
        "org": _R,
        "admins": _R,
        "directory": _RW,
        "credits": _R,
        "usage": _R,
        "reports": _R,
    },
    # Reads the usage reports, nothing else.
    "reports_reader": {"org": _R, "usage": _R, "reports": _R},
}


def may(session: ConsoleSession, area: Area, access: Access) -> bool:
    """True when the signed-in admin (or the operator) may ``access`` the ``area``."""
    if session.is_operator:
        return True
    return any(
        access in ADMIN_PERMISSIONS.get(role, {}).get(area, frozenset()) for role in session.roles
    )


def areas_readable(session: ConsoleSession) -> frozenset[str]:
    return frozenset(area for area in get_args(Area) if may(session, area, "read"))
