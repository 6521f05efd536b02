"""partner statements and webhook deliveries (issue 4)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 21:50:00

Reserved in the chain so that work on several capabilities can proceed side by side; filled in
by the change that builds it.
"""

from collections.abc import Sequence

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
