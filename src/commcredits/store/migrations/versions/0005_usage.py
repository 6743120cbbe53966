"""Usage: calls, minute pools, messages

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import commcredits.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("call_id", sa.String(length=255), nullable=False),
        sa.Column("call_type", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("upn", sa.String(length=320), nullable=True),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("user_location", sa.String(length=2), nullable=True),
        sa.Column("from_number", sa.String(length=32), nullable=False),
        sa.Column("to_number", sa.String(length=32), nullable=False),
        sa.Column("conference_id", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("funding", sa.String(length=16), nullable=True),
        sa.Column("capability", sa.String(length=64), nullable=True),
        sa.Column("external_country", sa.String(length=2), nullable=True),
        sa.Column("number_type", sa.String(length=16), nullable=True),
        sa.Column("domestic", sa.Boolean(), nullable=True),
        sa.Column("pool", sa.String(length=120), nullable=True),
        sa.Column("pool_minutes", sa.Integer(), nullable=False),
        sa.Column("reserved_pool_minutes", sa.Integer(), nullable=False),
        sa.Column("rate_table_id", sa.String(length=40), nullable=True),
        sa.Column("rate_line", sa.Integer(), nullable=True),
        sa.Column("rate", sa.String(length=40), nullable=True),
        sa.Column("connection_fee", sa.String(length=40), nullable=True),
        sa.Column("first_increment", sa.Integer(), nullable=True),
        sa.Column("increment", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("charge_micros", sa.BigInteger(), nullable=False),
        sa.Column("connection_fee_micros", sa.BigInteger(), nullable=False),
        sa.Column("reserved_micros", sa.BigInteger(), nullable=False),
        sa.Column("granted_seconds", sa.Integer(), nullable=False),
        sa.Column("used_seconds", sa.Integer(), nullable=False),
        sa.Column("start_time", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("end_time", commcredits.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column(
            "reservation_expires_at",
            commcredits.store.types.UTCDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'ended', 'denied')", name=op.f("ck_calls_status_known")
        ),
        sa.CheckConstraint(
            "charge_micros >= 0 AND reserved_micros >= 0", name=op.f("ck_calls_money_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_calls_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("org_id", "call_id", name=op.f("pk_calls")),
    )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index("ix_calls_call_id", ["call_id"], unique=False)
        batch_op.create_index("ix_calls_org_id_start_time", ["org_id", "start_time"], unique=False)
        batch_op.create_index(
            "ix_calls_status_reservation_expires_at",
            ["status", "reservation_expires_at"],
            unique=False,
        )

    op.create_table(
        "pool_usage",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("pool", sa.String(length=120), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("notified_percent", sa.Integer(), nullable=False),
        sa.CheckConstraint("used >= 0 AND reserved >= 0", name=op.f("ck_pool_usage_not_negative")),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_pool_usage_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("org_id", "month", "pool", name=op.f("pk_pool_usage")),
    )
    op.create_table(
        "sms_messages",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("sms_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("upn", sa.String(length=320), nullable=True),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("from_number", sa.String(length=32), nullable=False),
        sa.Column("to_number", sa.String(length=32), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("funding", sa.String(length=16), nullable=True),
        sa.Column("capability", sa.String(length=64), nullable=True),
        sa.Column("pool", sa.String(length=120), nullable=True),
        sa.Column("pool_units", sa.Integer(), nullable=False),
        sa.Column("charge_micros", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("from_country", sa.String(length=2), nullable=True),
        sa.Column("to_country", sa.String(length=2), nullable=True),
        sa.Column("sent_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_sms_messages_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("org_id", "sms_id", name=op.f("pk_sms_messages")),
    )
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.create_index("ix_sms_messages_org_id_sent_at", ["org_id", "sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_sms_messages_org_id_sent_at")

    op.drop_table("sms_messages")
    op.drop_table("pool_usage")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_call_id")
        batch_op.drop_index("ix_calls_status_reservation_expires_at")
        batch_op.drop_index("ix_calls_org_id_start_time")

    op.drop_table("calls")
