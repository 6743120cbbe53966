"""The web console: sessions, admin invitations, sign-in failures

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import commcredits.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UTC_TIME = commcredits.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=True),
        sa.Column("admin_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("last_seen_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.Column("revoked_at", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_console_sessions_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_console_sessions")),
    )
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_console_sessions_org_id_admin_id", ["org_id", "admin_id"], unique=False
        )
    op.create_table(
        "admin_invitations",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("admin_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.Column("used_at", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_admin_invitations_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_admin_invitations")),
    )
    with op.batch_alter_table("admin_invitations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_admin_invitations_org_id_admin_id", ["org_id", "admin_id"], unique=False
        )
    op.create_table(
        "signin_failures",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", UTC_TIME, nullable=False),
        sa.Column("locked_until", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("email", name=op.f("pk_signin_failures")),
    )


def downgrade() -> None:
    op.drop_table("signin_failures")
    with op.batch_alter_table("admin_invitations", schema=None) as batch_op:
        batch_op.drop_index("ix_admin_invitations_org_id_admin_id")
    op.drop_table("admin_invitations")
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_console_sessions_org_id_admin_id")
    op.drop_table("console_sessions")
