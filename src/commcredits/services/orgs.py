"""Use cases for organizations and their admins (R-01; API.md "Organizations, admins, keys")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from sqlalchemy import select, update

from commcredits.adapters.clock import Clock
from commcredits.domain.countries import check_country
from commcredits.domain.errors import Conflict, NotFound
from commcredits.domain.ids import new_id
from commcredits.domain.money import check_currency
from commcredits.domain.organizations import (
    Admin,
    Billing,
    DialoutPolicy,
    Organization,
    PstnPolicy,
    check_admin_roles,
    check_email,
    check_name,
)
from commcredits.services import idempotency
from commcredits.services.idempotency import Idempotency
from commcredits.store.database import Store, UnitOfWork, retrying
from commcredits.store.orgs import AdminRepository, OrganizationRepository
from commcredits.store.tables import organizations

BillingListener = Callable[[UnitOfWork, Organization, Organization], None]
"""Called inside the transaction that changes an organization's billing (before, after)."""


@dataclass(frozen=True, slots=True)
class NewOrganization:
    name: str
    country: str
    currency: str
    billing: Billing
    overage_enabled: bool = False


MaskNumbers = Literal["on", "off", "default"]
"""``default``: masked where the billing country requires it (services/reports.py)."""


@dataclass(frozen=True, slots=True)
class OrganizationChanges:
    name: str | None = None
    billing: Billing | None = None
    overage_enabled: bool | None = None
    pstn_policy: PstnPolicy | None = None
    dialout_policy: DialoutPolicy | None = None
    mask_numbers: MaskNumbers | None = None
    """Number masking in reports (the operator's setting); ``None`` leaves it as it is."""


def mask_numbers_setting(uow: UnitOfWork, org_id: str) -> bool | None:
    """The operator's masking setting of the organization: on, off, or ``None`` (the
    default of its billing country)."""
    value = uow.conn.execute(
        select(organizations.c.mask_numbers).where(organizations.c.id == org_id)
    ).scalar_one_or_none()
    return None if value is None else bool(value)


def get_org(uow: UnitOfWork, org_id: str) -> Organization:
    """The organization, or ``not_found``: the one lookup every org-scoped use case starts with."""
    org = OrganizationRepository(uow.conn).get(org_id)
    if org is None:
        raise NotFound("no such organization", code="organization_not_found")
    return org


def locked_org(uow: UnitOfWork, org_id: str) -> Organization:
    """The organization, locked until the transaction ends: what a use case that counts
    (seats, money) takes first, so two concurrent requests are sized one after the other."""
    if not uow.lock_org(org_id):
        raise NotFound("no such organization", code="organization_not_found")
    return get_org(uow, org_id)


class Organizations:
    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock
        self.billing_listeners: list[BillingListener] = []

    @retrying()
    def create(self, new: NewOrganization, *, request: Idempotency | None = None) -> Organization:
        now = self.clock.now()
        org = Organization(
            id=new_id("org"),
            name=check_name(new.name),
            country=check_country(new.country),
            currency=check_currency(new.currency),
            billing=new.billing,
            overage_enabled=new.overage_enabled,
            created_at=now,
            updated_at=now,
        )
        with self.store.unit_of_work() as uow:
            idempotency.begin(uow, request, now)
            OrganizationRepository(uow.conn).add(org)
            idempotency.finish(uow, request, org)
            uow.commit()
        return org

    def get(self, org_id: str) -> Organization:
        with self.store.unit_of_work(read_only=True) as uow:
            return get_org(uow, org_id)

    def mask_numbers(self, org_ids: list[str]) -> dict[str, bool | None]:
        """Each organization's masking setting (see :func:`mask_numbers_setting`)."""
        with self.store.unit_of_work(read_only=True) as uow:
            rows = uow.conn.execute(
                select(organizations.c.id, organizations.c.mask_numbers).where(
                    organizations.c.id.in_(org_ids)
                )
            )
            return {
                row.id: None if row.mask_numbers is None else bool(row.mask_numbers) for row in rows
            }

    def list_orgs(self, *, limit: int = 100, after: str | None = None) -> list[Organization]:
        with self.store.unit_of_work(read_only=True) as uow:
            return OrganizationRepository(uow.conn).page(limit=limit, after=after)

    @retrying()
    def update(self, org_id: str, changes: OrganizationChanges) -> Organization:
        with self.store.unit_of_work() as uow:
            uow.lock_org(org_id)
            before = get_org(uow, org_id)
            after = replace(
                before,
                name=check_name(changes.name) if changes.name is not None else before.name,
                billing=changes.billing or before.billing,
                overage_enabled=(
                    before.overage_enabled
                    if changes.overage_enabled is None
                    else changes.overage_enabled
                ),
                pstn_policy=changes.pstn_policy or before.pstn_policy,
                dialout_policy=changes.dialout_policy or before.dialout_policy,
                updated_at=self.clock.now(),
            )
            OrganizationRepository(uow.conn).update(after)
            if changes.mask_numbers is not None:
                uow.conn.execute(
                    update(organizations)
                    .where(organizations.c.id == org_id)
                    .values(
                        mask_numbers={"on": True, "off": False, "default": None}[
                            changes.mask_numbers
                        ]
                    )
                )
            if after.billing != before.billing:
                for listener in self.billing_listeners:
                    listener(uow, before, after)
            uow.commit()
        return after

    @retrying()
    def add_admin(self, org_id: str, email: str, display_name: str, roles: list[str]) -> Admin:
        with self.store.unit_of_work() as uow:
            get_org(uow, org_id)
            repository = AdminRepository(uow.conn)
            admin = Admin(
                org_id=org_id,
                id=new_id("adm"),
                email=check_email(email),
                display_name=check_name(display_name, field="display_name"),
                roles=check_admin_roles(roles),
                created_at=self.clock.now(),
            )
            if repository.by_email(org_id, admin.email) is not None:
                raise Conflict(
                    f"{admin.email} is already an admin of this organization",
                    code="admin_exists",
                    field="email",
                )
            repository.add(admin)
            uow.commit()
        return admin

    def admins(self, org_id: str) -> list[Admin]:
        with self.store.unit_of_work(read_only=True) as uow:
            get_org(uow, org_id)
            return AdminRepository(uow.conn).for_org(org_id)
