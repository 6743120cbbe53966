"""Rating: rate tables and tariff plans, kept as loaded

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import commcredits.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_tables",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("loaded_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_tables")),
    )
    with op.batch_alter_table("rate_tables", schema=None) as batch_op:
        batch_op.create_index("ix_rate_tables_active", ["active"], unique=False)

    op.create_table(
        "tariff_plans",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("loaded_at", commcredits.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tariff_plans")),
    )


def downgrade() -> None:
    op.drop_table("tariff_plans")
    with op.batch_alter_table("rate_tables", schema=None) as batch_op:
        batch_op.drop_index("ix_rate_tables_active")

    op.drop_table("rate_tables")
