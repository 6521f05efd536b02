"""mile and status purchases, payments (issue 5)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 21:50:00

Purchase rules (versions loaded from the programme file), purchases of miles and of status,
and the webhooks received from the payment provider (one row per provider payment id, which
makes a replayed webhook change nothing).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "purchase_rules",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("body", postgresql.JSONB(), nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("kind", "effective_from", name="pk_purchase_rules"),
        sa.CheckConstraint("kind IN ('miles', 'status')", name="ck_purchase_rules_kind"),
    )
    op.create_table(
        "purchases",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("reference", sa.String(40), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("miles", sa.BigInteger(), nullable=True),
        sa.Column("tier", sa.String(32), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("cap_year", sa.Integer(), nullable=False),
        sa.Column("provider_payment_id", sa.String(100), nullable=False),
        sa.Column("payment_url", sa.String(1000), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refund_due", sa.Boolean(), server_default=sa.text("false"),
                  nullable=False),
        sa.Column("note", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_purchases"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"],
                                name="fk_purchases_member_id_members"),
        sa.UniqueConstraint("reference", name="uq_purchases_reference"),
        sa.UniqueConstraint("provider_payment_id", name="uq_purchases_provider_payment_id"),
        sa.CheckConstraint("kind IN ('miles', 'status')", name="ck_purchases_kind"),
        sa.CheckConstraint("status IN ('pending', 'completed', 'canceled', 'expired', "
                           "'rejected')", name="ck_purchases_status"),
        sa.CheckConstraint("(kind = 'miles' AND miles > 0 AND tier IS NULL) OR "
                           "(kind = 'status' AND miles IS NULL AND tier IS NOT NULL)",
                           name="ck_purchases_what"),
        sa.CheckConstraint("amount_minor > 0", name="ck_purchases_amount"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_purchases_currency"),
    )
    op.create_index("ix_purchases_member", "purchases", ["member_id", "kind", "id"])
    op.create_index("ix_purchases_pending_expiry", "purchases", ["expires_at"],
                    postgresql_where=sa.text("status = 'pending'"))
    op.create_table(
        "payment_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("provider_payment_id", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(100), nullable=False),
        sa.Column("reference", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("body", postgresql.JSONB(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_payment_events"),
        sa.UniqueConstraint("provider_payment_id",
                            name="uq_payment_events_provider_payment_id"),
    )


def downgrade() -> None:
    op.drop_table("payment_events")
    op.drop_index("ix_purchases_pending_expiry", table_name="purchases")
    op.drop_index("ix_purchases_member", table_name="purchases")
    op.drop_table("purchases")
    op.drop_table("purchase_rules")
