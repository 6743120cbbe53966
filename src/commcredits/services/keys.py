"""API keys: creation (shown once), authentication (hashed at rest, timing-safe) and revocation.

A key reads ``cck_<key id>.<secret>``. The id finds the row; only the SHA-256 of the secret is
stored. Keys are 256-bit random strings, so a fast hash is as strong as a slow one here and keeps
authentication off the hot path's budget. Settings may also name an operator key outright.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import cast

from commcredits.adapters.clock import Clock
from commcredits.domain.errors import NotFound, RuleViolation, Unauthenticated
from commcredits.domain.ids import new_id
from commcredits.domain.organizations import ApiKey, Principal, check_name
from commcredits.domain.roles import ORG_KEY_ROLES, KeyRole
from commcredits.services.orgs import get_org
from commcredits.store.database import Store, retrying
from commcredits.store.orgs import KeyRepository

KEY_PREFIX = "cck_"
CACHE_SECONDS = 5.0
"""How long a successful authentication is remembered; a revoked key stops within this time."""


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    secret: str
    """The full key as the client must send it; shown once, never stored."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Keys:
    def __init__(self, store: Store, clock: Clock, *, settings_operator_key: str | None = None):
        self.store = store
        self.clock = clock
        self._settings_key_hash = _hash(settings_operator_key) if settings_operator_key else None
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._cache_lock = threading.Lock()

    @retrying()
    def _issue(self, org_id: str | None, name: str, role: KeyRole) -> IssuedKey:
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            id=new_id("key"),
            org_id=org_id,
            name=check_name(name),
            role=role,
            created_at=self.clock.now(),
            revoked_at=None,
        )
        with self.store.unit_of_work() as uow:
            if org_id is not None:
                get_org(uow, org_id)
            KeyRepository(uow.conn).add(key, _hash(secret))
            uow.commit()
        return IssuedKey(key, f"{KEY_PREFIX}{key.id}.{secret}")

    def create_org_key(self, org_id: str, name: str, role: str) -> IssuedKey:
        if role not in ORG_KEY_ROLES:
            raise RuleViolation(
                f"role must be one of {', '.join(ORG_KEY_ROLES)}", code="invalid_role", field="role"
            )
        return self._issue(org_id, name, cast(KeyRole, role))

    def create_operator_key(self, name: str = "operator") -> IssuedKey:
        return self._issue(None, name, "operator")

    def create_platform_telephony_key(self, name: str = "telephony edge") -> IssuedKey:
        return self._issue(None, name, "platform_telephony")

    def ensure_operator_key(self) -> IssuedKey | None:
        """Make the first operator key when none exists; returns it so it can be shown once."""
        if self._settings_key_hash is not None:
            return None
        with self.store.unit_of_work(read_only=True) as uow:
            if KeyRepository(uow.conn).count_active("operator"):
                return None
        return self.create_operator_key("first operator key")

    def list_keys(self, org_id: str | None) -> list[ApiKey]:
        with self.store.unit_of_work(read_only=True) as uow:
            if org_id is not None:
                get_org(uow, org_id)
            return KeyRepository(uow.conn).for_org(org_id)

    @retrying()
    def revoke(self, org_id: str | None, key_id: str) -> None:
        with self.store.unit_of_work() as uow:
            if not KeyRepository(uow.conn).revoke(key_id, org_id, self.clock.now()):
                raise NotFound("no such active key", code="key_not_found")
            uow.commit()
        with self._cache_lock:
            self._cache.clear()

    def authenticate(self, token: str | None) -> Principal:
        """The principal behind a bearer token, or ``unauthenticated``."""
        if not token:
            raise Unauthenticated("send the API key as 'Authorization: Bearer <key>'")
        now = time.monotonic()
        with self._cache_lock:
            cached = self._cache.get(token)
        if cached is not None and cached[1] > now:
            return cached[0]
        principal = self._lookup(token)
        with self._cache_lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (principal, now + CACHE_SECONDS)
        return principal

    def _lookup(self, token: str) -> Principal:
        if self._settings_key_hash is not None and hmac.compare_digest(
            _hash(token), self._settings_key_hash
        ):
            return Principal(key_id="settings", role="operator", org_id=None)
        key_id, _, secret = token.removeprefix(KEY_PREFIX).partition(".")
        found = None
        if token.startswith(KEY_PREFIX) and secret:
            with self.store.unit_of_work(read_only=True) as uow:
                found = KeyRepository(uow.conn).get_with_hash(key_id)
        # Compare against a dummy hash when the id is unknown, so timing tells nothing.
        stored_hash = found[1] if found else _hash("no such key")
        matches = hmac.compare_digest(_hash(secret), stored_hash)
        if found is None or not matches or found[0].revoked_at is not None:
            raise Unauthenticated("the API key is not valid", code="invalid_api_key")
        key = found[0]
        return Principal(key_id=key.id, role=key.role, org_id=key.org_id)
