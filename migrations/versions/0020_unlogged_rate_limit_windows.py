"""rate-limit windows unlogged

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-24 06:40:00

Every partner request counts itself in its key's one row of ``api_key_windows``. Logged, each
of those commits held the row locked until its WAL record was flushed, so one key's concurrent
requests queued on one fsync after another. Unlogged, a transaction that writes only this
table commits without waiting for a flush (PostgreSQL's RecordTransactionCommit); after a
crash the table is empty, which restarts the current one-minute windows and loses nothing
else. The table is rewritten, a few rows.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE api_key_windows SET UNLOGGED")


def downgrade() -> None:
    op.execute("ALTER TABLE api_key_windows SET LOGGED")
