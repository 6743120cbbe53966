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
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    literal_column,
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
    # the organization's defaults; a user's own setting overrides them.
    Column("pstn_policy", String(32), nullable=False, server_default="international_and_domestic"),
    Column("dialout_policy", String(32), nullable=False, server_default="any"),
    # Reports mask the other party's number: on/off as the operator set it, NULL for the
    # default of the billing country (services/reports.py, MASKED_DIGITS).
    Column("mask_numbers", Boolean),
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


# --- Communications Credits (R-20..R-28) ---------------------------------------------------

payment_methods = Table(
    "payment_methods",
    metadata,
    Column("org_id", ID, ForeignKey("organizations.id"), primary_key=True),
    Column("id", ID, primary_key=True),
    Column("type", String(32), nullable=False),
    # Cards: only the processor's token and what a person needs to recognise the card.
    Column("token", String(200)),
    Column("brand", String(32)),
    Column("last4", String(4)),
    Column("exp_month", Integer),
    Column("exp_year", Integer),
    Column("holder", String(200)),
    # Enterprise agreements.
    Column("agreement_number", String(64)),
    Column("purchase_order", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("removed_at", UTCDateTime),
    CheckConstraint("type IN ('card', 'enterprise_agreement')", name="type_known"),
)

credit_accounts = Table(
    "credit_accounts",
    metadata,
    Column("org_id", ID, ForeignKey("organizations.id"), primary_key=True),
    # A projection of the ledger, kept in step inside every money-moving transaction and
    # recomputed from the entries by `commcredits ledger verify`.
    Column("balance_micros", BigInteger, nullable=False, default=0),
    Column("reserved_micros", BigInteger, nullable=False, default=0),
    Column("entry_seq", BigInteger, nullable=False, default=0),
    Column("invoice_seq", Integer, nullable=False, default=0),
    Column("next_expiry_at", UTCDateTime),
    Column("zero_notified", Boolean, nullable=False, default=False),
    Column("recharge_enabled", Boolean, nullable=False, default=False),
    Column("recharge_trigger_micros", BigInteger),
    Column("recharge_amount_micros", BigInteger),
    Column("recharge_payment_method_id", ID),
    Column("recharge_status", String(16), nullable=False, default="off"),
    Column("recharge_failures", Integer, nullable=False, default=0),
    Column("recharge_next_retry_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    # Invariant: 0 <= reserved <= balance. Also checked by domain code and by ledger verify.
    CheckConstraint("balance_micros >= 0", name="balance_never_negative"),
    CheckConstraint(
        "reserved_micros >= 0 AND reserved_micros <= balance_micros", name="reserved_within_balance"
    ),
)

lots = Table(
    "lots",
    metadata,
    Column("org_id", ID, ForeignKey("organizations.id"), primary_key=True),
    Column("id", ID, primary_key=True),
    Column("source", String(16), nullable=False),
    Column("amount_micros", BigInteger, nullable=False),
    Column("remaining_micros", BigInteger, nullable=False),
    Column("purchased_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("order_id", ID),
    Column("warned_days", Integer),
    # Invariant 0 <= remaining <= amount, amount > 0: also in domain.ledger.Lot.__post_init__.
    CheckConstraint(
        "amount_micros > 0 AND remaining_micros >= 0 AND remaining_micros <= amount_micros",
        name="lots_remaining_within_amount",
    ),
    CheckConstraint("source IN ('deposit', 'recharge', 'adjustment')", name="source_known"),
    Index("ix_lots_org_id_purchased_at", "org_id", "purchased_at"),
    Index("ix_lots_expires_at", "expires_at"),
)

# Lots with money left: what the expiry sweep, the expiry warnings and the job scheduler look
# for. Spent and expired lots pile up over the years; this partial index holds only the live
# ones, so those queries never walk the history. Queries must use this very expression (a
# literal, not a bound parameter) for either database to pick the index.
LOT_HAS_MONEY = lots.c.remaining_micros > literal_column("0")
Index(
    "ix_lots_live_expires_at",
    lots.c.expires_at,
    sqlite_where=LOT_HAS_MONEY,
    postgresql_where=LOT_HAS_MONEY,
)
# The lots an account spends from, oldest first: read by every money movement, so it
# must not walk the organization's spent lots (an account recharged daily has thousands).
Index(
    "ix_lots_live_org_id_purchased_at",
    lots.c.org_id,
    lots.c.purchased_at,
    lots.c.id,
    sqlite_where=LOT_HAS_MONEY,
    postgresql_where=LOT_HAS_MONEY,
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("org_id", ID, ForeignKey("organizations.id"), primary_key=True),
    # Per-organization sequence: the order in which balance_after was computed.
    Column("seq", BigInteger, primary_key=True),
    Column("id", ID, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount_micros", BigInteger, nullable=False),
    Column("lot_id", ID),
    Column("balance_after_micros", BigInteger, nullable=False),
    Column("reference", String(200)),
    Column("description", String(300)),
    CheckConstraint(
        "kind IN ('deposit', 'recharge', 'usage', 'refund', 'expiry', 'adjustment')",
        name="kind_known",
    ),
    CheckConstraint("balance_after_micros >= 0", name="balance_after_never_negative"),
    UniqueConstraint("org_id", "id"),
    Index("ix_ledger_entries_org_id_at", "org_id", "at"),
)

credit_orders = Table(
    "credit_orders",
    metadata,
    Column("org_id", ID, ForeignKey("organizations.id"), primary_key=True),
    Column("id", ID, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("amount_micros", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payment_method_id", ID, nullable=False),
    Column("purchase_order", String(64)),
    Column("auto_recharge", JSON),
    Column("idempotency_key", String(255)),
    Column("fingerprint", String(64)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime),
    Column("charge_id", String(100)),
    Column("failure_code", String(64)),
    Column("failure_message", String(300)),
    Column("lot_id", ID),
    Column("invoice_id", ID),
    Column("created_at", UTCDateTime, nullable=False),
    Column("settled_at", UTCDateTime),
    CheckConstraint("amount_micros > 0", name="amount_positive"),
    CheckConstraint("kind IN ('deposit', 'recharge')", name="kind_known"),
    CheckConstraint("status IN ('pending', 'paid', 'failed')", name="status_known"),
    UniqueConstraint("org_id", "idempotency_key"),
    Index("ix_credit_orders_status_next_attempt_at", "status", "next_attempt_at"),
)

invoices = Table(
    "invoices",
    metadata,
    Column("org_id", ID, ForeignKey("organizations.id"), primary_key=True),
    Column("id", ID, primary_key=True),
    Column("number", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("order_id", ID),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("amount_micros", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payment_method", String(200)),
    Column("purchase_order", String(64)),
    Column("status", String(16), nullable=False),
    Column("lines", JSON, nullable=False),
    UniqueConstraint("org_id", "number"),
    Index("ix_invoices_org_id_issued_at", "org_id", "issued_at"),
)


# --- Directory and licensing (R-10..R-15, R-37) ---------------------------------------------

users = Table(
    "users",
    metadata,
    Column("org_id", ID, ForeignKey("organizations.id"), primary_key=True),
    Column("id", ID, primary_key=True),
    Column("upn", String(320), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("usage_location", String(2)),
    # NULL: the organization's default applies.
    Column("pstn_policy", String(32)),
    Column("dialout_policy", String(32)),
    Column("spend_limit_micros", BigInteger),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("org_id", "upn"),
    CheckConstraint("spend_limit_micros IS NULL OR spend_limit_micros >= 0", name="spend_limit"),
)

user_licenses = Table(
    "user_licenses",
    metadata,
    Column("org_id", ID, primary_key=True),
    Column("user_id", ID, primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("assigned_at", UTCDateTime, nullable=False),
    ForeignKeyConstraint(["org_id", "user_id"], ["users.org_id", "users.id"]),
    Index("ix_user_licenses_org_id_sku", "org_id", "sku"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("org_id", ID, ForeignKey("organizations.id"), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("quantity >= 0", name="quantity_not_negative"),
)

phone_numbers = Table(
    "phone_numbers",
    metadata,
    # A number belongs to one organization only, so the number alone is the key.
    Column("number", String(20), primary_key=True),
    Column("org_id", ID, ForeignKey("organizations.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("country", String(2), nullable=False),
    Column("user_id", ID),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint(
        "kind IN ('user', 'service', 'service_toll_free', 'conference', 'conference_toll_free')",
        name="kind_known",
    ),
    Index("ix_phone_numbers_org_id_number", "org_id", "number"),
    Index("ix_phone_numbers_org_id_user_id", "org_id", "user_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("org_id", ID, ForeignKey("organizations.id"), primary_key=True),
    Column("id", ID, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(320)),
    Column("details", JSON, nullable=False),
    Index("ix_audit_log_org_id_at", "org_id", "at"),
)


# --- Rating (R-40..R-42) ---------------------------------------------------------------------

rate_tables = Table(
    "rate_tables",
    metadata,
    Column("id", ID, primary_key=True),
    Column("loaded_at", UTCDateTime, nullable=False),
    Column("name", String(200), nullable=False),
    Column("row_count", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    # The table exactly as loaded: calls keep the rate they were rated with, and any past
    # table can be read again as it was.
    Column("source", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Index("ix_rate_tables_active", "active"),
)

tariff_plans = Table(
    "tariff_plans",
    metadata,
    Column("id", ID, primary_key=True),
    Column("loaded_at", UTCDateTime, nullable=False),
    Column("name", String(200), nullable=False),
    # The CGRateS CSV files as imported, by file name.
    Column("files", JSON, nullable=False),
    Column("summary", JSON, nullable=False),
    Column("active", Boolean, nullable=False),
)


# --- Usage: calls, pools, messages (R-28..R-38) ------------------------------------------

calls = Table(
    "calls",
    metadata,
    Column("org_id", ID, ForeignKey("organizations.id"), primary_key=True),
    # The switch's own id (a SIP Call-ID, say): a call is charged at most once.
    Column("call_id", String(255), primary_key=True),
    Column("call_type", String(32), nullable=False),
    Column("user_id", ID),
    Column("upn", String(320)),
    Column("display_name", String(200)),
    Column("user_location", String(2)),
    Column("from_number", String(32), nullable=False),
    Column("to_number", String(32), nullable=False),
    Column("conference_id", String(255)),
    Column("status", String(16), nullable=False),
    Column("decision", String(8), nullable=False),
    Column("reason", String(32)),
    Column("funding", String(16)),
    Column("capability", String(64)),
    Column("external_country", String(2)),
    Column("number_type", String(16)),
    Column("domestic", Boolean),
    Column("pool", String(120)),
    Column("pool_minutes", Integer, nullable=False, default=0),
    Column("reserved_pool_minutes", Integer, nullable=False, default=0),
    Column("rate_table_id", ID),
    Column("rate_line", Integer),
    Column("rate", String(40)),
    Column("connection_fee", String(40)),
    Column("first_increment", Integer),
    Column("increment", Integer),
    Column("currency", String(3), nullable=False),
    Column("charge_micros", BigInteger, nullable=False, default=0),
    Column("connection_fee_micros", BigInteger, nullable=False, default=0),
    Column("reserved_micros", BigInteger, nullable=False, default=0),
    Column("granted_seconds", Integer, nullable=False, default=0),
    Column("used_seconds", Integer, nullable=False, default=0),
    Column("start_time", UTCDateTime, nullable=False),
    Column("end_time", UTCDateTime),
    Column("duration_seconds", Integer),
    Column("reservation_expires_at", UTCDateTime),
    Column("source", String(8), nullable=False),
    # Postpaid overage: the month-end invoice that billed this call.
    Column("invoice_id", ID),
    # The ended call's PSTN report line, written when it ends, and where the other party's
    # number ends in it when masking can cut its last digits (domain/report_line.py).
    Column("report_line", Text),
    Column("report_mask_at", Integer),
    CheckConstraint("status IN ('active', 'ended', 'denied')", name="status_known"),
    CheckConstraint("charge_micros >= 0 AND reserved_micros >= 0", name="money_not_negative"),
    Index("ix_calls_org_id_start_time", "org_id", "start_time"),
    # The telephony edge follows up on a call by its id alone (API.md, POST /v1/calls).
    Index("ix_calls_call_id", "call_id"),
    Index("ix_calls_status_reservation_expires_at", "status", "reservation_expires_at"),
)

# Postpaid overage not yet invoiced: the month-end job asks for its oldest on every pass;
# the partial indexes hold only those rows, never the years of calls and messages already billed
# or never billable. Queries must use these very expressions.
CALL_OVERAGE_UNBILLED = and_(
    calls.c.funding == literal_column("'overage'"), calls.c.invoice_id.is_(None)
)
Index(
    "ix_calls_overage_unbilled_start_time",
    calls.c.start_time,
    sqlite_where=CALL_OVERAGE_UNBILLED,
    postgresql_where=CALL_OVERAGE_UNBILLED,
)

pool_usage = Table(
    "pool_usage",
    metadata,
    Column("org_id", ID, ForeignKey("organizations.id"), primary_key=True),
    Column("month", String(7), primary_key=True),
    # country|capability, or country|capability|user id for per-user plans (MCOPSTN8).
    Column("pool", String(120), primary_key=True),
    Column("used", Integer, nullable=False, default=0),
    Column("reserved", Integer, nullable=False, default=0),
    Column("notified_percent", Integer, nullable=False, default=0),
    CheckConstraint("used >= 0 AND reserved >= 0", name="not_negative"),
)

sms_messages = Table(
    "sms_messages",
    metadata,
    Column("org_id", ID, ForeignKey("organizations.id"), primary_key=True),
    Column("sms_id", String(255), primary_key=True),
    Column("user_id", ID),
    Column("upn", String(320)),
    Column("display_name", String(200)),
    Column("direction", String(8), nullable=False),
    Column("from_number", String(32), nullable=False),
    Column("to_number", String(32), nullable=False),
    Column("units", Integer, nullable=False),
    Column("decision", String(8), nullable=False),
    Column("reason", String(32)),
    Column("funding", String(16)),
    Column("capability", String(64)),
    Column("pool", String(120)),
    Column("pool_units", Integer, nullable=False, default=0),
    Column("charge_micros", BigInteger, nullable=False, default=0),
    Column("currency", String(3), nullable=False),
    Column("from_country", String(2)),
    Column("to_country", String(2)),
    Column("sent_at", UTCDateTime, nullable=False),
    Column("invoice_id", ID),
    Index("ix_sms_messages_org_id_sent_at", "org_id", "sent_at"),
)

SMS_OVERAGE_UNBILLED = and_(
    sms_messages.c.funding == literal_column("'overage'"), sms_messages.c.invoice_id.is_(None)
)
Index(
    "ix_sms_messages_overage_unbilled_sent_at",
    sms_messages.c.sent_at,
    sqlite_where=SMS_OVERAGE_UNBILLED,
    postgresql_where=SMS_OVERAGE_UNBILLED,
)

# The web console: sessions, invitations and sign-in failures. Tokens are kept only as their
# SHA-256, so a copy of the database lets nobody in.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("org_id", ID, ForeignKey("organizations.id")),  # null: an operator session
    Column("admin_id", ID),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Index("ix_console_sessions_org_id_admin_id", "org_id", "admin_id"),
)

admin_invitations = Table(
    "admin_invitations",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("org_id", ID, ForeignKey("organizations.id"), nullable=False),
    Column("admin_id", ID, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
    Index("ix_admin_invitations_org_id_admin_id", "org_id", "admin_id"),
)

signin_failures = Table(
    "signin_failures",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("last_failure_at", UTCDateTime, nullable=False),
    Column("locked_until", UTCDateTime),
)
