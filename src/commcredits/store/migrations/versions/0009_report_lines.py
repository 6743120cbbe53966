"""Each ended call's PSTN report line, written when it ends

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Calls ended before this revision keep NULL: the export formats their lines in the query.
    op.add_column("calls", sa.Column("report_line", sa.Text(), nullable=True))
    op.add_column("calls", sa.Column("report_mask_at", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("report_mask_at")
        batch_op.drop_column("report_line")
