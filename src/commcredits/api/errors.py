"""The one place where errors become HTTP responses, all in the contract's shape:
``{"error": {"code": "...", "message": "...", "field": "..."}}``."""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.routes import HTTPRoute
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
        bounded = "length" in message or ">=" in message or "<=" in message
        code = "invalid_value" if bounded else "invalid_type"
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


def on_out_of_range(request: Request[Any, Any, Any], exc: OverflowError) -> Response[Any]:
    """A number or a time from the request that Python or the database cannot hold (a time
    in year 1 with a positive offset, an integer past 64 bits): the request is at fault."""
    log.info("out of range on %s %s: %s", request.method, request.url.path, exc)
    return Response(
        error_body("invalid_value", "a number or a time in the request is out of range"),
        status_code=400,
    )


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
    OverflowError: on_out_of_range,
    Exception: on_unexpected,
}


# -- the error body in the OpenAPI document ------------------------------------------------------

_TEXT = Schema(type=OpenAPIType.STRING)
ERROR_SCHEMA: Final = Schema(
    type=OpenAPIType.OBJECT,
    required=["error"],
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            required=["code", "message"],
            properties={
                "code": Schema(type=OpenAPIType.STRING, pattern="^[a-z][a-z0-9_]*$"),
                "message": _TEXT,
                "field": _TEXT,
                "details": Schema(type=OpenAPIType.ARRAY, items=Schema()),
            },
            additional_properties=False,
        )
    },
    additional_properties=False,
    description="Every error: a stable snake_case code, a message, the field at fault if any.",
)
_WHEN: Final[dict[int, str]] = {
    400: "Malformed: bad JSON, a missing or unknown field, a value of the wrong type",
    401: "No API key, or one that is not valid",
    403: "The key's role may not do this",
    404: "No such organization (or not one this key reaches), or no such object in it",
    409: "The state forbids it, or the Idempotency-Key was used with another body",
    413: "The request body is too large",
    422: "Valid JSON, refused by a rule",
}
GUARDED_STATUSES: Final = (400, 401, 403, 404, 409, 422)


_ERROR_REF: Final = Reference("#/components/schemas/Error")


def _error_response(status: int) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=_WHEN[status],
        content={"application/json": OpenAPIMediaType(schema=_ERROR_REF)},
    )


def _document(operation: Operation, handler: HTTPRouteHandler) -> None:
    responses = operation.responses if operation.responses is not None else {}
    body_type = handler.opt.get("body_media_type")
    if isinstance(body_type, str) and operation.request_body is None:
        # A handler that reads its raw body (a CSV file) says so in its ``opt``.
        raw = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
        operation.request_body = RequestBody(content={body_type: raw}, required=True)
    if handler.opt.get("area") is None:
        operation.security = []  # public: no key needed
        statuses: tuple[int, ...] = (400,) if operation.parameters else ()
        responses.pop("400", None)
    else:
        statuses = GUARDED_STATUSES
    if operation.request_body is not None:
        statuses = (*statuses, 413)
    for status in statuses:
        responses[str(status)] = _error_response(status)
    operation.responses = responses or None


def document_error_responses(app: Litestar) -> None:
    """Describe the contract's error body, and which statuses each operation may answer, in
    the app's OpenAPI document (the framework would describe its own error shape instead).
    Runs at start-up, before the document is first served."""
    openapi = app.openapi_schema
    if openapi.components is None:
        openapi.components = Components()
    components = openapi.components
    if not isinstance(components, Components):  # pragma: no cover - one Components object
        return
    components.schemas = {**(components.schemas or {}), "Error": ERROR_SCHEMA}
    paths = openapi.paths or {}
    for route in app.routes:
        item = paths.get(route.path_format)
        if item is None or not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if isinstance(operation, Operation):
                    _document(operation, handler)
