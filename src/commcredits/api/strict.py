"""Request bodies are checked strictly: a string or a float where an integer belongs is a
400, not a number quietly converted (Litestar converts leniently on its own)."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request

from commcredits.domain.errors import InvalidRequest

_PATH = re.compile(r"at `\$\.?([^`]*)`")


async def check_body(request: Request[Any, Any, Any]) -> None:
    field = request.route_handler.parsed_fn_signature.parameters.get("data")
    if field is None or not isinstance(field.annotation, type):
        return
    if not issubclass(field.annotation, msgspec.Struct):
        return
    body = await request.body()
    if not body:
        return  # the framework reports the missing body itself
    try:
        msgspec.json.decode(body, type=field.annotation, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        where = _PATH.search(message)
        path = where.group(1) if where else None
        code = "invalid_type" if message.startswith("Expected") else "invalid_request"
        if "unknown field" in message:
            code = "unknown_field"
        elif "missing required field" in message:
            code = "missing_field"
        elif (
            "Invalid enum value" in message
            or "Invalid value" in message
            or "length" in message
            or ">=" in message
            or "<=" in message
        ):
            code = "invalid_value"
        named = re.findall(r"`([^`$]+)`", message.split(" - at ")[0])
        raise InvalidRequest(
            message, code=code, field=path or (named[-1] if named else None)
        ) from None
    except msgspec.DecodeError:
        return  # malformed JSON: reported by the framework as malformed_json
