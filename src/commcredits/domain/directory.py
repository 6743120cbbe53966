"""Users, their licenses and policies, and the organization's phone numbers (R-10..R-15, R-37).

The prerequisite rules themselves live with the SKU catalogue in
:mod:`commcredits.domain.licensing`; this module holds the directory's own values and checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

import phonenumbers

from commcredits.domain.errors import RuleViolation
from commcredits.domain.organizations import DialoutPolicy, PstnPolicy

NumberKind = Literal["user", "service", "service_toll_free", "conference", "conference_toll_free"]
TOLL_FREE_KINDS: Final = frozenset({"service_toll_free", "conference_toll_free"})

_UPN: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True, slots=True)
class User:
    org_id: str
    id: str
    upn: str
    display_name: str
    usage_location: str | None
    licenses: frozenset[str]
    pstn_policy: PstnPolicy | None
    dialout_policy: DialoutPolicy | None
    spend_limit: Decimal | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    number: str
    org_id: str
    kind: NumberKind
    country: str
    user_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Subscription:
    sku: str
    quantity: int | None
    """None: unlimited seats (MCOPSTNPP once credits are funded, R-10)."""
    assigned: int

    @property
    def available(self) -> int | None:
        return None if self.quantity is None else max(self.quantity - self.assigned, 0)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    org_id: str
    id: str
    at: datetime
    actor: str
    action: str
    target: str | None
    details: dict[str, object]


def check_upn(upn: str, *, field: str = "upn") -> str:
    """A user principal name looks like an e-mail address; compared case-insensitively."""
    cleaned = upn.strip().lower()
    if not _UPN.fullmatch(cleaned) or len(cleaned) > 320:
        raise RuleViolation(
            f"{upn!r} is not a user principal name such as pat@contoso.com",
            code="invalid_upn",
            field=field,
        )
    return cleaned


def parse_e164(number: str, *, field: str = "number") -> tuple[str, str]:
    """The number in E.164 and its country, or ``invalid_number``."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        raise RuleViolation(
            f"{number!r} is not an E.164 number such as +14255550100",
            code="invalid_number",
            field=field,
        ) from exc
    if not number.strip().startswith("+") or not phonenumbers.is_valid_number(parsed):
        raise RuleViolation(
            f"{number!r} is not a valid E.164 number", code="invalid_number", field=field
        )
    region = phonenumbers.region_code_for_number(parsed) or "ZZ"
    if not region.isalpha():  # "001": international numbers (+800 ...) belong to no country
        region = "ZZ"
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), region


def check_toll_free(number: str, kind: str, *, field: str = "number") -> None:
    """A toll-free kind needs a number that libphonenumber classifies as toll-free."""
    if kind not in TOLL_FREE_KINDS:
        return
    parsed = phonenumbers.parse(number, None)
    if phonenumbers.number_type(parsed) != phonenumbers.PhoneNumberType.TOLL_FREE:
        raise RuleViolation(
            f"{number} is not a toll-free number, so it cannot be a {kind} number",
            code="not_toll_free",
            field=field,
        )
