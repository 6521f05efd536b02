"""the rows of the single-transfer writes without foreign keys

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-24 07:00:00

Each partner accrual, gift, redemption code, partner hold and redemption wrote one row whose
foreign keys PostgreSQL checked with a query per key that locks the referenced row FOR KEY
SHARE: four per gift, four per hold and per capture. Some of those rows are shared by every
concurrent write (the partner's row, the gift terms in force), so each concurrent lock made a
new multixact; measured alone, three checks made a gift's insert about 40% dearer in CPU.

The keys are dropped, as the ledger's postings and lots carry none (migration 0002): each of
these rows is written by one code path that has just read the rows it names in the same
transaction (the member, partner and terms by the facts query, the entry and hold by the
ledger), and none of the rows named is ever deleted: members, partners, API keys and gift
terms have no delete path, journal entries are protected by a trigger, holds and codes are
closed by status. The indexes stay.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, referenced table, referenced column)
KEYS = (
    ("gifts", "sender_id", "members", "id"),
    ("gifts", "recipient_id", "members", "id"),
    ("gifts", "rule_id", "gift_rules", "id"),
    ("gifts", "entry_id", "journal_entries", "id"),
    ("partner_accruals", "partner_id", "partners", "id"),
    ("redemption_codes", "member_id", "members", "id"),
    ("redemption_codes", "partner_id", "partners", "id"),
    ("partner_holds", "hold_id", "holds", "id"),
    ("partner_holds", "partner_id", "partners", "id"),
    ("partner_holds", "member_id", "members", "id"),
    ("partner_holds", "code_id", "redemption_codes", "id"),
    ("redemptions", "hold_id", "partner_holds", "hold_id"),
    ("redemptions", "partner_id", "partners", "id"),
    ("redemptions", "member_id", "members", "id"),
    ("redemptions", "entry_id", "journal_entries", "id"),
)


def name(table: str, column: str, referred: str) -> str:
    return f"fk_{table}_{column}_{referred}"


def upgrade() -> None:
    for table, column, referred, _ in KEYS:
        op.drop_constraint(name(table, column, referred), table, type_="foreignkey")


def downgrade() -> None:
    for table, column, referred, referred_column in KEYS:
        op.create_foreign_key(name(table, column, referred), table, referred, [column],
                              [referred_column])
