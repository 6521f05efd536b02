"""redemption codes that draw on a family pool

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24 00:10:00

A pool head's redemption code names the pool's account: the partner's hold opened with it
reserves the pool's miles (the head spends from the pool). Null: the member's own account.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("redemption_codes", sa.Column("account_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("redemption_codes", "account_id")
