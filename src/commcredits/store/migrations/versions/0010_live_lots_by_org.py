"""A partial index over each organization's lots with money left, in spending order

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

LOT_HAS_MONEY = sa.text("remaining_micros > 0")


def upgrade() -> None:
    op.create_index(
        "ix_lots_live_org_id_purchased_at",
        "lots",
        ["org_id", "purchased_at", "id"],
        sqlite_where=LOT_HAS_MONEY,
        postgresql_where=LOT_HAS_MONEY,
    )


def downgrade() -> None:
    op.drop_index("ix_lots_live_org_id_purchased_at", table_name="lots")
