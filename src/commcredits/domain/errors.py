"""The error hierarchy every layer speaks.

Each error carries a stable snake_case ``code`` (clients and tests depend on it), a human
message and optionally the request ``field`` it is about. The HTTP status of each class is
mapped in exactly one place (``api.errors``); the domain never knows about HTTP.
"""

from __future__ import annotations


class CommcreditsError(Exception):
    """Base of every error the product reports to its users."""

    code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        details: list[dict[str, object]] | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field
        self.details = details
        """Itemised problems, e.g. every bad row of a file, each with its line."""


class InvalidRequest(CommcreditsError):
    """The request is malformed: unparseable, wrong types, missing or unknown fields (400)."""

    code = "invalid_request"


class Unauthenticated(CommcreditsError):
    """No credentials, or credentials that match nothing (401)."""

    code = "unauthenticated"


class Forbidden(CommcreditsError):
    """The caller is known but its role does not allow this (403)."""

    code = "forbidden"


class NotFound(CommcreditsError):
    """The thing does not exist, or is not visible to this caller (404)."""

    code = "not_found"


class Conflict(CommcreditsError):
    """The request conflicts with the current state (409)."""

    code = "conflict"


class RuleViolation(CommcreditsError):
    """Well-formed, but refused by a business rule (422)."""

    code = "rule_violation"


class PayloadTooLarge(CommcreditsError):
    """The request body is larger than the service accepts (413)."""

    code = "payload_too_large"
