"""Communications Credits: payment methods, accounts, lots, ledger, orders, invoices

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import commcredits.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_accounts",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("balance_micros", sa.BigInteger(), nullable=False),
        sa.Column("reserved_micros", sa.BigInteger(), nullable=False),
        sa.Column("entry_seq", sa.BigInteger(), nullable=False),
        sa.Column("invoice_seq", sa.Integer(), nullable=False),
        sa.Column(
            "next_expiry_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("zero_notified", sa.Boolean(), nullable=False),
        sa.Column("recharge_enabled", sa.Boolean(), nullable=False),
        sa.Column("recharge_trigger_micros", sa.BigInteger(), nullable=True),
        sa.Column("recharge_amount_micros", sa.BigInteger(), nullable=True),
        sa.Column("recharge_payment_method_id", sa.String(length=40), nullable=True),
        sa.Column("recharge_status", sa.String(length=16), nullable=False),
        sa.Column("recharge_failures", sa.Integer(), nullable=False),
        sa.Column(
            "recharge_next_retry_at",
            commcredits.store.types.UTCDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("updated_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "balance_micros >= 0", name=op.f("ck_credit_accounts_balance_never_negative")
        ),
        sa.CheckConstraint(
            "reserved_micros >= 0 AND reserved_micros <= balance_micros",
            name=op.f("ck_credit_accounts_reserved_within_balance"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_credit_accounts_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_credit_accounts")),
    )
    op.create_table(
        "credit_orders",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_method_id", sa.String(length=40), nullable=False),
        sa.Column("purchase_order", sa.String(length=64), nullable=True),
        sa.Column("auto_recharge", sa.JSON(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_attempt_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("charge_id", sa.String(length=100), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_message", sa.String(length=300), nullable=True),
        sa.Column("lot_id", sa.String(length=40), nullable=True),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("settled_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('deposit', 'recharge')", name=op.f("ck_credit_orders_kind_known")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'failed')", name=op.f("ck_credit_orders_status_known")
        ),
        sa.CheckConstraint("amount_micros > 0", name=op.f("ck_credit_orders_amount_positive")),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_credit_orders_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_credit_orders")),
        sa.UniqueConstraint(
            "org_id", "idempotency_key", name=op.f("uq_credit_orders_org_id_idempotency_key")
        ),
    )
    with op.batch_alter_table("credit_orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_credit_orders_status_next_attempt_at", ["status", "next_attempt_at"], unique=False
        )

    op.create_table(
        "invoices",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("issued_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_method", sa.String(length=200), nullable=True),
        sa.Column("purchase_order", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_invoices_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("org_id", "number", name=op.f("uq_invoices_org_id_number")),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index("ix_invoices_org_id_issued_at", ["org_id", "issued_at"], unique=False)

    op.create_table(
        "ledger_entries",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("lot_id", sa.String(length=40), nullable=True),
        sa.Column("balance_after_micros", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("description", sa.String(length=300), nullable=True),
        sa.CheckConstraint(
            "kind IN ('deposit', 'recharge', 'usage', 'refund', 'expiry', 'adjustment')",
            name=op.f("ck_ledger_entries_kind_known"),
        ),
        sa.CheckConstraint(
            "balance_after_micros >= 0", name=op.f("ck_ledger_entries_balance_after_never_negative")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_ledger_entries_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("org_id", "seq", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("org_id", "id", name=op.f("uq_ledger_entries_org_id_id")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_entries_org_id_at", ["org_id", "at"], unique=False)

    op.create_table(
        "lots",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("remaining_micros", sa.BigInteger(), nullable=False),
        sa.Column(
            "purchased_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("expires_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("warned_days", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "source IN ('deposit', 'recharge', 'adjustment')", name=op.f("ck_lots_source_known")
        ),
        sa.CheckConstraint(
            "amount_micros > 0 AND remaining_micros >= 0 AND remaining_micros <= amount_micros",
            name=op.f("ck_lots_lots_remaining_within_amount"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_lots_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_lots")),
    )
    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.create_index("ix_lots_expires_at", ["expires_at"], unique=False)
        batch_op.create_index(
            "ix_lots_org_id_purchased_at", ["org_id", "purchased_at"], unique=False
        )

    op.create_table(
        "payment_methods",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("token", sa.String(length=200), nullable=True),
        sa.Column("brand", sa.String(length=32), nullable=True),
        sa.Column("last4", sa.String(length=4), nullable=True),
        sa.Column("exp_month", sa.Integer(), nullable=True),
        sa.Column("exp_year", sa.Integer(), nullable=True),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("agreement_number", sa.String(length=64), nullable=True),
        sa.Column("purchase_order", sa.String(length=64), nullable=True),
        sa.Column("created_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("removed_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "type IN ('card', 'enterprise_agreement')", name=op.f("ck_payment_methods_type_known")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_payment_methods_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_payment_methods")),
    )


def downgrade() -> None:
    op.drop_table("payment_methods")
    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.drop_index("ix_lots_org_id_purchased_at")
        batch_op.drop_index("ix_lots_expires_at")

    op.drop_table("lots")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_org_id_at")

    op.drop_table("ledger_entries")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("ix_invoices_org_id_issued_at")

    op.drop_table("invoices")
    with op.batch_alter_table("credit_orders", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_orders_status_next_attempt_at")

    op.drop_table("credit_orders")
    op.drop_table("credit_accounts")
