"""member redemption codes, partner holds, redemptions and refunds (issue 4)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 21:50:00

Seeds the programme's internal airline partner ``lm-awards``, through which members' own
award bookings are held and captured like any partner's redemption. Its clearing account in
the ledger is opened on first use (lms.redemption.service.internal_partner), never here: only
the ledger writes ledger tables.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INTERNAL_PARTNER = "lm-awards"


def upgrade() -> None:
    op.create_table(
        "redemption_guards",
        sa.Column("card_number", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.CheckConstraint("failures >= 0", name=op.f("ck_redemption_guards_failures")),
        sa.PrimaryKeyConstraint("card_number", name=op.f("pk_redemption_guards")),
    )
    op.create_table(
        "redemption_codes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("partner_id", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"],
                                name=op.f("fk_redemption_codes_member_id_members")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"],
                                name=op.f("fk_redemption_codes_partner_id_partners")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemption_codes")),
    )
    op.create_index("ix_redemption_codes_code_hash", "redemption_codes", ["code_hash"])
    op.create_index("ix_redemption_codes_member_id", "redemption_codes", ["member_id"])
    op.create_table(
        "partner_holds",
        sa.Column("hold_id", sa.BigInteger(), nullable=False),
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("code_id", sa.BigInteger(), nullable=True),
        sa.Column("order_reference", sa.String(100), nullable=False),
        sa.Column("miles", sa.BigInteger(), nullable=False),
        sa.Column("cash_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("value_per_mile_milli_minor", sa.BigInteger(), nullable=False),
        sa.Column("origin", sa.String(16), server_default=sa.text("'partner'"),
                  nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.CheckConstraint("origin IN ('partner', 'member')",
                           name=op.f("ck_partner_holds_origin")),
        sa.CheckConstraint("miles > 0 AND cash_amount >= 0",
                           name=op.f("ck_partner_holds_amounts")),
        sa.ForeignKeyConstraint(["code_id"], ["redemption_codes.id"],
                                name=op.f("fk_partner_holds_code_id_redemption_codes")),
        sa.ForeignKeyConstraint(["hold_id"], ["holds.id"],
                                name=op.f("fk_partner_holds_hold_id_holds")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"],
                                name=op.f("fk_partner_holds_member_id_members")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"],
                                name=op.f("fk_partner_holds_partner_id_partners")),
        sa.PrimaryKeyConstraint("hold_id", name=op.f("pk_partner_holds")),
    )
    op.create_index("ix_partner_holds_member_id", "partner_holds", ["member_id"])
    op.create_index("ix_partner_holds_partner_order", "partner_holds",
                    ["partner_id", "order_reference"])
    op.create_table(
        "redemptions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("hold_id", sa.BigInteger(), nullable=False),
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("order_reference", sa.String(100), nullable=False),
        sa.Column("miles", sa.BigInteger(), nullable=False),
        sa.Column("refunded_miles", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cash_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("value_per_mile_milli_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.CheckConstraint("miles > 0", name=op.f("ck_redemptions_miles")),
        sa.CheckConstraint("refunded_miles BETWEEN 0 AND miles",
                           name=op.f("ck_redemptions_refunded")),
        sa.ForeignKeyConstraint(["entry_id"], ["journal_entries.id"],
                                name=op.f("fk_redemptions_entry_id_journal_entries")),
        sa.ForeignKeyConstraint(["hold_id"], ["partner_holds.hold_id"],
                                name=op.f("fk_redemptions_hold_id_partner_holds")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"],
                                name=op.f("fk_redemptions_member_id_members")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"],
                                name=op.f("fk_redemptions_partner_id_partners")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemptions")),
        sa.UniqueConstraint("hold_id", name=op.f("uq_redemptions_hold_id")),
    )
    op.create_index("ix_redemptions_partner_order", "redemptions",
                    ["partner_id", "order_reference"])
    op.create_table(
        "redemption_refunds",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("redemption_id", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("miles", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.CheckConstraint("miles > 0", name=op.f("ck_redemption_refunds_miles")),
        sa.ForeignKeyConstraint(["entry_id"], ["journal_entries.id"],
                                name=op.f("fk_redemption_refunds_entry_id_journal_entries")),
        sa.ForeignKeyConstraint(["redemption_id"], ["redemptions.id"],
                                name=op.f("fk_redemption_refunds_redemption_id_redemptions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemption_refunds")),
    )
    op.create_index("ix_redemption_refunds_redemption_id", "redemption_refunds",
                    ["redemption_id"])
    # Award seats valued at one euro cent per mile: what the airline is credited in
    # settlement for the miles its award bookings take.
    op.execute(sa.text(
        "INSERT INTO partners (code, name, kind, currency, value_per_mile_milli_minor) "
        "VALUES (:code, 'Loyalty Airline award bookings', 'airline', 'EUR', 1000) "
        "ON CONFLICT (code) DO NOTHING").bindparams(code=INTERNAL_PARTNER))


def downgrade() -> None:
    op.execute(sa.text(
        "DELETE FROM api_key_windows WHERE key_id IN (SELECT k.id FROM api_keys k "
        "JOIN partners p ON p.id = k.partner_id WHERE p.code = :code)"
    ).bindparams(code=INTERNAL_PARTNER))
    op.execute(sa.text(
        "DELETE FROM api_keys WHERE partner_id IN (SELECT id FROM partners WHERE code = :code)"
    ).bindparams(code=INTERNAL_PARTNER))
    op.drop_index("ix_redemption_refunds_redemption_id", table_name="redemption_refunds")
    op.drop_table("redemption_refunds")
    op.drop_index("ix_redemptions_partner_order", table_name="redemptions")
    op.drop_table("redemptions")
    op.drop_index("ix_partner_holds_partner_order", table_name="partner_holds")
    op.drop_index("ix_partner_holds_member_id", table_name="partner_holds")
    op.drop_table("partner_holds")
    op.drop_index("ix_redemption_codes_member_id", table_name="redemption_codes")
    op.drop_index("ix_redemption_codes_code_hash", table_name="redemption_codes")
    op.drop_table("redemption_codes")
    op.drop_table("redemption_guards")
    op.execute(sa.text("DELETE FROM partners WHERE code = :code AND NOT EXISTS "
                       "(SELECT 1 FROM partner_accruals a WHERE a.partner_id = partners.id) "
                       "AND NOT EXISTS (SELECT 1 FROM partner_earn_rates r "
                       "WHERE r.partner_id = partners.id)").bindparams(code=INTERNAL_PARTNER))
