"""Request and response bodies of the HTTP API, as msgspec structs.

Requests forbid unknown fields: a typo in a field name is an error, not a silent default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from commcredits.domain.organizations import Admin, ApiKey, Organization
from commcredits.services.reports import masking_default

Name = Annotated[str, Meta(min_length=1, max_length=200)]
CountryCode = Annotated[str, Meta(min_length=1, max_length=8, description="ISO 3166-1 alpha-2")]
CurrencyCode = Annotated[str, Meta(min_length=1, max_length=8, description="ISO 4217")]


class Request(Struct, forbid_unknown_fields=True):
    """Base of every request body."""


class CreateOrganization(Request):
    name: Name
    country: CountryCode
    currency: CurrencyCode
    billing: Literal["prepaid", "postpaid"]
    overage_enabled: bool = False


PstnPolicyField = Literal["international_and_domestic", "domestic", "none"]
DialoutPolicyField = Literal["any", "organizer_country", "zone_a", "none"]


class UpdateOrganization(Request):
    name: Name | UnsetType = UNSET
    billing: Literal["prepaid", "postpaid"] | UnsetType = UNSET
    overage_enabled: bool | UnsetType = UNSET
    pstn_policy: PstnPolicyField | UnsetType = UNSET
    dialout_policy: DialoutPolicyField | UnsetType = UNSET
    mask_numbers: bool | UnsetType | None = UNSET
    """Number masking in reports (operator only): true, false, or null for the default of
    the billing country."""


class OrganizationOut(Struct):
    id: str
    name: str
    country: str
    currency: str
    billing: str
    overage_enabled: bool
    pstn_policy: str
    dialout_policy: str
    created_at: datetime
    updated_at: datetime
    mask_numbers: bool | None = None
    """The operator's masking setting; null: the default of the billing country."""
    numbers_masked: bool = False
    """Whether reports mask the other party's number (the setting, or the default)."""

    @classmethod
    def of(cls, org: Organization, mask_numbers: bool | None = None) -> OrganizationOut:
        return cls(
            id=org.id,
            name=org.name,
            country=org.country,
            currency=org.currency,
            billing=org.billing,
            overage_enabled=org.overage_enabled,
            pstn_policy=org.pstn_policy,
            dialout_policy=org.dialout_policy,
            created_at=org.created_at,
            updated_at=org.updated_at,
            mask_numbers=mask_numbers,
            numbers_masked=masking_default(org.country) if mask_numbers is None else mask_numbers,
        )


class CreateAdmin(Request):
    email: Annotated[str, Meta(min_length=3, max_length=320)]
    display_name: Name
    roles: list[Literal["global_admin", "billing_admin", "teams_admin", "reports_reader"]]


class AdminOut(Struct):
    id: str
    org_id: str
    email: str
    display_name: str
    roles: list[str]
    created_at: datetime

    @classmethod
    def of(cls, admin: Admin) -> AdminOut:
        return cls(
            id=admin.id,
            org_id=admin.org_id,
            email=admin.email,
            display_name=admin.display_name,
            roles=list(admin.roles),
            created_at=admin.created_at,
        )


class CreateKey(Request):
    name: Name
    role: Literal["admin", "billing", "telephony", "reader"]


class KeyOut(Struct):
    id: str
    org_id: str | None
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id,
            org_id=key.org_id,
            name=key.name,
            role=key.role,
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


class IssuedKeyOut(KeyOut):
    key: str = ""
    """The whole key; shown in this response only."""


UtcTime = Annotated[datetime, Meta(tz=True, description="RFC 3339 with an offset, e.g. ...Z")]


class SetClock(Request):
    now: UtcTime


class JobRunOut(Struct):
    job: str
    at: datetime
    processed: int


class ClockOut(Struct):
    mode: str
    now: datetime
    jobs: list[JobRunOut] = msgspec.field(default_factory=list)


class JobsOut(Struct):
    ran: list[JobRunOut]
