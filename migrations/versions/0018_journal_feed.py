"""the journal is the feed of miles events: entries record their transaction id

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-24 04:00:00

ledger_post() and the flight importer's batch credit wrote one outbox row per member leg
(``miles.credited`` / ``miles.debited``: a heap row, its primary key and the unpublished
index, a jsonb payload built in SQL, and a later UPDATE by the relay): two of a transfer's six
heap inserts and four of its twelve index entries. The journal already holds every fact those
events carry. Each entry now records the transaction that wrote it (``xid``, an xid8 set by
default to ``pg_current_xact_id()``), and the relay reads the entries of transactions that
can no longer be running, ``xid < pg_snapshot_xmin(pg_current_snapshot())``, beyond its
cursor (``outbox_feeds``) in (xid, id) order, and hands the same events to the consumers
(lms/outbox/feed.py). ledger_post() no longer writes them.

The column is added without a default (no rewrite of a 20 M-row table), then given its
default: existing entries keep a null xid and are not relayed again (their events are in the
outbox already). The partial index on (xid, id) is empty when it is built.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.script import ScriptDirectory

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


LEDGER_POST = r"""
CREATE OR REPLACE FUNCTION ledger_post(
  p_kind text, p_actor_type text, p_actor_id text, p_description text,
  p_source text, p_external_ref text, p_reverses_id bigint, p_hold_id bigint,
  p_effective_at timestamptz, p_details jsonb,
  p_accounts bigint[], p_units text[], p_amounts bigint[],
  p_release_account bigint, p_release_amount bigint,
  p_lot_expires_at timestamptz,
  p_event_topics text[], p_event_payloads jsonb[],
  p_debt_account bigint,
  OUT entry_id bigint, OUT created_at timestamptz,
  OUT accounts bigint[], OUT units text[], OUT posted bigint[])
LANGUAGE plpgsql
-- Plan once per session: re-planning the write statement for each call (what the plan cache
-- does with these array parameters) cost about a fifth of the throughput.
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
  b record;
  n_keys int;
  -- What the lock loop learnt, per (account, unit) in lock order.
  k_account bigint[] := '{}';
  k_unit text[] := '{}';
  k_amount bigint[] := '{}';
  k_release bigint[] := '{}';
  k_kind text[] := '{}';
  k_posted bigint[] := '{}';
  short json;
BEGIN
  posted := '{}';
  -- Lock in one fixed order so that concurrent postings queue instead of deadlocking.
  FOR b IN
    WITH delta AS (
      SELECT l.account_id, l.unit, sum(l.amount)::bigint AS amount
      FROM unnest(p_accounts, p_units, p_amounts) AS l(account_id, unit, amount)
      GROUP BY l.account_id, l.unit
    )
    SELECT bal.account_id, bal.unit, bal.posted, bal.held, bal.allow_negative,
           a.kind, a.status, d.amount,
           CASE WHEN bal.account_id = p_release_account AND bal.unit = 'MILES'
                THEN p_release_amount ELSE 0 END AS release
    FROM balances bal
    JOIN accounts a ON a.id = bal.account_id
    JOIN delta d ON d.account_id = bal.account_id AND d.unit = bal.unit
    ORDER BY bal.account_id, bal.unit
    FOR UPDATE OF bal
  LOOP
    IF b.status <> 'open' AND b.amount <> 0 THEN
      RAISE EXCEPTION 'account % is %', b.account_id, b.status
        USING ERRCODE = 'LD003', DETAIL = b.account_id::text;
    END IF;
    -- Refused: a leg that lowers a member's or pool's available balance below zero. A leg
    -- that does not lower it (a credit, the capture of miles already held) passes even when
    -- the account is in debt, and the clawback account may go into debt.
    IF short IS NULL AND NOT b.allow_negative AND b.amount + b.release < 0
       AND b.posted + b.amount - (b.held - b.release) < 0
       AND b.account_id IS DISTINCT FROM p_debt_account THEN
      short := json_build_object('accountId', b.account_id, 'unit', b.unit,
                                 'available', b.posted - b.held, 'requested', -b.amount);
    END IF;
    k_account := k_account || b.account_id;
    k_unit := k_unit || b.unit::text;
    k_amount := k_amount || b.amount;
    k_release := k_release || b.release;
    k_kind := k_kind || b.kind::text;
    k_posted := k_posted || b.posted;
    posted := posted || (b.posted + b.amount);
  END LOOP;
  -- Every leg on its own (account, unit) and all locked: nothing to count.
  IF cardinality(k_account) < cardinality(p_accounts) THEN
    SELECT count(DISTINCT (l.account_id, l.unit)) INTO n_keys
    FROM unnest(p_accounts, p_units) AS l(account_id, unit);
  ELSE
    n_keys := cardinality(k_account);
  END IF;
  IF cardinality(k_account) <> n_keys THEN
    RAISE EXCEPTION 'no such account among %', p_accounts
      USING ERRCODE = 'LD002', DETAIL = array_to_string(p_accounts, ',');
  END IF;
  IF p_release_account IS NOT NULL AND NOT (p_release_account = ANY (k_account)) THEN
    RAISE EXCEPTION 'the released account % is not posted to', p_release_account
      USING ERRCODE = 'LD002', DETAIL = p_release_account::text;
  END IF;
  -- A concurrent twin that held our locks first has committed by now and this statement
  -- sees it: answer "already applied" rather than the shortfall the twin caused.
  -- Nested IFs: the outer test is a plain expression, so an entry without a reversal or
  -- a reference (a transfer) runs no query for these checks at all.
  IF p_reverses_id IS NOT NULL THEN
    IF EXISTS (SELECT 1 FROM journal_entries WHERE reverses_id = p_reverses_id) THEN
      RAISE EXCEPTION 'entry % is already reversed', p_reverses_id
        USING ERRCODE = 'LD004', DETAIL = p_reverses_id::text;
    END IF;
  END IF;
  IF p_external_ref IS NOT NULL THEN
    IF EXISTS (SELECT 1 FROM journal_entries
               WHERE source = p_source AND external_ref = p_external_ref) THEN
      RAISE EXCEPTION '%:% was already applied', p_source, p_external_ref
        USING ERRCODE = 'LD005', DETAIL = p_external_ref;
    END IF;
  END IF;
  IF short IS NOT NULL THEN
    RAISE EXCEPTION 'account % has % % available, % needed', short->>'accountId',
      short->>'available', short->>'unit', short->>'requested'
      USING ERRCODE = 'LD001', DETAIL = short::text;
  END IF;

  WITH delta AS (
    SELECT * FROM unnest(k_account, k_unit, k_amount, k_release, k_kind, k_posted)
      AS k(account_id, unit, amount, release, kind, posted)
  ),
  entry AS (
    INSERT INTO journal_entries (kind, actor_type, actor_id, description, source,
                                 external_ref, reverses_id, hold_id, effective_at, details)
    VALUES (p_kind, p_actor_type, p_actor_id, p_description, p_source, p_external_ref,
            p_reverses_id, p_hold_id, COALESCE(p_effective_at, now()), p_details)
    RETURNING id, journal_entries.created_at
  ),
  leg AS (
    SELECT l.account_id, l.unit, l.amount, l.ord, d.kind,
           d.posted + sum(l.amount) OVER (PARTITION BY l.account_id, l.unit
                                          ORDER BY l.ord) AS balance_after
    FROM unnest(p_accounts, p_units, p_amounts) WITH ORDINALITY
         AS l(account_id, unit, amount, ord)
    JOIN delta d ON d.account_id = l.account_id AND d.unit = l.unit
  ),
  posting AS (
    INSERT INTO postings (entry_id, account_id, unit, amount, balance_after, created_at)
    SELECT entry.id, leg.account_id, leg.unit, leg.amount, leg.balance_after,
           entry.created_at
    FROM entry, leg ORDER BY leg.ord
  ),
  balance AS (
    UPDATE balances bal SET posted = bal.posted + d.amount, held = bal.held - d.release
    FROM delta d
    WHERE bal.account_id = d.account_id AND bal.unit = d.unit
      AND (d.amount <> 0 OR d.release <> 0)
  ),
  debit AS (
    SELECT account_id, -amount AS amount FROM delta
    WHERE unit = 'MILES' AND kind <> 'system' AND amount < 0
  ),
  candidate AS (
    SELECT l.id, l.remaining, debit.amount,
           sum(l.remaining) OVER (PARTITION BY l.account_id
                                  ORDER BY l.expires_at, l.id) AS running
    FROM lots l JOIN debit ON debit.account_id = l.account_id
    WHERE l.remaining > 0
  ),
  consumed AS (
    UPDATE lots
    SET remaining = lots.remaining - LEAST(c.remaining, c.amount - (c.running - c.remaining))
    FROM candidate c
    WHERE lots.id = c.id AND c.running - c.remaining < c.amount
  ),
  -- Lots hold what the account has, so a credit first pays off any debt and only the rest
  -- opens a lot.
  opened AS (
    INSERT INTO lots (account_id, entry_id, amount, remaining, expires_at, created_at)
    SELECT d.account_id, entry.id, o.amount, o.amount, p_lot_expires_at, entry.created_at
    FROM entry, delta d,
         LATERAL (SELECT GREATEST(d.posted + d.amount, 0) - GREATEST(d.posted, 0)) AS o(amount)
    WHERE d.unit = 'MILES' AND d.kind <> 'system' AND o.amount > 0
  )
  SELECT entry.id, entry.created_at INTO entry_id, created_at FROM entry;

  -- The caller's own events (the ledger's miles.credited / miles.debited are read from the
  -- journal by the relay): most entries (transfers, credits) bring none, and then this
  -- statement is not run at all.
  IF cardinality(p_event_topics) > 0 THEN
    INSERT INTO outbox_events (topic, payload, created_at)
    SELECT e.topic, e.payload || jsonb_build_object('entryId', entry_id), created_at
    FROM unnest(p_event_topics, p_event_payloads) WITH ORDINALITY AS e(topic, payload, ord)
    ORDER BY e.ord;
  END IF;

  accounts := k_account;
  units := k_unit;
END
$fn$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE journal_entries ADD COLUMN xid xid8")
    op.execute("ALTER TABLE journal_entries ALTER COLUMN xid SET DEFAULT pg_current_xact_id()")
    op.create_index("ix_journal_entries_xid", "journal_entries", ["xid", "id"],
                    postgresql_where=sa.text("xid IS NOT NULL"))
    op.create_table(
        "outbox_feeds",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("xid", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_outbox_feeds")),
    )
    # Every entry written from now on has an xid above 0.
    op.execute("INSERT INTO outbox_feeds (name, xid, entry_id) VALUES ('ledger', 0, 0)")
    op.execute(LEDGER_POST)


def downgrade() -> None:
    previous = ScriptDirectory.from_config(op.get_context().config).get_revision("0016")
    assert previous is not None
    op.execute(previous.module.LEDGER_POST)
    op.drop_table("outbox_feeds")
    op.drop_index("ix_journal_entries_xid", table_name="journal_entries")
    op.drop_column("journal_entries", "xid")
