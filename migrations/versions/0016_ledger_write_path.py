"""fewer index writes per posting: postings keyed by (entry_id, id)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24 01:00:00

Every posting wrote three index entries: the primary key on ``id``, ``ix_postings_entry_id``
and ``ix_postings_account_unit_id``. Nothing reads a posting by its id alone; every reader of
an entry's legs (reversals, ``lms ledger verify``, settlement lines, the call centre) looks
them up by entry. The primary key becomes (entry_id, id) and serves those lookups, and the
entry index goes: one index write less per leg, six per flown coupon.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("pk_postings", "postings", type_="primary")
    op.create_primary_key("pk_postings", "postings", ["entry_id", "id"])
    op.drop_index("ix_postings_entry_id", table_name="postings")


def downgrade() -> None:
    op.create_index("ix_postings_entry_id", "postings", ["entry_id"], unique=False)
    op.drop_constraint("pk_postings", "postings", type_="primary")
    op.create_primary_key("pk_postings", "postings", ["id"])
