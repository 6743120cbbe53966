"""Partial indexes over the rows the job scheduler looks for: lots with money left, and
postpaid overage not yet invoiced

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

LOT_HAS_MONEY = sa.text("remaining_micros > 0")
OVERAGE_UNBILLED = sa.text("funding = 'overage' AND invoice_id IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_lots_live_expires_at",
        "lots",
        ["expires_at"],
        sqlite_where=LOT_HAS_MONEY,
        postgresql_where=LOT_HAS_MONEY,
    )
    op.create_index(
        "ix_calls_overage_unbilled_start_time",
        "calls",
        ["start_time"],
        sqlite_where=OVERAGE_UNBILLED,
        postgresql_where=OVERAGE_UNBILLED,
    )
    op.create_index(
        "ix_sms_messages_overage_unbilled_sent_at",
        "sms_messages",
        ["sent_at"],
        sqlite_where=OVERAGE_UNBILLED,
        postgresql_where=OVERAGE_UNBILLED,
    )


def downgrade() -> None:
    op.drop_index("ix_sms_messages_overage_unbilled_sent_at", table_name="sms_messages")
    op.drop_index("ix_calls_overage_unbilled_start_time", table_name="calls")
    op.drop_index("ix_lots_live_expires_at", table_name="lots")
