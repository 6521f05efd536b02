"""members: HOT updates of last_activity_at

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-23 22:20:00

Each credited flight moves the member's last_activity_at. With an index on that column and
full pages, every such update wrote a new entry into each of the table's ten indexes; nothing
reads the column through the index. Dropping it and leaving room on each page lets the update
stay on its page (HOT). The fillfactor applies to pages written from now on; an existing
table takes it fully after VACUUM FULL or pg_repack in a maintenance window.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_members_last_activity_at", table_name="members")
    op.execute("ALTER TABLE members SET (fillfactor = 85)")


def downgrade() -> None:
    op.execute("ALTER TABLE members RESET (fillfactor)")
    op.create_index("ix_members_last_activity_at", "members", ["last_activity_at"])
