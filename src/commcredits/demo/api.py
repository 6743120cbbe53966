"""The demo's HTTP client: every change the demo makes goes through the public API.

It works on any ``httpx.Client`` pointed at the service: Litestar's in-process ``TestClient``
(what ``commcredits demo`` uses: the whole application, guards and serialization included,
without a socket) or a client of a server running elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx


class DemoRequestFailed(RuntimeError):
    """The service refused a request the demo expected to succeed."""


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DemoApi:
    """One actor's view of the API: the client and the key it sends."""

    def __init__(self, client: httpx.Client, key: str):
        self.client = client
        self.key = key

    def as_key(self, key: str) -> DemoApi:
        return DemoApi(self.client, key)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send one request and return its JSON answer; a refusal stops the demo."""
        response = self.raw(method, path, body, params=params, idempotency_key=idempotency_key)
        return response.json() if response.content else None

    def raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        response = self.client.request(method, path, json=body, params=params, headers=headers)
        if response.status_code >= 400:
            raise DemoRequestFailed(
                f"{method} {path} answered {response.status_code}: {response.text[:500]}"
            )
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        return self.call("POST", path, body, idempotency_key=idempotency_key)

    def put(self, path: str, body: Any) -> Any:
        return self.call("PUT", path, body)
