"""the system accounts by an index of their own

Revision ID: 0027
Revises: 0026
Create Date: 2026-11-24 12:50:00

Every API and worker process reads the programme's system accounts (issuance, breakage, fees,
the partners' clearing shards: a few hundred rows) once, when it starts or at its first write
that needs them (``SystemAccounts.load``): ``WHERE kind = 'system'``, which no index served,
so each read scanned every account: 70 ms at 1,000,000 members on a quiet server, 300 ms under
load (pg_stat_statements, 2026-11-24), and about twenty times that at 20,000,000. A partial
index holds those rows alone.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_accounts_system ON accounts (code, shard) "
               "WHERE kind = 'system'")


def downgrade() -> None:
    op.execute("DROP INDEX ix_accounts_system")
