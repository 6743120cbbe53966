"""Directory and licensing: users, licenses, subscriptions, numbers, policies, audit log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import commcredits.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=320), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_audit_log_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_org_id_at", ["org_id", "at"], unique=False)

    op.create_table(
        "phone_numbers",
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('user', 'service', 'service_toll_free', 'conference', 'conference_toll_free')",
            name=op.f("ck_phone_numbers_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_phone_numbers_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_phone_numbers")),
    )
    with op.batch_alter_table("phone_numbers", schema=None) as batch_op:
        batch_op.create_index("ix_phone_numbers_org_id_number", ["org_id", "number"], unique=False)
        batch_op.create_index(
            "ix_phone_numbers_org_id_user_id", ["org_id", "user_id"], unique=False
        )

    op.create_table(
        "subscriptions",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("created_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_subscriptions_quantity_not_negative")),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_subscriptions_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("org_id", "sku", name=op.f("pk_subscriptions")),
    )
    op.create_table(
        "users",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("upn", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("usage_location", sa.String(length=2), nullable=True),
        sa.Column("pstn_policy", sa.String(length=32), nullable=True),
        sa.Column("dialout_policy", sa.String(length=32), nullable=True),
        sa.Column("spend_limit_micros", sa.BigInteger(), nullable=True),
        sa.Column("created_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "spend_limit_micros IS NULL OR spend_limit_micros >= 0",
            name=op.f("ck_users_spend_limit"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_users_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_users")),
        sa.UniqueConstraint("org_id", "upn", name=op.f("uq_users_org_id_upn")),
    )
    op.create_table(
        "user_licenses",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column(
            "assigned_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id", "user_id"],
            ["users.org_id", "users.id"],
            name=op.f("fk_user_licenses_org_id_users"),
        ),
        sa.PrimaryKeyConstraint("org_id", "user_id", "sku", name=op.f("pk_user_licenses")),
    )
    with op.batch_alter_table("user_licenses", schema=None) as batch_op:
        batch_op.create_index("ix_user_licenses_org_id_sku", ["org_id", "sku"], unique=False)

    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "pstn_policy",
                sa.String(length=32),
                server_default="international_and_domestic",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("dialout_policy", sa.String(length=32), server_default="any", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("dialout_policy")
        batch_op.drop_column("pstn_policy")

    with op.batch_alter_table("user_licenses", schema=None) as batch_op:
        batch_op.drop_index("ix_user_licenses_org_id_sku")

    op.drop_table("user_licenses")
    op.drop_table("users")
    op.drop_table("subscriptions")
    with op.batch_alter_table("phone_numbers", schema=None) as batch_op:
        batch_op.drop_index("ix_phone_numbers_org_id_user_id")
        batch_op.drop_index("ix_phone_numbers_org_id_number")

    op.drop_table("phone_numbers")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_org_id_at")

    op.drop_table("audit_log")
