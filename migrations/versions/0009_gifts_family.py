"""gifts and family pools (issue 5)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 21:50:00

Gift rule versions (fee, limits) and gifts; family rule versions, pools (each with a ledger
account of kind ``pool``), memberships with contributions, invitations. Downgrading leaves the
pools' ledger accounts and their journal alone, as the journal is append-only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "family_rules",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("max_members", sa.Integer(), nullable=False),
        sa.Column("cooling_off_days", sa.Integer(), nullable=False),
        sa.Column("invitation_days", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "max_members >= 2 AND cooling_off_days >= 0 AND invitation_days > 0",
            name=op.f("ck_family_rules_terms"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_family_rules")),
        sa.UniqueConstraint("effective_from", name=op.f("uq_family_rules_effective_from")),
    )
    op.create_table(
        "gift_rules",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("fee_bp", sa.Integer(), nullable=False),
        sa.Column("fee_minimum", sa.BigInteger(), nullable=False),
        sa.Column("min_miles", sa.BigInteger(), nullable=False),
        sa.Column("daily_limit", sa.BigInteger(), nullable=False),
        sa.Column("yearly_limit", sa.BigInteger(), nullable=False),
        sa.Column("daily_received_limit", sa.BigInteger(), nullable=True),
        sa.Column("yearly_received_limit", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "daily_limit > 0 AND yearly_limit > 0", name=op.f("ck_gift_rules_limits")
        ),
        sa.CheckConstraint(
            "fee_bp BETWEEN 0 AND 10000 AND fee_minimum >= 0 AND min_miles > 0",
            name=op.f("ck_gift_rules_fee"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gift_rules")),
        sa.UniqueConstraint("effective_from", name=op.f("uq_gift_rules_effective_from")),
    )
    op.create_table(
        "family_pools",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("head_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("dissolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'dissolved')", name=op.f("ck_family_pools_status")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_family_pools_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["head_id"], ["members.id"], name=op.f("fk_family_pools_head_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_family_pools")),
        sa.UniqueConstraint("account_id", name=op.f("uq_family_pools_account_id")),
    )
    op.create_table(
        "gifts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("sender_id", sa.BigInteger(), nullable=False),
        sa.Column("recipient_id", sa.BigInteger(), nullable=False),
        sa.Column("miles", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.Column("rule_id", sa.BigInteger(), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("miles > 0 AND fee >= 0", name=op.f("ck_gifts_amounts")),
        sa.CheckConstraint("sender_id <> recipient_id", name=op.f("ck_gifts_not_self")),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_gifts_entry_id_journal_entries")
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"], ["members.id"], name=op.f("fk_gifts_recipient_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"], ["gift_rules.id"], name=op.f("fk_gifts_rule_id_gift_rules")
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"], ["members.id"], name=op.f("fk_gifts_sender_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gifts")),
    )
    op.create_index(
        "ix_gifts_recipient_created", "gifts", ["recipient_id", "created_at"], unique=False
    )
    op.create_index("ix_gifts_sender_created", "gifts", ["sender_id", "created_at"], unique=False)
    op.create_table(
        "family_invitations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("pool_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("invited_by", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'declined', 'cancelled')",
            name=op.f("ck_family_invitations_status"),
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"], ["members.id"], name=op.f("fk_family_invitations_invited_by_members")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_family_invitations_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["family_pools.id"],
            name=op.f("fk_family_invitations_pool_id_family_pools"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_family_invitations")),
    )
    op.create_index(
        "ix_family_invitations_member", "family_invitations", ["member_id", "status"], unique=False
    )
    op.create_index(
        "uq_family_invitations_pending",
        "family_invitations",
        ["pool_id", "member_id"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "family_members",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("pool_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("contributed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("paid_out", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "joined_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("left_reason", sa.String(length=16), nullable=True),
        sa.CheckConstraint(
            "left_reason IN ('left', 'removed', 'dissolved')",
            name=op.f("ck_family_members_left_reason"),
        ),
        sa.CheckConstraint("role IN ('head', 'member')", name=op.f("ck_family_members_role")),
        sa.CheckConstraint(
            "contributed >= 0 AND paid_out >= 0", name=op.f("ck_family_members_amounts")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_family_members_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["family_pools.id"], name=op.f("fk_family_members_pool_id_family_pools")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_family_members")),
    )
    op.create_index("ix_family_members_pool", "family_members", ["pool_id"], unique=False)
    op.create_index(
        "uq_family_members_current",
        "family_members",
        ["member_id"],
        unique=True,
        postgresql_where=sa.text("left_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_family_members_current",
        table_name="family_members",
        postgresql_where=sa.text("left_at IS NULL"),
    )
    op.drop_index("ix_family_members_pool", table_name="family_members")
    op.drop_table("family_members")
    op.drop_index(
        "uq_family_invitations_pending",
        table_name="family_invitations",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_family_invitations_member", table_name="family_invitations")
    op.drop_table("family_invitations")
    op.drop_index("ix_gifts_sender_created", table_name="gifts")
    op.drop_index("ix_gifts_recipient_created", table_name="gifts")
    op.drop_table("gifts")
    op.drop_table("family_pools")
    op.drop_table("gift_rules")
    op.drop_table("family_rules")
