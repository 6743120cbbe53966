"""Request and response bodies of the directory endpoints (API.md, "Users, subscriptions,
licenses, numbers, policies")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from commcredits.api.schemas import DialoutPolicyField, Name, PstnPolicyField, Request
from commcredits.domain.directory import AuditEntry, PhoneNumber, Subscription, User
from commcredits.domain.money import Money
from commcredits.domain.organizations import Organization

Upn = Annotated[str, Meta(min_length=1, max_length=320)]
Sku = Annotated[str, Meta(min_length=1, max_length=64)]
Skus = Annotated[list[Sku], Meta(max_length=50)]


class CreateUser(Request):
    upn: Upn
    display_name: Name
    usage_location: Annotated[str, Meta(max_length=8)] | None = None


class UpdateUser(Request):
    display_name: Name | UnsetType = UNSET
    usage_location: Annotated[str, Meta(max_length=8)] | UnsetType | None = UNSET
    pstn_policy: PstnPolicyField | UnsetType | None = UNSET
    dialout_policy: DialoutPolicyField | UnsetType | None = UNSET
    spend_limit: Annotated[str, Meta(max_length=40)] | UnsetType | None = UNSET


class UserOut(Struct):
    id: str
    upn: str
    display_name: str
    usage_location: str | None
    licenses: list[str]
    pstn_policy: str | None
    dialout_policy: str | None
    spend_limit: str | None
    effective_pstn_policy: str
    effective_dialout_policy: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: User, org: Organization) -> UserOut:
        return cls(
            id=user.id,
            upn=user.upn,
            display_name=user.display_name,
            usage_location=user.usage_location,
            licenses=sorted(user.licenses),
            pstn_policy=user.pstn_policy,
            dialout_policy=user.dialout_policy,
            spend_limit=Money(user.spend_limit, org.currency).format()
            if user.spend_limit is not None
            else None,
            effective_pstn_policy=user.pstn_policy or org.pstn_policy,
            effective_dialout_policy=user.dialout_policy or org.dialout_policy,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )


class ChangeLicenses(Request):
    add: Skus = []  # noqa: RUF012 - msgspec copies defaults
    remove: Skus = []  # noqa: RUF012


class LicensesOut(Struct):
    licenses: list[str]


class BulkLicenses(Request):
    users: Annotated[list[Upn], Meta(max_length=100_000)]
    add: Skus = []  # noqa: RUF012
    remove: Skus = []  # noqa: RUF012


class BulkError(Struct):
    code: str
    message: str


class BulkResultOut(Struct, omit_defaults=True):
    user: str
    ok: bool
    licenses: list[str] | None = None
    error: BulkError | None = None


class BulkOut(Struct):
    succeeded: int
    failed: int
    results: list[BulkResultOut]


class CreateSubscription(Request):
    sku: Sku
    quantity: Annotated[int, Meta(ge=0, le=10_000_000)]


class SubscriptionOut(Struct):
    sku: str
    quantity: int | None
    assigned: int
    available: int | None

    @classmethod
    def of(cls, subscription: Subscription) -> SubscriptionOut:
        return cls(
            sku=subscription.sku,
            quantity=subscription.quantity,
            assigned=subscription.assigned,
            available=subscription.available,
        )


class CreateNumber(Request):
    number: Annotated[str, Meta(min_length=1, max_length=32)]
    kind: Literal["user", "service", "service_toll_free", "conference", "conference_toll_free"]
    assigned_to: Upn | None = None


class AssignNumber(Request):
    assigned_to: Upn | None


class NumberOut(Struct):
    number: str
    kind: str
    country: str
    assigned_to: str | None
    created_at: datetime

    @classmethod
    def of(cls, number: PhoneNumber, upns: dict[str, str]) -> NumberOut:
        return cls(
            number=number.number,
            kind=number.kind,
            country=number.country,
            assigned_to=upns.get(number.user_id) if number.user_id else None,
            created_at=number.created_at,
        )


class AuditOut(Struct):
    id: str
    at: datetime
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditOut:
        return cls(
            id=entry.id,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            details=dict(entry.details),
        )
