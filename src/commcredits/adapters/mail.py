"""Delivering mail: over SMTP, or into a spool folder of ``.eml`` files when no server is set.

A transport either accepts a message or raises :class:`MailDeliveryError`; the outbox keeps
the message and retries later, so nothing is lost when the server is away.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit


class MailDeliveryError(Exception):
    """The message was not accepted; try again later."""


class MailTransport(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class SmtpTransport:
    """``smtp://user:password@host:port`` (``?starttls=true``) or ``smtps://`` for implicit TLS."""

    def __init__(self, url: str, *, timeout: float = 10.0):
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError("smtp_url must look like smtp://user:password@host:port")
        self.host = parts.hostname
        self.implicit_tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.implicit_tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        query = parse_qs(parts.query)
        self.starttls = query.get("starttls", ["false"])[0].lower() in {"1", "true", "yes"}
        self.timeout = timeout

    def send(self, message: EmailMessage) -> None:
        try:
            client: smtplib.SMTP
            if self.implicit_tls:
                client = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if self.starttls:
                    client.starttls(context=ssl.create_default_context())
                if self.username is not None:
                    client.login(self.username, self.password or "")
                client.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailDeliveryError(f"{type(exc).__name__}: {exc}") from exc

    def __repr__(self) -> str:
        return f"SmtpTransport({self.host}:{self.port})"


class SpoolTransport:
    """Writes each message to ``<spool>/<message-id>.eml``, durably (write, fsync, rename)."""

    def __init__(self, directory: Path):
        self.directory = directory

    def send(self, message: EmailMessage) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = (message["Message-ID"] or "message").strip("<>").replace("/", "_")
            final = self.directory / f"{name}.eml"
            partial = final.with_suffix(".eml.partial")
            with partial.open("wb") as handle:
                handle.write(message.as_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            partial.replace(final)
        except OSError as exc:
            raise MailDeliveryError(f"cannot write to the mail spool: {exc}") from exc

    def __repr__(self) -> str:
        return f"SpoolTransport({self.directory})"
