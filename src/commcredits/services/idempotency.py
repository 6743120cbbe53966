"""Idempotency keys as a reusable part of any use case (API.md, Conventions).

A use case that moves money or creates usage takes an optional :class:`Idempotency`. Inside its
unit of work it calls :func:`begin` first and :func:`finish` last: the key is claimed and the
response recorded in the same transaction as the effect, so a crash leaves either both or
neither. A repeat with the same key and body raises :class:`IdempotentReplay` carrying the first
response; the same key with another body is refused with ``idempotency_key_reused``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from commcredits.domain.errors import Conflict, InvalidRequest
from commcredits.store.database import TransientConflict, UnitOfWork
from commcredits.store.idempotency import IdempotencyRepository

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Idempotency:
    scope: str
    key: str
    fingerprint: str
    render: Callable[[Any], tuple[int, str]]
    """Turns the use case's result into the response (status code, JSON text) to keep."""


class IdempotentReplay(Exception):
    """The request was already done: here is its first response."""

    def __init__(self, status_code: int, body: str):
        super().__init__(status_code)
        self.status_code = status_code
        self.body = body


def fingerprint(method: str, path: str, body: bytes) -> str:
    """A digest of what was asked; JSON bodies are compared by content, not by spacing."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except (ValueError, UnicodeDecodeError):
        canonical = body.decode("latin-1")
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters",
            code="invalid_idempotency_key",
            field="Idempotency-Key",
        )
    return key


def begin(uow: UnitOfWork, request: Idempotency | None, now: datetime) -> None:
    """Claim the key, or replay the first response, or refuse a reused key."""
    if request is None:
        return
    records = IdempotencyRepository(uow.conn)
    stored = records.get(request.scope, request.key)
    if stored is not None:
        if stored.fingerprint != request.fingerprint:
            raise Conflict(
                "this Idempotency-Key was already used with a different request",
                code="idempotency_key_reused",
                field="Idempotency-Key",
            )
        raise IdempotentReplay(stored.status_code, stored.body)
    try:
        with uow.conn.begin_nested():
            records.claim(request.scope, request.key, request.fingerprint, now)
    except IntegrityError as exc:
        # A concurrent request with the same key committed first: run again to replay it.
        raise TransientConflict("idempotency key claimed concurrently") from exc


def finish(uow: UnitOfWork, request: Idempotency | None, result: Any) -> None:
    """Record the response in the same transaction as the effect."""
    if request is None:
        return
    status_code, body = request.render(result)
    IdempotencyRepository(uow.conn).complete(request.scope, request.key, status_code, body)
