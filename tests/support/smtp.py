"""An in-process SMTP server for tests: records what it receives, can refuse on demand."""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller

from .postgres import free_port

TEMPORARY_FAILURE = "451 4.3.0 try again later"


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class SmtpTestServer:
    """SMTP server on 127.0.0.1 and a free port, started on construction.

    Every accepted message is appended to ``messages``; ``fail_next(n)`` makes the
    next ``n`` DATA commands answer ``451 4.3.0 try again later`` instead.
    """

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.url = f"smtp://{self.host}:{self.port}"
        self._received: list[ReceivedMessage] = []
        self._failures_left = 0
        self._changed = threading.Condition()
        self._controller = Controller(self, hostname=self.host, port=self.port)
        self._controller.start()
        self._running = True

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the messages accepted so far, oldest first."""
        with self._changed:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Wait until at least ``count`` messages arrived; return them all."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._received) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} message(s) within {timeout}s, got {len(self._received)}"
                )
            return list(self._received)

    def fail_next(self, n: int = 1) -> None:
        """Answer the next ``n`` DATA commands with a temporary failure (451)."""
        with self._changed:
            self._failures_left = n

    def clear(self) -> None:
        """Forget received messages and pending failures."""
        with self._changed:
            self._received.clear()
            self._failures_left = 0

    def stop(self) -> None:
        """Stop the server; safe to call twice."""
        if self._running:
            self._running = False
            self._controller.stop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """aiosmtpd handler hook, called on the server's event-loop thread."""
        with self._changed:
            if self._failures_left > 0:
                self._failures_left -= 1
                return TEMPORARY_FAILURE
            parsed = email.message_from_bytes(
                envelope.original_content, policy=email.policy.default
            )
            self._received.append(
                ReceivedMessage(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    message=parsed,
                )
            )
            self._changed.notify_all()
        return "250 OK"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
