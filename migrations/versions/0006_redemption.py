"""member redemption codes, partner holds, redemptions and refunds (issue 4)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 21:50:00

Reserved in the chain so that work on several capabilities can proceed side by side; filled in
by the change that builds it.
"""

from collections.abc import Sequence

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
