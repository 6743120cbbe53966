"""Repositories for organizations, admins and API keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from commcredits.domain.organizations import (
    Admin,
    ApiKey,
    Billing,
    DialoutPolicy,
    Organization,
    PstnPolicy,
)
from commcredits.domain.roles import KeyRole
from commcredits.store.tables import admins, api_keys, organizations


def _org(row: Row[Any]) -> Organization:
    return Organization(
        id=row.id,
        name=row.name,
        country=row.country,
        currency=row.currency,
        billing=cast(Billing, row.billing),
        overage_enabled=bool(row.overage_enabled),
        created_at=row.created_at,
        updated_at=row.updated_at,
        pstn_policy=cast(PstnPolicy, row.pstn_policy),
        dialout_policy=cast(DialoutPolicy, row.dialout_policy),
    )


# Built once: every money movement and every key check reads one of these.
_GET_ORG = select(organizations).where(organizations.c.id == bindparam("k_id"))
_GET_KEY = select(api_keys).where(api_keys.c.id == bindparam("k_id"))


class OrganizationRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def add(self, org: Organization) -> None:
        self.conn.execute(
            insert(organizations).values(
                id=org.id,
                name=org.name,
                country=org.country,
                currency=org.currency,
                billing=org.billing,
                overage_enabled=org.overage_enabled,
                created_at=org.created_at,
                updated_at=org.updated_at,
                pstn_policy=org.pstn_policy,
                dialout_policy=org.dialout_policy,
            )
        )

    def get(self, org_id: str) -> Organization | None:
        row = self.conn.execute(_GET_ORG, {"k_id": org_id}).first()
        return _org(row) if row else None

    def page(self, *, limit: int = 100, after: str | None = None) -> list[Organization]:
        query = select(organizations).order_by(organizations.c.id).limit(limit)
        if after:
            query = query.where(organizations.c.id > after)
        return [_org(row) for row in self.conn.execute(query)]

    def update(self, org: Organization) -> None:
        self.conn.execute(
            update(organizations)
            .where(organizations.c.id == org.id)
            .values(
                name=org.name,
                billing=org.billing,
                overage_enabled=org.overage_enabled,
                updated_at=org.updated_at,
                pstn_policy=org.pstn_policy,
                dialout_policy=org.dialout_policy,
            )
        )


def _admin(row: Row[Any]) -> Admin:
    return Admin(
        org_id=row.org_id,
        id=row.id,
        email=row.email,
        display_name=row.display_name,
        roles=tuple(row.roles),
        created_at=row.created_at,
    )


class AdminRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def add(self, admin: Admin) -> None:
        self.conn.execute(
            insert(admins).values(
                org_id=admin.org_id,
                id=admin.id,
                email=admin.email,
                display_name=admin.display_name,
                roles=list(admin.roles),
                created_at=admin.created_at,
            )
        )

    def by_email(self, org_id: str, email: str) -> Admin | None:
        row = self.conn.execute(
            select(admins).where(admins.c.org_id == org_id, admins.c.email == email)
        ).first()
        return _admin(row) if row else None

    def for_org(self, org_id: str) -> list[Admin]:
        rows = self.conn.execute(
            select(admins)
            .where(admins.c.org_id == org_id)
            .order_by(admins.c.created_at, admins.c.id)
        )
        return [_admin(row) for row in rows]

    def with_any_role(self, org_id: str, roles: Sequence[str]) -> list[Admin]:
        wanted = set(roles)
        return [admin for admin in self.for_org(org_id) if wanted.intersection(admin.roles)]


def _key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        org_id=row.org_id,
        name=row.name,
        role=cast(KeyRole, row.role),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


class KeyRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def add(self, key: ApiKey, secret_hash: str) -> None:
        self.conn.execute(
            insert(api_keys).values(
                id=key.id,
                org_id=key.org_id,
                name=key.name,
                role=key.role,
                secret_hash=secret_hash,
                created_at=key.created_at,
            )
        )

    def get_with_hash(self, key_id: str) -> tuple[ApiKey, str] | None:
        row = self.conn.execute(_GET_KEY, {"k_id": key_id}).first()
        return (_key(row), row.secret_hash) if row else None

    def for_org(self, org_id: str | None) -> list[ApiKey]:
        condition = api_keys.c.org_id.is_(None) if org_id is None else api_keys.c.org_id == org_id
        rows = self.conn.execute(select(api_keys).where(condition).order_by(api_keys.c.created_at))
        return [_key(row) for row in rows]

    def count_active(self, role: KeyRole) -> int:
        rows = self.conn.execute(
            select(api_keys.c.id).where(api_keys.c.role == role, api_keys.c.revoked_at.is_(None))
        )
        return len(rows.all())

    def revoke(self, key_id: str, org_id: str | None, at: datetime) -> bool:
        condition = api_keys.c.org_id.is_(None) if org_id is None else api_keys.c.org_id == org_id
        result = self.conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, condition, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return result.rowcount > 0
