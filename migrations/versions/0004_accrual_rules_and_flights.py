"""programme rules, earn charts, promotions, flown coupons

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 20:00:00

Earn rules are versioned rows (a change is a new version, never an update). Each credited
coupon is a journal entry with source ``flight`` and external_ref ``<ticket>/<coupon>``
(unique: credited once, ever) and a row in flown_coupons, claimed first in the same
transaction so that concurrent batches carrying the same coupon queue on that row instead of
failing on the journal's index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _codes(name: str, length: int = 8) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, postgresql.ARRAY(sa.String(length=length)),
                     server_default=sa.text("'{}'::varchar[]"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "earn_rules",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.CheckConstraint("kind IN ('carrier', 'booking_class', 'tier_bonus')",
                           name=op.f("ck_earn_rules_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_earn_rules")),
        sa.UniqueConstraint("kind", "key", "effective_from", name="uq_earn_rules_version"),
    )
    op.create_table(
        "flown_coupons",
        sa.Column("ticket_number", sa.String(length=20), nullable=False),
        sa.Column("coupon_number", sa.SmallInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("flight_date", sa.Date(), nullable=False),
        sa.Column("carrier", sa.String(length=3), nullable=False),
        sa.Column("flight_number", sa.String(length=5), nullable=False),
        sa.Column("origin", sa.String(length=3), nullable=False),
        sa.Column("destination", sa.String(length=3), nullable=False),
        sa.Column("booking_class", sa.String(length=1), nullable=False),
        sa.Column("credited_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("ticket_number", "coupon_number", name="pk_flown_coupons"),
    )
    op.create_index("ix_flown_coupons_member_flight_date", "flown_coupons",
                    ["member_id", "flight_date"], unique=False)
    op.create_table(
        "promotions",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("bonus_percent", sa.Integer(), server_default="0", nullable=False),
        sa.Column("fixed_miles", sa.BigInteger(), server_default="0", nullable=False),
        _codes("carriers"), _codes("origins"), _codes("destinations"), _codes("countries"),
        _codes("booking_classes"), _codes("tiers", 32),
        sa.Column("travel_from", sa.Date(), nullable=True),
        sa.Column("travel_to", sa.Date(), nullable=True),
        sa.Column("booked_from", sa.Date(), nullable=True),
        sa.Column("booked_to", sa.Date(), nullable=True),
        sa.Column("first_flight_only", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("requires_registration", sa.Boolean(), server_default="false",
                  nullable=False),
        sa.Column("member_cap", sa.BigInteger(), nullable=True),
        sa.Column("budget", sa.BigInteger(), nullable=True),
        sa.Column("used", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.CheckConstraint("budget IS NULL OR used <= budget",
                           name=op.f("ck_promotions_within_budget")),
        sa.CheckConstraint("used >= 0 AND bonus_percent >= 0 AND fixed_miles >= 0",
                           name=op.f("ck_promotions_not_negative")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_promotions")),
    )
    op.create_table(
        "promotion_registrations",
        sa.Column("promotion_code", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"],
                                name=op.f("fk_promotion_registrations_member_id_members")),
        sa.ForeignKeyConstraint(
            ["promotion_code"], ["promotions.code"],
            name=op.f("fk_promotion_registrations_promotion_code_promotions")),
        sa.PrimaryKeyConstraint("promotion_code", "member_id",
                                name="pk_promotion_registrations"),
    )
    op.create_table(
        "promotion_awards",
        sa.Column("promotion_code", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("awarded", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("awarded >= 0", name=op.f("ck_promotion_awards_not_negative")),
        sa.ForeignKeyConstraint(["promotion_code"], ["promotions.code"],
                                name=op.f("fk_promotion_awards_promotion_code_promotions")),
        sa.PrimaryKeyConstraint("promotion_code", "member_id", name="pk_promotion_awards"),
    )


def downgrade() -> None:
    op.drop_table("promotion_awards")
    op.drop_table("promotion_registrations")
    op.drop_table("promotions")
    op.drop_table("earn_rules")
    op.drop_index("ix_flown_coupons_member_flight_date", table_name="flown_coupons")
    op.drop_table("flown_coupons")
