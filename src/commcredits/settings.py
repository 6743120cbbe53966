"""Settings, from environment variables (``COMMCREDITS_*``) and an optional TOML file.

The TOML file is ``commcredits.toml`` in the working directory, or the path in
``COMMCREDITS_CONFIG``. Environment variables win over the file; the file wins over defaults.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ClockMode = Literal["system", "simulated"]


def _config_file() -> Path:
    return Path(os.environ.get("COMMCREDITS_CONFIG", "commcredits.toml"))


class Settings(BaseSettings):
    """Everything an operator may set. See docs/operations.md for each field."""

    model_config = SettingsConfigDict(env_prefix="COMMCREDITS_", extra="forbid")

    database_url: str = Field(
        default="sqlite:///var/commcredits.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db",
    )
    clock: ClockMode = Field(
        default="system", description="system, or simulated for demos and tests"
    )
    clock_start: str | None = Field(
        default=None, description="RFC 3339 start time of a new simulated clock (default: now)"
    )
    smtp_url: str | None = Field(
        default=None,
        description="smtp://user:password@host:port (smtps:// for TLS, ?starttls=true)",
    )
    mail_from: str = "commcredits <billing@commcredits.invalid>"
    mail_spool_dir: Path = Field(
        default=Path("var/mail"), description="where mail is written as .eml files without SMTP"
    )
    operator_key: SecretStr | None = Field(
        default=None, description="an operator API key accepted in addition to those in the store"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    job_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how often serve runs due jobs in the background (system clock)",
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    minimum_deposit: Decimal = Field(default=Decimal("50.00"), gt=0)
    payment_gateway: Literal["sandbox"] = Field(
        default="sandbox", description="the card processor; see docs/payments.md to add one"
    )
    sandbox_journal: Path | None = Field(
        default=Path("var/sandbox-payments.jsonl"),
        description="where the sandbox gateway remembers charges across restarts",
    )
    sku_catalogue: Path | None = Field(
        default=None,
        description="an operator's own SKU catalogue (TOML); default: the packaged one",
    )
    call_slice_seconds: int = Field(
        default=300, ge=1, le=86_400, description="seconds granted per call-control answer"
    )
    call_reservation_minutes: int = Field(
        default=15, ge=1, description="a call the switch stops reporting is ended after this"
    )
    public_url: str | None = Field(
        default=None, description="the console's public address, used in links inside mails"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file())
        return (init_settings, env_settings, toml)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
