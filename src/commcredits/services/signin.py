"""Admins signing in to the web console: passwords, invitations, sessions and lock-out.

Passwords are hashed with argon2id. Session and invitation tokens are 256-bit random strings
handed to the browser once; only their SHA-256 is stored, so a copy of the database opens no
session. Every comparison of a secret is timing-safe, and an unknown e-mail address costs the
same argon2 verification as a known one, so response times tell nothing about who is an admin.

After :data:`MAX_FAILURES` wrong passwords in a row for one e-mail address, that address is
locked for :data:`LOCKOUT`; a correct password during the lock-out is refused too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, delete, func, insert, select, update

from commcredits.adapters.clock import Clock
from commcredits.domain.errors import NotFound, RuleViolation, Unauthenticated
from commcredits.domain.organizations import Admin, check_email
from commcredits.services.keys import Keys
from commcredits.services.orgs import get_org
from commcredits.store.database import Store, retrying
from commcredits.store.orgs import AdminRepository
from commcredits.store.tables import (
    admin_invitations,
    admins,
    console_sessions,
    organizations,
    signin_failures,
)
from commcredits.store.types import as_utc

MIN_PASSWORD_LENGTH: Final = 12
MAX_PASSWORD_LENGTH: Final = 1024
MAX_FAILURES: Final = 5
LOCKOUT: Final = timedelta(minutes=15)
SESSION_LIFETIME: Final = timedelta(hours=12)
"""A session ends this long after sign-in, whatever happens."""
SESSION_IDLE: Final = timedelta(hours=2)
"""A session not used for this long ends."""
TOUCH_EVERY: Final = timedelta(minutes=5)
"""How stale ``last_seen_at`` may get before a request writes it again (page loads stay reads)."""
INVITATION_LIFETIME: Final = timedelta(days=7)
PURGE_AFTER: Final = timedelta(days=30)
"""Ended sessions, lapsed invitations and old sign-in failures are deleted this long after they
stopped mattering: nothing that could let anyone in is kept, and a month of recent history stays
for an operator looking into a complaint."""

SessionKind = Literal["admin", "operator"]

_hasher = PasswordHasher()
_DUMMY_HASH: Final = _hasher.hash("a password nobody has, for constant-time refusals")


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_password(password: str) -> str:
    """A password good enough to protect money: long, and not only spaces."""
    if len(password) < MIN_PASSWORD_LENGTH or not password.strip():
        raise RuleViolation(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters",
            code="password_too_short",
            field="password",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise RuleViolation(
            f"a password has at most {MAX_PASSWORD_LENGTH} characters",
            code="password_too_long",
            field="password",
        )
    return password


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """Who a console request acts for. ``token`` is the secret the browser holds."""

    token: str
    kind: SessionKind
    org_id: str | None
    admin_id: str | None
    email: str | None
    display_name: str
    roles: tuple[str, ...]
    expires_at: datetime

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"

    def reaches(self, org_id: str) -> bool:
        """An admin sees only their own organization; the operator sees every one."""
        return self.is_operator or self.org_id == org_id

    def csrf_token(self) -> str:
        """The token every form of this session must send back (derived, never stored)."""
        return hmac.new(self.token.encode(), b"console-csrf", hashlib.sha256).hexdigest()

    def csrf_matches(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf_token(), sent or "")


class SignIn:
    def __init__(self, store: Store, clock: Clock, keys: Keys):
        self.store = store
        self.clock = clock
        self.keys = keys

    # -- passwords and invitations -------------------------------------------------------

    @retrying()
    def set_password(self, org_id: str, email: str, password: str) -> Admin:
        """Give an existing admin a (new) password; their open sessions end."""
        password_hash = _hasher.hash(check_password(password))
        with self.store.unit_of_work() as uow:
            get_org(uow, org_id)
            admin = AdminRepository(uow.conn).by_email(org_id, check_email(email))
            if admin is None:
                raise NotFound(
                    f"{email} is not an admin of this organization",
                    code="admin_not_found",
                    field="email",
                )
            _store_password(uow.conn, admin, password_hash)
            _end_sessions(uow.conn, admin, self.clock.now())
            uow.conn.execute(delete(signin_failures).where(signin_failures.c.email == admin.email))
            uow.commit()
        return admin

    @retrying()
    def invite(self, org_id: str, email: str) -> str:
        """A one-time token with which the admin chooses their password (valid 7 days)."""
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        with self.store.unit_of_work() as uow:
            get_org(uow, org_id)
            admin = AdminRepository(uow.conn).by_email(org_id, check_email(email))
            if admin is None:
                raise NotFound(
                    f"{email} is not an admin of this organization",
                    code="admin_not_found",
                    field="email",
                )
            uow.conn.execute(
                insert(admin_invitations).values(
                    token_hash=_sha256(token),
                    org_id=org_id,
                    admin_id=admin.id,
                    created_at=now,
                    expires_at=now + INVITATION_LIFETIME,
                )
            )
            uow.commit()
        return token

    def invitation(self, token: str) -> Admin:
        """The admin an unused, unexpired invitation is for (to greet them by name)."""
        with self.store.unit_of_work(read_only=True) as uow:
            return self._invited_admin(uow.conn, token)

    @retrying()
    def accept_invitation(self, token: str, password: str) -> Admin:
        password_hash = _hasher.hash(check_password(password))
        with self.store.unit_of_work() as uow:
            admin = self._invited_admin(uow.conn, token)
            used = uow.conn.execute(
                update(admin_invitations)
                .where(
                    admin_invitations.c.token_hash == _sha256(token),
                    admin_invitations.c.used_at.is_(None),
                )
                .values(used_at=self.clock.now())
            )
            if used.rowcount != 1:
                raise _invitation_invalid()
            _store_password(uow.conn, admin, password_hash)
            uow.conn.execute(delete(signin_failures).where(signin_failures.c.email == admin.email))
            uow.commit()
        return admin

    def _invited_admin(self, conn: Connection, token: str) -> Admin:
        row = conn.execute(
            select(admin_invitations).where(admin_invitations.c.token_hash == _sha256(token))
        ).first()
        if row is None or row.used_at is not None or row.expires_at <= self.clock.now():
            raise _invitation_invalid()
        found = conn.execute(
            select(admins).where(admins.c.org_id == row.org_id, admins.c.id == row.admin_id)
        ).first()
        if found is None:
            raise _invitation_invalid()
        return Admin(
            org_id=found.org_id,
            id=found.id,
            email=found.email,
            display_name=found.display_name,
            roles=tuple(found.roles),
            created_at=found.created_at,
        )

    # -- signing in and out -----------------------------------------------------------------

    def sign_in(self, email: str, password: str, org_id: str | None = None) -> ConsoleSession:
        """A new session for the admin with this e-mail and password, or ``unauthenticated``.

        An address that is an admin of several organizations must name the organization
        (``organization_required``) unless the password matches in exactly one of them.
        """
        try:
            address = check_email(email)
        except RuleViolation:
            _hasher_verify(_DUMMY_HASH, password)
            raise _wrong_credentials() from None
        now = self.clock.now()
        with self.store.unit_of_work(read_only=True) as uow:
            if _locked_until(uow.conn, address, now) is not None:
                raise _locked_out()
            query = select(admins).where(
                admins.c.email == address, admins.c.password_hash.is_not(None)
            )
            if org_id:
                query = query.where(admins.c.org_id == org_id)
            candidates = list(uow.conn.execute(query.order_by(admins.c.org_id)))
        matching = [row for row in candidates if _hasher_verify(row.password_hash, password)]
        if not candidates:
            _hasher_verify(_DUMMY_HASH, password)
        if not matching:
            self._record_failure(address)
            raise _wrong_credentials()
        if len(matching) > 1:
            raise RuleViolation(
                "this address is an admin of several organizations: choose one",
                code="organization_required",
                field="organization",
            )
        row = matching[0]
        if _hasher.check_needs_rehash(row.password_hash):
            self._rehash(row.org_id, row.id, password)
        return self._open(
            "admin",
            org_id=row.org_id,
            admin_id=row.id,
            email=row.email,
            display_name=row.display_name,
            roles=tuple(row.roles),
        )

    def sign_in_operator(self, key: str) -> ConsoleSession:
        """A session for the operator, who proves themselves with an operator API key."""
        principal = self.keys.authenticate(key.strip())
        if principal.role != "operator":
            raise Unauthenticated(
                "only an operator key opens the operator console", code="invalid_credentials"
            )
        return self._open(
            "operator", org_id=None, admin_id=None, email=None, display_name="Operator", roles=()
        )

    @retrying()
    def _open(
        self,
        kind: SessionKind,
        *,
        org_id: str | None,
        admin_id: str | None,
        email: str | None,
        display_name: str,
        roles: tuple[str, ...],
    ) -> ConsoleSession:
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        with self.store.unit_of_work() as uow:
            uow.conn.execute(
                insert(console_sessions).values(
                    token_hash=_sha256(token),
                    org_id=org_id,
                    admin_id=admin_id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + SESSION_LIFETIME,
                )
            )
            if email is not None:
                uow.conn.execute(delete(signin_failures).where(signin_failures.c.email == email))
            uow.commit()
        return ConsoleSession(
            token=token,
            kind=kind,
            org_id=org_id,
            admin_id=admin_id,
            email=email,
            display_name=display_name,
            roles=roles,
            expires_at=now + SESSION_LIFETIME,
        )

    def session(self, token: str | None) -> ConsoleSession | None:
        """The live session behind a cookie, or None (unknown, expired, idle or signed out)."""
        if not token or len(token) > 128:
            return None
        now = self.clock.now()
        token_hash = _sha256(token)
        with self.store.unit_of_work(read_only=True) as uow:
            row = uow.conn.execute(
                select(console_sessions).where(console_sessions.c.token_hash == token_hash)
            ).first()
            if (
                row is None
                or row.revoked_at is not None
                or row.expires_at <= now
                or row.last_seen_at + SESSION_IDLE <= now
            ):
                return None
            if row.admin_id is None:
                session = ConsoleSession(
                    token, "operator", None, None, None, "Operator", (), row.expires_at
                )
            else:
                admin = uow.conn.execute(
                    select(admins).where(admins.c.org_id == row.org_id, admins.c.id == row.admin_id)
                ).first()
                if admin is None:
                    return None
                session = ConsoleSession(
                    token,
                    "admin",
                    row.org_id,
                    row.admin_id,
                    admin.email,
                    admin.display_name,
                    tuple(admin.roles),
                    row.expires_at,
                )
            stale = row.last_seen_at + TOUCH_EVERY <= now
        if stale:
            self._touch(token_hash, now)
        return session

    @retrying()
    def _touch(self, token_hash: str, now: datetime) -> None:
        with self.store.unit_of_work() as uow:
            uow.conn.execute(
                update(console_sessions)
                .where(console_sessions.c.token_hash == token_hash)
                .values(last_seen_at=now)
            )
            uow.commit()

    @retrying()
    def sign_out(self, token: str) -> None:
        with self.store.unit_of_work() as uow:
            uow.conn.execute(
                update(console_sessions)
                .where(
                    console_sessions.c.token_hash == _sha256(token),
                    console_sessions.c.revoked_at.is_(None),
                )
                .values(revoked_at=self.clock.now())
            )
            uow.commit()

    def organization_names(self, org_ids: list[str]) -> dict[str, str]:
        with self.store.unit_of_work(read_only=True) as uow:
            rows = uow.conn.execute(
                select(organizations.c.id, organizations.c.name).where(
                    organizations.c.id.in_(org_ids)
                )
            )
            return {row.id: row.name for row in rows}

    # -- housekeeping -------------------------------------------------------------------------

    def next_purge_at(self) -> datetime | None:
        """When the oldest session, invitation or sign-in failure becomes purgeable; None while
        there is none."""
        s, i, f = console_sessions.c, admin_invitations.c, signin_failures.c
        with self.store.unit_of_work(read_only=True) as uow:
            oldest = uow.conn.execute(
                select(
                    select(func.min(s.expires_at)).scalar_subquery(),
                    select(func.min(i.expires_at)).scalar_subquery(),
                    select(func.min(f.last_failure_at)).scalar_subquery(),
                )
            ).one()
        ends = [as_utc(oldest[0]), as_utc(oldest[1])]
        failure = as_utc(oldest[2])
        ends.append(None if failure is None else failure + LOCKOUT)
        found = [end for end in ends if end is not None]
        return min(found) + PURGE_AFTER if found else None

    @retrying()
    def purge(self) -> int:
        """Delete what ended more than :data:`PURGE_AFTER` ago: sessions past their lifetime
        (every session has ended by then, however it ended), invitations past theirs (used or
        not), and sign-in failures that no longer count towards a lock-out. Returns how many
        rows went."""
        before = self.clock.now() - PURGE_AFTER
        with self.store.unit_of_work() as uow:
            conn = uow.conn
            purged = conn.execute(
                delete(console_sessions).where(console_sessions.c.expires_at <= before)
            ).rowcount
            purged += conn.execute(
                delete(admin_invitations).where(admin_invitations.c.expires_at <= before)
            ).rowcount
            # A failure counts for LOCKOUT after it, and a lock-out ends LOCKOUT after the last.
            purged += conn.execute(
                delete(signin_failures).where(signin_failures.c.last_failure_at <= before - LOCKOUT)
            ).rowcount
            uow.commit()
        return purged

    # -- lock-out -----------------------------------------------------------------------------

    @retrying()
    def _record_failure(self, email: str) -> None:
        now = self.clock.now()
        with self.store.unit_of_work() as uow:
            row = uow.conn.execute(
                select(signin_failures).where(signin_failures.c.email == email)
            ).first()
            if row is None:
                uow.conn.execute(
                    insert(signin_failures).values(email=email, failures=1, last_failure_at=now)
                )
            else:
                # A failure long after the previous one starts a new count.
                failures = 1 if row.last_failure_at + LOCKOUT <= now else row.failures + 1
                uow.conn.execute(
                    update(signin_failures)
                    .where(signin_failures.c.email == email)
                    .values(
                        failures=failures,
                        last_failure_at=now,
                        locked_until=now + LOCKOUT if failures >= MAX_FAILURES else None,
                    )
                )
            uow.commit()

    @retrying()
    def _rehash(self, org_id: str, admin_id: str, password: str) -> None:
        with self.store.unit_of_work() as uow:
            uow.conn.execute(
                update(admins)
                .where(admins.c.org_id == org_id, admins.c.id == admin_id)
                .values(password_hash=_hasher.hash(password))
            )
            uow.commit()


def _store_password(conn: Connection, admin: Admin, password_hash: str) -> None:
    conn.execute(
        update(admins)
        .where(admins.c.org_id == admin.org_id, admins.c.id == admin.id)
        .values(password_hash=password_hash)
    )


def _end_sessions(conn: Connection, admin: Admin, now: datetime) -> None:
    conn.execute(
        update(console_sessions)
        .where(
            console_sessions.c.org_id == admin.org_id,
            console_sessions.c.admin_id == admin.id,
            console_sessions.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )


def _locked_until(conn: Connection, email: str, now: datetime) -> datetime | None:
    row = conn.execute(
        select(signin_failures.c.locked_until).where(signin_failures.c.email == email)
    ).first()
    if row is None or row.locked_until is None or row.locked_until <= now:
        return None
    locked: datetime = row.locked_until
    return locked


def _hasher_verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _wrong_credentials() -> Unauthenticated:
    return Unauthenticated(
        "the e-mail address or the password is wrong", code="invalid_credentials"
    )


def _locked_out() -> Unauthenticated:
    return Unauthenticated(
        "too many wrong passwords: this address is locked for 15 minutes",
        code="signin_locked",
    )


def _invitation_invalid() -> RuleViolation:
    return RuleViolation(
        "this invitation link is not valid any more: ask for a new one",
        code="invitation_invalid",
        field="token",
    )
