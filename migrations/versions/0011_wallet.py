"""Apple and Google Wallet passes and device registrations (issue 6)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 21:50:00

One wallet pass per member (serial number, the time it last changed, whether devices and
Google are owed an update), the pass's authentication tokens (SHA-256 only), and the devices
registered through the PassKit web service.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wallet_passes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("sync_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sync_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("google_issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"],
                                name=op.f("fk_wallet_passes_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_passes")),
        sa.UniqueConstraint("member_id", name=op.f("uq_wallet_passes_member_id")),
        sa.UniqueConstraint("serial_number", name=op.f("uq_wallet_passes_serial_number")),
    )
    op.create_index("ix_wallet_passes_sync_due_at", "wallet_passes", ["sync_due_at"],
                    postgresql_where=sa.text("sync_due_at IS NOT NULL"))
    op.create_table(
        "wallet_pass_tokens",
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("pass_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.ForeignKeyConstraint(["pass_id"], ["wallet_passes.id"],
                                name=op.f("fk_wallet_pass_tokens_pass_id_wallet_passes")),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_wallet_pass_tokens")),
    )
    op.create_index("ix_wallet_pass_tokens_pass_id", "wallet_pass_tokens", ["pass_id"])
    op.create_table(
        "wallet_registrations",
        sa.Column("device_library_identifier", sa.String(length=128), nullable=False),
        sa.Column("pass_id", sa.BigInteger(), nullable=False),
        sa.Column("push_token", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.ForeignKeyConstraint(["pass_id"], ["wallet_passes.id"],
                                name=op.f("fk_wallet_registrations_pass_id_wallet_passes")),
        sa.PrimaryKeyConstraint("device_library_identifier", "pass_id",
                                name="pk_wallet_registrations"),
    )
    op.create_index("ix_wallet_registrations_pass_id", "wallet_registrations", ["pass_id"])
    op.create_index("ix_wallet_registrations_push_token", "wallet_registrations",
                    ["push_token"])


def downgrade() -> None:
    op.drop_table("wallet_registrations")
    op.drop_table("wallet_pass_tokens")
    op.drop_table("wallet_passes")
