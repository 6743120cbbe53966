"""Repositories for users, their licenses, subscriptions, phone numbers and the audit log."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from commcredits.domain.directory import AuditEntry, NumberKind, PhoneNumber, User
from commcredits.domain.money import from_micros, to_micros
from commcredits.domain.organizations import DialoutPolicy, PstnPolicy
from commcredits.store.tables import audit_log, phone_numbers, subscriptions, user_licenses, users


def _user(row: Row[Any], licenses: Iterable[str]) -> User:
    return User(
        org_id=row.org_id,
        id=row.id,
        upn=row.upn,
        display_name=row.display_name,
        usage_location=row.usage_location,
        licenses=frozenset(licenses),
        pstn_policy=cast(PstnPolicy | None, row.pstn_policy),
        dialout_policy=cast(DialoutPolicy | None, row.dialout_policy),
        spend_limit=from_micros(row.spend_limit_micros)
        if row.spend_limit_micros is not None
        else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# Built once: call control looks a user up for every request.
_GET_USER = select(users).where(
    users.c.org_id == bindparam("k_org"),
    or_(users.c.id == bindparam("k_id"), users.c.upn == bindparam("k_upn")),
)
_USER_SKUS = select(user_licenses.c.sku).where(
    user_licenses.c.org_id == bindparam("k_org"), user_licenses.c.user_id == bindparam("k_user")
)
# The live-call writer reads the users of every batch: built once, not per batch.
_GET_USERS = select(users).where(
    users.c.org_id == bindparam("k_org"),
    or_(
        users.c.id.in_(bindparam("k_ids", expanding=True)),
        users.c.upn.in_(bindparam("k_upns", expanding=True)),
    ),
)
_USERS_SKUS = select(user_licenses.c.user_id, user_licenses.c.sku).where(
    user_licenses.c.org_id == bindparam("k_org"),
    user_licenses.c.user_id.in_(bindparam("k_users", expanding=True)),
)


# Built once: the telephony edge finds the owners of the numbers of every batch of new calls.
_OWNERS = (
    select(phone_numbers.c.number, phone_numbers.c.org_id, users.c.upn)
    .select_from(phone_numbers)
    .outerjoin(
        users,
        and_(users.c.org_id == phone_numbers.c.org_id, users.c.id == phone_numbers.c.user_id),
    )
    .where(phone_numbers.c.number.in_(bindparam("k_numbers", expanding=True)))
)


class UserRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def add(self, user: User) -> None:
        self.conn.execute(insert(users).values(**self._values(user), created_at=user.created_at))
        self._add_licenses(user.org_id, user.id, user.licenses, user.updated_at)

    @staticmethod
    def _values(user: User) -> dict[str, Any]:
        return {
            "org_id": user.org_id,
            "id": user.id,
            "upn": user.upn,
            "display_name": user.display_name,
            "usage_location": user.usage_location,
            "pstn_policy": user.pstn_policy,
            "dialout_policy": user.dialout_policy,
            "spend_limit_micros": to_micros(user.spend_limit)
            if user.spend_limit is not None
            else None,
            "updated_at": user.updated_at,
        }

    def _add_licenses(self, org_id: str, user_id: str, skus: Iterable[str], at: datetime) -> None:
        rows = [
            {"org_id": org_id, "user_id": user_id, "sku": sku, "assigned_at": at} for sku in skus
        ]
        if rows:
            self.conn.execute(insert(user_licenses), rows)

    def update(self, user: User) -> None:
        values = self._values(user)
        del values["org_id"], values["id"]
        self.conn.execute(
            update(users).where(users.c.org_id == user.org_id, users.c.id == user.id).values(values)
        )

    def set_licenses(self, user: User, before: frozenset[str], at: datetime) -> None:
        removed = before - user.licenses
        if removed:
            self.conn.execute(
                delete(user_licenses).where(
                    user_licenses.c.org_id == user.org_id,
                    user_licenses.c.user_id == user.id,
                    user_licenses.c.sku.in_(sorted(removed)),
                )
            )
        self._add_licenses(user.org_id, user.id, sorted(user.licenses - before), at)

    def bulk_change_licenses(
        self,
        org_id: str,
        additions: Sequence[tuple[str, str]],
        removals: Sequence[tuple[str, str]],
        at: datetime,
    ) -> None:
        """Many (user id, sku) changes at once, for bulk assignment."""
        by_sku: dict[str, list[str]] = defaultdict(list)
        for user_id, sku in removals:
            by_sku[sku].append(user_id)
        for sku, ids in by_sku.items():
            for start in range(0, len(ids), 500):
                self.conn.execute(
                    delete(user_licenses).where(
                        user_licenses.c.org_id == org_id,
                        user_licenses.c.sku == sku,
                        user_licenses.c.user_id.in_(ids[start : start + 500]),
                    )
                )
        if additions:
            self.conn.execute(
                insert(user_licenses),
                [
                    {"org_id": org_id, "user_id": uid, "sku": sku, "assigned_at": at}
                    for uid, sku in additions
                ],
            )

    def delete(self, org_id: str, user_id: str) -> None:
        self.conn.execute(
            delete(user_licenses).where(
                user_licenses.c.org_id == org_id, user_licenses.c.user_id == user_id
            )
        )
        self.conn.execute(delete(users).where(users.c.org_id == org_id, users.c.id == user_id))

    def _licenses_of(self, org_id: str, user_ids: Sequence[str] | None) -> dict[str, set[str]]:
        query = select(user_licenses.c.user_id, user_licenses.c.sku).where(
            user_licenses.c.org_id == org_id
        )
        if user_ids is not None:
            query = query.where(user_licenses.c.user_id.in_(user_ids))
        found: dict[str, set[str]] = defaultdict(set)
        for row in self.conn.execute(query):
            found[row.user_id].add(row.sku)
        return found

    def get(self, org_id: str, id_or_upn: str) -> User | None:
        """A user by id or by UPN (case-insensitive), only within the organization."""
        row = self.conn.execute(
            _GET_USER, {"k_org": org_id, "k_id": id_or_upn, "k_upn": id_or_upn.strip().lower()}
        ).first()
        if row is None:
            return None
        skus = self.conn.execute(_USER_SKUS, {"k_org": org_id, "k_user": row.id}).scalars()
        return _user(row, skus)

    def get_many(self, org_id: str, ids_or_upns: Iterable[str]) -> dict[str, User]:
        """:meth:`get` for many keys in two queries: each key found, by id or by UPN."""
        keys = list(dict.fromkeys(ids_or_upns))
        if not keys:
            return {}
        lowered = {key: key.strip().lower() for key in keys}
        rows = self.conn.execute(
            _GET_USERS,
            {"k_org": org_id, "k_ids": keys, "k_upns": list(dict.fromkeys(lowered.values()))},
        ).all()
        if not rows:
            return {}
        skus: dict[str, list[str]] = defaultdict(list)
        for user_id, sku in self.conn.execute(
            _USERS_SKUS, {"k_org": org_id, "k_users": [row.id for row in rows]}
        ):
            skus[user_id].append(sku)
        by_id = {row.id: row for row in rows}
        by_upn = {row.upn: row for row in rows}
        found: dict[str, User] = {}
        for key in keys:
            row = by_id.get(key) or by_upn.get(lowered[key])
            if row is not None:
                found[key] = _user(row, skus[row.id])
        return found

    def page(
        self,
        org_id: str,
        *,
        sku: str | None = None,
        search: str | None = None,
        usage_location: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[User]:
        query = select(users).where(users.c.org_id == org_id).order_by(users.c.upn).limit(limit)
        if after:
            query = query.where(users.c.upn > after)
        if usage_location:
            query = query.where(users.c.usage_location == usage_location)
        if search:
            # % and _ in what was typed are letters, not wildcards.
            text = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{text}%"
            query = query.where(
                or_(
                    users.c.upn.like(pattern, escape="\\"),
                    func.lower(users.c.display_name).like(pattern, escape="\\"),
                )
            )
        if sku:
            query = query.where(
                users.c.id.in_(
                    select(user_licenses.c.user_id).where(
                        user_licenses.c.org_id == org_id, user_licenses.c.sku == sku
                    )
                )
            )
        rows = list(self.conn.execute(query))
        licenses = self._licenses_of(org_id, [row.id for row in rows]) if rows else {}
        return [_user(row, licenses.get(row.id, set())) for row in rows]

    def all(self, org_id: str) -> list[User]:
        rows = list(self.conn.execute(select(users).where(users.c.org_id == org_id)))
        licenses = self._licenses_of(org_id, None)
        return [_user(row, licenses.get(row.id, set())) for row in rows]

    def upns(self, org_id: str, user_ids: Sequence[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        rows = self.conn.execute(
            select(users.c.id, users.c.upn).where(
                users.c.org_id == org_id, users.c.id.in_(user_ids)
            )
        )
        return {row.id: row.upn for row in rows}

    def assigned_counts(self, org_id: str) -> dict[str, int]:
        rows = self.conn.execute(
            select(user_licenses.c.sku, func.count())
            .where(user_licenses.c.org_id == org_id)
            .group_by(user_licenses.c.sku)
        )
        return {row[0]: int(row[1]) for row in rows}


class SubscriptionRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def quantities(self, org_id: str) -> dict[str, int]:
        rows = self.conn.execute(
            select(subscriptions.c.sku, subscriptions.c.quantity).where(
                subscriptions.c.org_id == org_id
            )
        )
        return {row.sku: int(row.quantity) for row in rows}

    def set(self, org_id: str, sku: str, quantity: int, at: datetime) -> None:
        updated = self.conn.execute(
            update(subscriptions)
            .where(subscriptions.c.org_id == org_id, subscriptions.c.sku == sku)
            .values(quantity=quantity, updated_at=at)
        )
        if updated.rowcount == 0:
            self.conn.execute(
                insert(subscriptions).values(
                    org_id=org_id, sku=sku, quantity=quantity, created_at=at, updated_at=at
                )
            )


def _number(row: Row[Any]) -> PhoneNumber:
    return PhoneNumber(
        number=row.number,
        org_id=row.org_id,
        kind=cast(NumberKind, row.kind),
        country=row.country,
        user_id=row.user_id,
        created_at=row.created_at,
    )


class NumberRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def add(self, number: PhoneNumber) -> None:
        self.conn.execute(
            insert(phone_numbers).values(
                number=number.number,
                org_id=number.org_id,
                kind=number.kind,
                country=number.country,
                user_id=number.user_id,
                created_at=number.created_at,
            )
        )

    def owners(self, numbers: Iterable[str]) -> dict[str, tuple[str, str | None]]:
        """Who holds each number that somebody holds, in one query: its organization and the
        UPN of its user (None for a number of no user)."""
        wanted = list(dict.fromkeys(numbers))
        if not wanted:
            return {}
        rows = self.conn.execute(_OWNERS, {"k_numbers": wanted})
        return {row.number: (row.org_id, row.upn) for row in rows}

    def get_any(self, number: str) -> PhoneNumber | None:
        """Across organizations: only to refuse a number that is already taken."""
        row = self.conn.execute(
            select(phone_numbers).where(phone_numbers.c.number == number)
        ).first()
        return _number(row) if row else None

    def get(self, org_id: str, number: str) -> PhoneNumber | None:
        row = self.conn.execute(
            select(phone_numbers).where(
                phone_numbers.c.org_id == org_id, phone_numbers.c.number == number
            )
        ).first()
        return _number(row) if row else None

    def for_org(self, org_id: str, *, kind: str | None = None) -> list[PhoneNumber]:
        query = (
            select(phone_numbers)
            .where(phone_numbers.c.org_id == org_id)
            .order_by(phone_numbers.c.number)
        )
        if kind:
            query = query.where(phone_numbers.c.kind == kind)
        return [_number(row) for row in self.conn.execute(query)]

    def of_user(self, org_id: str, user_id: str) -> list[PhoneNumber]:
        rows = self.conn.execute(
            select(phone_numbers).where(
                and_(phone_numbers.c.org_id == org_id, phone_numbers.c.user_id == user_id)
            )
        )
        return [_number(row) for row in rows]

    def assign(self, org_id: str, number: str, user_id: str | None) -> None:
        self.conn.execute(
            update(phone_numbers)
            .where(phone_numbers.c.org_id == org_id, phone_numbers.c.number == number)
            .values(user_id=user_id)
        )

    def release_user(self, org_id: str, user_id: str) -> None:
        self.conn.execute(
            update(phone_numbers)
            .where(phone_numbers.c.org_id == org_id, phone_numbers.c.user_id == user_id)
            .values(user_id=None)
        )

    def delete(self, org_id: str, number: str) -> bool:
        result = self.conn.execute(
            delete(phone_numbers).where(
                phone_numbers.c.org_id == org_id, phone_numbers.c.number == number
            )
        )
        return result.rowcount > 0


class AuditRepository:
    def __init__(self, conn: Connection):
        self.conn = conn

    def add_many(self, entries: Sequence[AuditEntry]) -> None:
        if entries:
            self.conn.execute(
                insert(audit_log),
                [
                    {
                        "org_id": e.org_id,
                        "id": e.id,
                        "at": e.at,
                        "actor": e.actor,
                        "action": e.action,
                        "target": e.target,
                        "details": e.details,
                    }
                    for e in entries
                ],
            )

    def page(self, org_id: str, *, limit: int = 100, before: str | None = None) -> list[AuditEntry]:
        query = (
            select(audit_log)
            .where(audit_log.c.org_id == org_id)
            .order_by(audit_log.c.id.desc())
            .limit(limit)
        )
        if before:
            query = query.where(audit_log.c.id < before)
        return [
            AuditEntry(
                org_id=row.org_id,
                id=row.id,
                at=row.at,
                actor=row.actor,
                action=row.action,
                target=row.target,
                details=dict(row.details),
            )
            for row in self.conn.execute(query)
        ]
