"""The schema: one SQLAlchemy ``MetaData`` shared by the code and the Alembic migrations.

Conventions every table follows:

* every row that belongs to an organization carries ``org_id``, and its primary key and
  indexes lead with it, so the schema can be sharded by organization as it is;
* money is ``BIGINT`` micro-units (column names end in ``_micros``), never floating point;
* times are UTC instants (:class:`UTCDateTime`);
* financial rows are never cascade-deleted (foreign keys have no ``ON DELETE CASCADE``).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from commcredits.store.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(40)

system_state = Table(
    "system_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

organizations = Table(
    "organizations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("country", String(2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("billing", String(16), nullable=False),
    Column("overage_enabled", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("billing IN ('prepaid', 'postpaid')", name="billing_known"),
)

admins = Table(
    "admins",
    metadata,
    Column("org_id", ID, ForeignKey("organizations.id"), primary_key=True),
    Column("id", ID, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("password_hash", String(200)),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("org_id", "email"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    # NULL for the platform's own keys (operator, platform telephony).
    Column("org_id", ID, ForeignKey("organizations.id")),
    Column("name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    # SHA-256 of the secret part: keys are long random strings, so a fast hash is enough.
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Index("ix_api_keys_org_id", "org_id"),
)

idempotency_records = Table(
    "idempotency_records",
    metadata,
    # The organization id, or the key id for requests outside any organization.
    Column("scope", ID, primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response_body", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("organizations.id")),
    Column("kind", String(64), nullable=False),
    Column("recipients", JSON, nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body_text", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime),
    Column("last_error", Text),
    Column("sent_at", UTCDateTime),
    CheckConstraint("status IN ('pending', 'sent', 'no_recipients')", name="status_known"),
    Index("ix_outbox_org_id_created_at", "org_id", "created_at"),
    Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
)

job_leases = Table(
    "job_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(64)),
    Column("lease_until", UTCDateTime),
    Column("last_run_at", UTCDateTime),
    Column("last_result", Text),
)
