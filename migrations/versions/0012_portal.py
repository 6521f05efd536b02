"""web sessions and password resets for the portal and console (issue 6)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 21:50:00

Server-side sessions of the member portal and the agent console, and single-use password-reset
tokens; both keep only hashes of what the browser or the e-mail carries.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("principal_type", sa.String(16), nullable=False),
        sa.Column("principal_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(300), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_web_sessions"),
        sa.UniqueConstraint("token_hash", name="uq_web_sessions_token_hash"),
        sa.CheckConstraint("principal_type IN ('member', 'staff')",
                           name="ck_web_sessions_principal_type"),
    )
    op.create_index("ix_web_sessions_principal", "web_sessions",
                    ["principal_type", "principal_id"])
    op.create_table(
        "password_resets",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_password_resets"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"],
                                name="fk_password_resets_member_id_members"),
        sa.UniqueConstraint("token_hash", name="uq_password_resets_token_hash"),
    )
    op.create_index("ix_password_resets_member", "password_resets",
                    ["member_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_password_resets_member", table_name="password_resets")
    op.drop_table("password_resets")
    op.drop_index("ix_web_sessions_principal", table_name="web_sessions")
    op.drop_table("web_sessions")
