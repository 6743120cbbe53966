"""Organizations (tenants), their admins and API keys (R-01)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from commcredits.domain.errors import RuleViolation
from commcredits.domain.roles import ADMIN_ROLES, KeyRole

Billing = Literal["prepaid", "postpaid"]
PstnPolicy = Literal["international_and_domestic", "domestic", "none"]
DialoutPolicy = Literal["any", "organizer_country", "zone_a", "none"]

_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    country: str
    currency: str
    billing: Billing
    overage_enabled: bool
    created_at: datetime
    updated_at: datetime
    pstn_policy: PstnPolicy = "international_and_domestic"
    dialout_policy: DialoutPolicy = "any"

    @property
    def is_postpaid(self) -> bool:
        return self.billing == "postpaid"


@dataclass(frozen=True, slots=True)
class Admin:
    org_id: str
    id: str
    email: str
    display_name: str
    roles: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    org_id: str | None
    name: str
    role: KeyRole
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request."""

    key_id: str
    role: KeyRole
    org_id: str | None

    def reaches(self, org_id: str) -> bool:
        """An organization key never reaches another organization; the operator reaches all."""
        return self.role == "operator" or self.org_id == org_id


def check_name(name: str, *, field: str = "name") -> str:
    cleaned = name.strip()
    if not cleaned:
        raise RuleViolation("a name cannot be blank", code="invalid_name", field=field)
    return cleaned


def check_email(email: str, *, field: str = "email") -> str:
    cleaned = email.strip()
    if not _EMAIL.fullmatch(cleaned):
        raise RuleViolation(
            f"{email!r} is not an e-mail address", code="invalid_email", field=field
        )
    return cleaned.lower()


def check_admin_roles(roles: list[str], *, field: str = "roles") -> tuple[str, ...]:
    if not roles:
        raise RuleViolation("an admin needs at least one role", code="invalid_roles", field=field)
    unknown = [role for role in roles if role not in ADMIN_ROLES]
    if unknown:
        raise RuleViolation(
            f"unknown admin role {unknown[0]!r}; roles are {', '.join(ADMIN_ROLES)}",
            code="invalid_roles",
            field=field,
        )
    return tuple(dict.fromkeys(roles))
