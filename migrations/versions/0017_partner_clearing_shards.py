"""partner clearing accounts split into shards

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-24 04:00:00

Every accrual of a partner debited its one clearing account, so a partner's concurrent
accruals queued on one balance row. The clearing account becomes shards 0-15 of the system
account code ``partner:<id>`` (lms.partners.clearing); shard 0 is the account the partner had,
and ``partners.clearing_account_id`` keeps naming it. This opens shards 1-15 of every partner
whose clearing account is open: a few rows per partner, no table rewritten.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHARDS = 16


def upgrade() -> None:
    op.execute(f"""
        INSERT INTO accounts (kind, code, shard, allow_negative)
        SELECT 'system', 'partner:' || p.id, s, true
          FROM partners p CROSS JOIN generate_series(1, {SHARDS - 1}) AS s
         WHERE p.clearing_account_id IS NOT NULL
        ON CONFLICT (code, shard) DO NOTHING""")
    op.execute("""
        INSERT INTO balances (account_id, unit, allow_negative)
        SELECT a.id, u, true
          FROM accounts a
         CROSS JOIN unnest(ARRAY['MILES', 'STATUS_MILES', 'SEGMENTS']) AS u
         WHERE a.kind = 'system' AND a.code LIKE 'partner:%' AND a.shard > 0
           AND NOT EXISTS (SELECT 1 FROM balances b WHERE b.account_id = a.id AND b.unit = u)""")


def downgrade() -> None:
    # Only shards nothing was ever posted to can go; a shard with postings stays (the journal
    # is never deleted from), and the code before this revision would not read it.
    op.execute("""
        CREATE TEMPORARY TABLE unused_shards ON COMMIT DROP AS
        SELECT a.id FROM accounts a
         WHERE a.kind = 'system' AND a.code LIKE 'partner:%' AND a.shard > 0
           AND NOT EXISTS (SELECT 1 FROM postings p WHERE p.account_id = a.id)
           AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.account_id = a.id)""")
    op.execute("DELETE FROM balances WHERE account_id IN (SELECT id FROM unused_shards)")
    op.execute("DELETE FROM accounts WHERE id IN (SELECT id FROM unused_shards)")
