"""partner statements and webhook deliveries (issue 4)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 21:50:00

Closed monthly partner statements (header, totals per entry kind, lines), insert-only like the
journal: the same trigger function refuses UPDATE, DELETE and TRUNCATE. Webhook signing
secrets, one per partner, and webhook deliveries, unique per (partner, outbox event).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SNAPSHOT_TABLES = ("partner_statements", "partner_statement_totals", "partner_statement_lines")


def created_at(name: str = "created_at") -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()"),
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "partner_statements",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("clearing_account_id", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("price_per_mile_milli_minor", sa.BigInteger(), nullable=False),
        sa.Column("value_per_mile_milli_minor", sa.BigInteger(), nullable=False),
        sa.Column("issued_miles", sa.BigInteger(), nullable=False),
        sa.Column("partner_owes", sa.BigInteger(), nullable=False),
        sa.Column("redeemed_miles", sa.BigInteger(), nullable=False),
        sa.Column("programme_owes", sa.BigInteger(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        created_at("closed_at"),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"],
                                name=op.f("fk_partner_statements_partner_id_partners")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_statements")),
        sa.UniqueConstraint("partner_id", "month", name="uq_partner_statements_partner_month"),
    )
    op.create_table(
        "partner_statement_totals",
        sa.Column("statement_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("miles", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["statement_id"], ["partner_statements.id"],
            name=op.f("fk_partner_statement_totals_statement_id_partner_statements")),
        sa.PrimaryKeyConstraint("statement_id", "kind", name="pk_partner_statement_totals"),
    )
    op.create_table(
        "partner_statement_lines",
        sa.Column("statement_id", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("card_number", sa.String(length=16), nullable=True),
        sa.Column("clearing_miles", sa.BigInteger(), nullable=False),
        sa.Column("miles", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["statement_id"], ["partner_statements.id"],
            name=op.f("fk_partner_statement_lines_statement_id_partner_statements")),
        sa.PrimaryKeyConstraint("statement_id", "entry_id", name="pk_partner_statement_lines"),
    )
    for t in SNAPSHOT_TABLES:
        op.execute(f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                   f"FOR EACH ROW EXECUTE FUNCTION reject_journal_change()")
        op.execute(f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION reject_journal_change()")

    op.create_table(
        "webhook_secrets",
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        created_at(),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"],
                                name=op.f("fk_webhook_secrets_partner_id_partners")),
        sa.PrimaryKeyConstraint("partner_id", name=op.f("pk_webhook_secrets")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        created_at("next_attempt_at"),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        created_at(),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')",
                           name=op.f("ck_webhook_deliveries_status")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"],
                                name=op.f("fk_webhook_deliveries_partner_id_partners")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("partner_id", "event_id", name="uq_webhook_deliveries_partner_event"),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["next_attempt_at"],
                    unique=False, postgresql_where=sa.text("status = 'pending'"))


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries",
                  postgresql_where=sa.text("status = 'pending'"))
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_secrets")
    # DROP TABLE does not fire the TRUNCATE or row triggers: a downgrade is an operator's act.
    op.drop_table("partner_statement_lines")
    op.drop_table("partner_statement_totals")
    op.drop_table("partner_statements")
