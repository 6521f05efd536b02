"""tiers, tier history, missing-flight claims, expiry policy

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 20:00:00

Seeds the demo programme's tiers and policies (rolling 12-month qualification, fixed 36-month
lot expiry, expiring-miles notices 30 days ahead); they are data, changed by new rows with a
later effective date.
"""

from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIERS = [
    # code, name, rank, status miles, segments, background, foreground, label
    ("BASIC", "Basic", 0, 0, 0, "rgb(0, 51, 102)", "rgb(255, 255, 255)", "rgb(173, 216, 230)"),
    ("SILVER", "Silver", 1, 25000, 30, "rgb(192, 192, 192)", "rgb(0, 0, 0)",
     "rgb(64, 64, 64)"),
    ("GOLD", "Gold", 2, 50000, 60, "rgb(212, 175, 55)", "rgb(0, 0, 0)", "rgb(80, 60, 0)"),
    ("PLATINUM", "Platinum", 3, 100000, 100, "rgb(229, 228, 226)", "rgb(20, 20, 20)",
     "rgb(90, 90, 90)"),
]

POLICIES = [
    ("tier_qualification", "rolling_12_months"),
    ("expiry_policy", "fixed"),
    ("expiry_months", "36"),
    ("expiry_notice_days", "30"),
]


def upgrade() -> None:
    op.add_column("members", sa.Column("tier_valid_until", sa.DateTime(timezone=True),
                                       nullable=True))
    op.create_table(
        "tiers",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("status_miles_threshold", sa.BigInteger(), nullable=False),
        sa.Column("segments_threshold", sa.Integer(), nullable=False),
        sa.Column("background_color", sa.String(32), nullable=False),
        sa.Column("foreground_color", sa.String(32), nullable=False),
        sa.Column("label_color", sa.String(32), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tiers"),
        sa.UniqueConstraint("code", "effective_from", name="uq_tiers_code_effective_from"),
        sa.CheckConstraint("rank >= 0", name="ck_tiers_rank_not_negative"),
        sa.CheckConstraint("status_miles_threshold >= 0 AND segments_threshold >= 0",
                           name="ck_tiers_thresholds_not_negative"),
        sa.CheckConstraint("effective_to IS NULL OR effective_to > effective_from",
                           name="ck_tiers_effective_range"),
    )
    op.create_table(
        "policy_settings",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", "effective_from", name="pk_policy_settings"),
    )
    op.create_table(
        "tier_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("from_tier", sa.String(32), nullable=False),
        sa.Column("to_tier", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tier_history"),
    )
    op.create_index("ix_tier_history_member_id", "tier_history", ["member_id", "id"])
    op.create_table(
        "lot_expiry_notices",
        sa.Column("lot_id", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("miles", sa.BigInteger(), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("lot_id", "expires_at", name="pk_lot_expiry_notices"),
    )
    op.create_table(
        "claims",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("ticket_number", sa.String(13), nullable=False),
        sa.Column("flight_number", sa.String(8), nullable=False),
        sa.Column("flight_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_claims"),
        sa.UniqueConstraint("member_id", "ticket_number", "flight_number", "flight_date",
                            name="uq_claims_member_flight"),
        sa.CheckConstraint("status IN ('pending', 'credited', 'rejected')",
                           name="ck_claims_status"),
    )
    op.create_index("ix_claims_pending", "claims", ["flight_date", "id"],
                    postgresql_where=sa.text("status = 'pending'"))
    op.create_index("ix_claims_ticket_number", "claims", ["ticket_number"])

    tiers = sa.table("tiers", *(sa.column(c) for c in (
        "code", "name", "rank", "status_miles_threshold", "segments_threshold",
        "background_color", "foreground_color", "label_color")),
        sa.column("effective_from", sa.Date()))
    op.bulk_insert(tiers, [dict(zip(
        ("code", "name", "rank", "status_miles_threshold", "segments_threshold",
         "background_color", "foreground_color", "label_color"), row, strict=True))
        | {"effective_from": date(2000, 1, 1)} for row in TIERS])
    op.execute(sa.text(
        "INSERT INTO policy_settings (name, value, effective_from) "
        "SELECT n, v, '2000-01-01T00:00:00Z' FROM unnest(CAST(:n AS text[]), "
        "CAST(:v AS text[])) AS p(n, v)").bindparams(
            n=[p[0] for p in POLICIES], v=[p[1] for p in POLICIES]))


def downgrade() -> None:
    op.drop_index("ix_claims_ticket_number", table_name="claims")
    op.drop_index("ix_claims_pending", table_name="claims")
    op.drop_table("claims")
    op.drop_table("lot_expiry_notices")
    op.drop_index("ix_tier_history_member_id", table_name="tier_history")
    op.drop_table("tier_history")
    op.drop_table("policy_settings")
    op.drop_table("tiers")
    op.drop_column("members", "tier_valid_until")
