"""Who may do what: key roles, admin roles and the one permission table.

Every HTTP endpoint names an *area* and whether it reads or writes; :func:`allows` decides from
:data:`PERMISSIONS` alone, so the whole access policy is reviewable on one screen.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

KeyRole = Literal["operator", "platform_telephony", "admin", "billing", "telephony", "reader"]
OrgKeyRole = Literal["admin", "billing", "telephony", "reader"]
AdminRole = Literal["global_admin", "billing_admin", "teams_admin", "reports_reader"]
Access = Literal["read", "write"]
Area = Literal[
    "platform",  # organizations as a whole, the clock, the job runner, rate tables
    "platform_calls",  # call control for a telephony edge serving many organizations
    "org",  # the organization's own settings
    "admins",
    "keys",
    "directory",  # users, subscriptions, licenses, numbers, policies
    "credits",  # payment methods, orders, lots, invoices, notifications
    "adjustments",  # support's corrections of a balance
    "usage",  # calls, CDRs, SMS, pools
    "reports",
    "rates",  # reading rates and quotes
]

ORG_KEY_ROLES: Final[tuple[str, ...]] = get_args(OrgKeyRole)
ADMIN_ROLES: Final[tuple[str, ...]] = get_args(AdminRole)
BILLING_ADMIN_ROLES: Final = frozenset({"global_admin", "billing_admin"})
"""Admins with these roles receive billing mails (R-26)."""

_RW: Final[frozenset[Access]] = frozenset({"read", "write"})
_R: Final[frozenset[Access]] = frozenset({"read"})

PERMISSIONS: Final[dict[KeyRole, dict[Area, frozenset[Access]]]] = {
    "operator": {area: _RW for area in get_args(Area)},
    "platform_telephony": {"platform_calls": _RW},
    "admin": {
        "org": _RW,
        "adjustments": _RW,
        "admins": _RW,
        "keys": _RW,
        "directory": _RW,
        "credits": _RW,
        "usage": _RW,
        "reports": _R,
        "rates": _R,
    },
    "billing": {"org": _R, "credits": _RW, "reports": _R, "rates": _R},
    "telephony": {"usage": _RW},
    "reader": {
        "org": _R,
        "admins": _R,
        "keys": _R,
        "directory": _R,
        "credits": _R,
        "usage": _R,
        "reports": _R,
        "rates": _R,
    },
}


def allows(role: KeyRole, area: Area, access: Access) -> bool:
    """True when a key of ``role`` may ``access`` the ``area``."""
    return access in PERMISSIONS[role].get(area, frozenset())
