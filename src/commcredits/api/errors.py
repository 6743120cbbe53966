"""The one place where errors become HTTP responses, all in the contract's shape:
``{"error": {"code": "...", "message": "...", "field": "..."}}``."""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from commcredits.domain.errors import (
    CommcreditsError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RuleViolation,
    Unauthenticated,
)
from commcredits.services.idempotency import IdempotentReplay

log = logging.getLogger("commcredits.api")

STATUS: Final[dict[type[CommcreditsError], int]] = {
    InvalidRequest: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    RuleViolation: 422,
}

_HTTP_CODES: Final[dict[int, str]] = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}

_BACKTICKED = re.compile(r"`([^`]+)`")


def error_body(
    code: str, message: str, field: str | None = None, details: list[Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    if details:
        error["details"] = details
    return {"error": error}


def status_of(exc: CommcreditsError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def on_domain_error(_: Request[Any, Any, Any], exc: CommcreditsError) -> Response[Any]:
    return Response(
        error_body(exc.code, exc.message, exc.field, exc.details), status_code=status_of(exc)
    )


def on_replay(_: Request[Any, Any, Any], exc: IdempotentReplay) -> Response[Any]:
    return Response(
        content=exc.body.encode(),
        status_code=exc.status_code,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


def _validation_error(exc: ValidationException) -> tuple[str, str, str | None]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    if not problems:
        return "invalid_request", exc.detail, None
    first = problems[0]
    message = str(first.get("message", exc.detail))
    key = first.get("key")
    named = _BACKTICKED.findall(message)
    field = str(key) if key and key != "data" else (named[-1].removeprefix("$.") if named else None)
    if "unknown field" in message:
        code = "unknown_field"
    elif "missing required field" in message:
        code = "missing_field"
    elif message.startswith("Expected"):
        code = (
            "invalid_type" if "length" not in message and ">=" not in message else "invalid_value"
        )
    elif "enum" in message or message.startswith("Invalid value"):
        code = "invalid_value"
    else:
        code = "invalid_request"
    if first.get("source") == "query" and field:
        message = f"query parameter {field}: {message}"
    return code, message, field


def on_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ValidationException):
        code, message, field = _validation_error(exc)
        return Response(error_body(code, message, field), status_code=400)
    status = exc.status_code
    if status >= 500:
        log.error("server error: %s", exc.detail)
        return Response(error_body("internal_error", "internal error"), status_code=status)
    code = _HTTP_CODES.get(status, "invalid_request")
    detail = exc.detail
    if status == 400 and "JSON is malformed" in detail:
        code = "malformed_json"
    if status == 413:
        detail = "the request body is too large"
    return Response(error_body(code, detail), status_code=status, headers=exc.headers)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Response(
        error_body("internal_error", "internal error; it has been logged"),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


EXCEPTION_HANDLERS: Final = {
    CommcreditsError: on_domain_error,
    IdempotentReplay: on_replay,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}
