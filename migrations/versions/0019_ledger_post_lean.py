"""ledger_post(): one locking statement instead of a cursor loop, and lot consumption that
reads the first open lot instead of all of them

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-24 07:00:00

Same signature, same rules, same errors in the same order. Per call it does less:

- The balance rows are locked and read by one ``SELECT ... INTO`` that aggregates what the
  checks need (the first closed account, the first shortfall, the key arrays), instead of a
  ``FOR`` loop over a cursor that appended to seven arrays row by row.
- A debit used to read every lot of the debited account (a window function over all of them,
  open or used up, each fetched from the heap) to find the few it consumes. Almost every
  debit is covered by the account's first open lot: the write statement now reads that one
  lot (``LIMIT 1`` along ``ix_lots_account_expiry``) and consumes from it. When it does not
  cover the debit (a debit larger than the oldest lot, or an account in debt with none), a
  second statement, run only then, consumes oldest expiry first across all open lots as
  before. The write statement's plan no longer carries the window, its sort and the join of
  every lot, which every call paid for at executor start-up whether it ran them or not.

Measured on the bench's shape (member-to-member transfers, ~10 lots per member): see
docs/ledger.md, "What changed".
"""

from collections.abc import Sequence

from alembic import op
from alembic.script import ScriptDirectory

revision: str = "0019"
down_revision: str | None = "0018"
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
  n_keys int;
  -- Per (account, unit) in lock order (``accounts``, ``units`` and ``posted`` are the OUT
  -- parameters): the entry's net amount, the balance before it, whether negative balances
  -- are allowed (system accounts only), and the locked row's ctid.
  k_amount bigint[];
  k_posted bigint[];
  k_system boolean[];
  k_row tid[];
  closed json;
  short json;
  -- Some debit that its account's first open lot does not cover.
  uncovered boolean;
BEGIN
  -- Lock in one fixed order so that concurrent postings queue instead of deadlocking. The
  -- aggregates read the locked rows in that order: the first closed account and the first
  -- shortfall are the ones a row-by-row check would have met first.
  SELECT COALESCE(array_agg(s.account_id), '{}'), COALESCE(array_agg(s.unit), '{}'),
         array_agg(s.amount), array_agg(s.posted), array_agg(s.allow_negative),
         array_agg(s.ctid), COALESCE(array_agg(s.posted + s.amount), '{}'),
         (array_agg(json_build_object('accountId', s.account_id, 'status', s.status))
            FILTER (WHERE s.status <> 'open' AND s.amount <> 0))[1],
         -- Refused: a leg that lowers a member's or pool's available balance below zero. A
         -- leg that does not lower it (a credit, the capture of miles already held) passes
         -- even when the account is in debt, and the clawback account may go into debt.
         (array_agg(json_build_object('accountId', s.account_id, 'unit', s.unit,
                                      'available', s.posted - s.held,
                                      'requested', -s.amount))
            FILTER (WHERE NOT s.allow_negative AND s.amount + s.release < 0
                    AND s.posted + s.amount - (s.held - s.release) < 0
                    AND s.account_id IS DISTINCT FROM p_debt_account))[1]
  INTO accounts, units, k_amount, k_posted, k_system, k_row, posted, closed, short
  FROM (
    WITH delta AS (
      SELECT l.account_id, l.unit, sum(l.amount)::bigint AS amount
      FROM unnest(p_accounts, p_units, p_amounts) AS l(account_id, unit, amount)
      GROUP BY l.account_id, l.unit
    )
    SELECT bal.ctid, bal.account_id, bal.unit::text AS unit, bal.posted, bal.held,
           bal.allow_negative, a.status::text AS status, d.amount,
           CASE WHEN bal.account_id = p_release_account AND bal.unit = 'MILES'
                THEN p_release_amount ELSE 0 END AS release
    FROM balances bal
    JOIN accounts a ON a.id = bal.account_id
    JOIN delta d ON d.account_id = bal.account_id AND d.unit = bal.unit
    ORDER BY bal.account_id, bal.unit
    FOR UPDATE OF bal
  ) s;
  IF closed IS NOT NULL THEN
    RAISE EXCEPTION 'account % is %', closed->>'accountId', closed->>'status'
      USING ERRCODE = 'LD003', DETAIL = closed->>'accountId';
  END IF;
  -- Every leg on its own (account, unit) and all locked: nothing to count.
  IF cardinality(accounts) < cardinality(p_accounts) THEN
    SELECT count(DISTINCT (l.account_id, l.unit)) INTO n_keys
    FROM unnest(p_accounts, p_units) AS l(account_id, unit);
  ELSE
    n_keys := cardinality(accounts);
  END IF;
  IF cardinality(accounts) <> n_keys THEN
    RAISE EXCEPTION 'no such account among %', p_accounts
      USING ERRCODE = 'LD002', DETAIL = array_to_string(p_accounts, ',');
  END IF;
  IF p_release_account IS NOT NULL AND NOT (p_release_account = ANY (accounts)) THEN
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
    SELECT k.*, CASE WHEN k.account_id = p_release_account AND k.unit = 'MILES'
                     THEN p_release_amount ELSE 0 END AS release
    FROM unnest(accounts, units, k_amount, k_posted, k_system, k_row)
      AS k(account_id, unit, amount, posted, system, row_id)
  ),
  entry AS (
    INSERT INTO journal_entries (kind, actor_type, actor_id, description, source,
                                 external_ref, reverses_id, hold_id, effective_at, details)
    VALUES (p_kind, p_actor_type, p_actor_id, p_description, p_source, p_external_ref,
            p_reverses_id, p_hold_id, COALESCE(p_effective_at, now()), p_details)
    RETURNING id, journal_entries.created_at
  ),
  leg AS (
    SELECT l.account_id, l.unit, l.amount, l.ord,
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
  -- The rows we locked, by their ctid: nobody else can have moved them since.
  balance AS (
    UPDATE balances bal SET posted = bal.posted + d.amount, held = bal.held - d.release
    FROM delta d
    WHERE bal.ctid = d.row_id AND (d.amount <> 0 OR d.release <> 0)
  ),
  -- Each debited member or pool account's first open lot (oldest expiry, then oldest lot;
  -- none when the account has no open lot).
  head AS (
    SELECT d.account_id, -d.amount AS amount, f.id, f.remaining
    FROM delta d LEFT JOIN LATERAL (
      SELECT l.id, l.remaining FROM lots l
      WHERE l.account_id = d.account_id AND l.remaining > 0
      ORDER BY l.expires_at, l.id LIMIT 1) f ON true
    WHERE d.unit = 'MILES' AND NOT d.system AND d.amount < 0
  ),
  consumed AS (
    UPDATE lots SET remaining = lots.remaining - head.amount
    FROM head WHERE lots.id = head.id AND head.remaining >= head.amount
  ),
  -- Lots hold what the account has, so a credit first pays off any debt and only the rest
  -- opens a lot.
  opened AS (
    INSERT INTO lots (account_id, entry_id, amount, remaining, expires_at, created_at)
    SELECT d.account_id, entry.id, o.amount, o.amount, p_lot_expires_at, entry.created_at
    FROM entry, delta d,
         LATERAL (SELECT GREATEST(d.posted + d.amount, 0) - GREATEST(d.posted, 0)) AS o(amount)
    WHERE d.unit = 'MILES' AND NOT d.system AND o.amount > 0
  )
  SELECT entry.id, entry.created_at,
         EXISTS (SELECT 1 FROM head WHERE head.remaining IS NULL OR head.remaining < head.amount)
  INTO entry_id, created_at, uncovered FROM entry;

  -- The debits their first lot did not cover (the write statement left their lots alone):
  -- consume open lots oldest expiry first, as far as they go. An account in debt may have
  -- none. Only debited accounts are read, and a debited account opened no lot above.
  IF uncovered THEN
    WITH debit AS (
      SELECT k.account_id, -k.amount AS amount
      FROM unnest(accounts, units, k_amount, k_system) AS k(account_id, unit, amount, system)
      WHERE k.unit = 'MILES' AND NOT k.system AND k.amount < 0
    ),
    candidate AS (
      SELECT l.id, l.remaining, debit.amount,
             sum(l.remaining) OVER (PARTITION BY l.account_id
                                    ORDER BY l.expires_at, l.id) AS running
      FROM lots l JOIN debit ON debit.account_id = l.account_id
      WHERE l.remaining > 0
    )
    UPDATE lots
    SET remaining = lots.remaining - LEAST(c.remaining, c.amount - (c.running - c.remaining))
    FROM candidate c
    WHERE lots.id = c.id AND c.running - c.remaining < c.amount;
  END IF;

  -- The caller's own events (the ledger's miles.credited / miles.debited are read from the
  -- journal by the relay): most entries (transfers, credits) bring none, and then this
  -- statement is not run at all.
  IF cardinality(p_event_topics) > 0 THEN
    INSERT INTO outbox_events (topic, payload, created_at)
    SELECT e.topic, e.payload || jsonb_build_object('entryId', entry_id), created_at
    FROM unnest(p_event_topics, p_event_payloads) WITH ORDINALITY AS e(topic, payload, ord)
    ORDER BY e.ord;
  END IF;
END
$fn$
"""


def upgrade() -> None:
    op.execute(LEDGER_POST)


def downgrade() -> None:
    previous = ScriptDirectory.from_config(op.get_context().config).get_revision("0018")
    assert previous is not None
    op.execute(previous.module.LEDGER_POST)
