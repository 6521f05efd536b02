"""call-centre adjustments, approvals, member locks and merges (issue 5)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 21:50:00

Reason codes (seeded with a starting list), adjustment limits per staff role (seeded: agent
5,000 per adjustment and 20,000 per UTC day, supervisor and admin 50,000 and 200,000),
adjustments, the per-staff daily counters, and on members the merge reference and the
indexes of the prefix search by name.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASON_CODES = (
    ("GOODWILL", "Goodwill gesture"),
    ("SERVICE_RECOVERY", "Compensation for a service failure (delay, downgrade, lost bag)"),
    ("MISSING_FLIGHT", "Flight not credited by the feed"),
    ("MISSING_PARTNER", "Partner activity not credited"),
    ("DUPLICATE_CREDIT", "Correction of a credit made twice"),
    ("INCORRECT_CREDIT", "Correction of a credit of the wrong amount"),
    ("FRAUD", "Removal of miles obtained by fraud"),
    ("SYSTEM_ERROR", "Correction of a system error"),
)

LIMITS = (("agent", 5_000, 20_000), ("supervisor", 50_000, 200_000), ("admin", 50_000, 200_000))


def upgrade() -> None:
    op.create_table(
        "adjustment_limits",
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("per_adjustment", sa.BigInteger(), nullable=False),
        sa.Column("per_day", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "per_adjustment >= 0 AND per_day >= 0", name=op.f("ck_adjustment_limits_not_negative")
        ),
        sa.PrimaryKeyConstraint("role", name=op.f("pk_adjustment_limits")),
    )
    op.create_table(
        "adjustment_reason_codes",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "code ~ '^[A-Z][A-Z0-9_]{1,31}$'", name=op.f("ck_adjustment_reason_codes_code")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_adjustment_reason_codes")),
    )
    op.create_table(
        "adjustment_days",
        sa.Column("staff_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("used", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff_users.id"], name=op.f("fk_adjustment_days_staff_id_staff_users")
        ),
        sa.PrimaryKeyConstraint("staff_id", "day", "unit", name="pk_adjustment_days"),
    )
    op.create_table(
        "adjustments",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("direction", sa.String(length=6), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason_code", sa.String(length=32), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("pending_reason", sa.String(length=32), nullable=True),
        sa.Column("requested_by", sa.BigInteger(), nullable=False),
        sa.Column("requested_role", sa.String(length=16), nullable=False),
        sa.Column(
            "requested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("decided_by", sa.BigInteger(), nullable=True),
        sa.Column("decision_comment", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "(status = 'posted') = (entry_id IS NOT NULL)", name=op.f("ck_adjustments_posted_entry")
        ),
        sa.CheckConstraint(
            "direction IN ('credit', 'debit')", name=op.f("ck_adjustments_direction")
        ),
        sa.CheckConstraint(
            "status IN ('posted', 'pending_approval', 'rejected')",
            name=op.f("ck_adjustments_status"),
        ),
        sa.CheckConstraint("unit IN ('MILES', 'STATUS_MILES')", name=op.f("ck_adjustments_unit")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_adjustments_amount_positive")),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["staff_users.id"], name=op.f("fk_adjustments_decided_by_staff_users")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_adjustments_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["reason_code"],
            ["adjustment_reason_codes.code"],
            name=op.f("fk_adjustments_reason_code_adjustment_reason_codes"),
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["staff_users.id"],
            name=op.f("fk_adjustments_requested_by_staff_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adjustments")),
    )
    op.create_index("ix_adjustments_member_id", "adjustments", ["member_id", "id"], unique=False)
    op.create_index(
        "ix_adjustments_pending",
        "adjustments",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending_approval'"),
    )
    op.create_index(
        "ix_adjustments_requested_by", "adjustments", ["requested_by", "id"], unique=False
    )
    op.add_column("members", sa.Column("merged_into_id", sa.BigInteger(), nullable=True))
    op.add_column("members", sa.Column("merged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_members_first_name_lower",
        "members",
        [
            sa.literal_column('lower((first_name)::text) COLLATE "C"'),
            sa.literal_column('lower((last_name)::text) COLLATE "C"'),
            "id",
        ],
        unique=False,
    )
    op.create_index(
        "ix_members_last_name_lower",
        "members",
        [
            sa.literal_column('lower((last_name)::text) COLLATE "C"'),
            sa.literal_column('lower((first_name)::text) COLLATE "C"'),
            "id",
        ],
        unique=False,
    )
    op.create_index(
        "ix_members_merged_into_id",
        "members",
        ["merged_into_id"],
        unique=False,
        postgresql_where=sa.text("merged_into_id IS NOT NULL"),
    )
    op.create_foreign_key(
        op.f("fk_members_merged_into_id_members"), "members", "members", ["merged_into_id"], ["id"]
    )
    codes = sa.table(
        "adjustment_reason_codes", sa.column("code", sa.String), sa.column("description", sa.String)
    )
    op.bulk_insert(codes, [{"code": c, "description": d} for c, d in REASON_CODES])
    limits = sa.table(
        "adjustment_limits",
        sa.column("role", sa.String),
        sa.column("per_adjustment", sa.BigInteger),
        sa.column("per_day", sa.BigInteger),
    )
    op.bulk_insert(limits, [{"role": r, "per_adjustment": a, "per_day": d} for r, a, d in LIMITS])


def downgrade() -> None:
    op.drop_constraint(op.f("fk_members_merged_into_id_members"), "members", type_="foreignkey")
    op.drop_index(
        "ix_members_merged_into_id",
        table_name="members",
        postgresql_where=sa.text("merged_into_id IS NOT NULL"),
    )
    op.drop_index("ix_members_last_name_lower", table_name="members")
    op.drop_index("ix_members_first_name_lower", table_name="members")
    op.drop_column("members", "merged_at")
    op.drop_column("members", "merged_into_id")
    op.drop_index("ix_adjustments_requested_by", table_name="adjustments")
    op.drop_index(
        "ix_adjustments_pending",
        table_name="adjustments",
        postgresql_where=sa.text("status = 'pending_approval'"),
    )
    op.drop_index("ix_adjustments_member_id", table_name="adjustments")
    op.drop_table("adjustments")
    op.drop_table("adjustment_days")
    op.drop_table("adjustment_reason_codes")
    op.drop_table("adjustment_limits")
