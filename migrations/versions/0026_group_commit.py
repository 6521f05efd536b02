"""group commit: partner_accrue_batch() and gift_send_batch()

Revision ID: 0026
Revises: 0025
Create Date: 2026-11-24 12:30:00

A partner accrual or a gift is one call of partner_accrue() or gift_send() (0023, 0024), each
its own transaction. Under load that is one commit, one snapshot and one protocol exchange per
write, and thirty-odd backends contending for two cores, for WAL insertion and for the hot
balance rows: on 1,000,000 members calling partner_accrue() alone cost 0.56 ms of server CPU
from one client and 0.80 ms from 32 (pgbench, 2026-11-24), 0.44 ms in transactions of 16 calls.

The API now sends the calls that arrive while one is in flight together (lms.group_commit):
``<function>_batch`` takes each argument as an array, one element per call, and runs the
calls in order, each in a subtransaction of its own (a BEGIN ... EXCEPTION block), so that a
refusal or an error of one call rolls back that call alone and comes back as its row's
``error_code``, ``error_message`` and ``error_detail``; the others commit together. Each call
keeps its own rules, checks, claim of its Idempotency-Key and answer: the function is the
same. Two calls of one batch under the same key: the second sees the first's stored answer
(replayed), as it would one statement later.

Deadlocks: one call locks its rows in ledger order, but a batch holds the locks of its earlier
calls while taking those of the later ones, in no global order. So a batch first takes every
lock its calls will take on shared rows, in the global orders (lms.ledger: balance rows by
account and unit; lms.gifts: the members' advisory locks by key, before any balance row):
the member and family pool accounts, the partner's clearing shard, the fee shards. What a
batch cannot know beforehand (a pool joined meanwhile) is left to PostgreSQL's deadlock
check, which fails that call alone (40P01; the API reruns it).

The partner's clearing shard is now chosen by the backend (``pg_backend_pid()``) instead of by
member: the calls of one batch then share one shard, and concurrent batches, on other
backends, mostly use others, instead of every batch locking most of the sixteen.

Subtransactions: a backend keeps up to 64 subtransaction ids in shared memory before other
backends' snapshots must read pg_subtrans; lms.group_commit sends at most 32 calls a batch.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The first key of the gifts' advisory locks (migration 0024, lms.db.advisory_keys).
GIFT_LOCK_NAMESPACE = 0x474946

PARTNER_ACCRUE_ARGS = (
    ("p_principal", "text"), ("p_key", "text"), ("p_request_hash", "text"),
    ("p_partner_id", "bigint"), ("p_card_number", "text"), ("p_partner_txn_id", "text"),
    ("p_amount", "bigint"), ("p_currency", "text"), ("p_category", "text"),
    ("p_occurred_at", "timestamptz"), ("p_occurred_text", "text"),
    ("p_minor_per_unit", "bigint"), ("p_not_before", "timestamptz"),
    ("p_not_after", "timestamptz"), ("p_lot_expires_at", "timestamptz"))

GIFT_SEND_ARGS = (
    ("p_principal", "text"), ("p_key", "text"), ("p_request_hash", "text"),
    ("p_sender_id", "bigint"), ("p_card_number", "text"), ("p_name_key", "text"),
    ("p_miles", "bigint"), ("p_message", "text"), ("p_now", "timestamptz"),
    ("p_created_at", "text"), ("p_default_terms", "bigint[]"), ("p_fee_account", "bigint"),
    ("p_lot_expires_at", "timestamptz"))

# The MILES balance rows of the batch's accounts (both functions post MILES alone), locked in
# ledger order (lms.ledger LOCK_BALANCES: by account, then unit).
LOCK_ACCOUNTS = """
  PERFORM 1 FROM balances b
   WHERE b.account_id IN ({accounts}) AND b.unit = 'MILES'
   ORDER BY b.account_id, b.unit
     FOR UPDATE OF b;"""

# The members of the cards, and the pools their miles go to.
CARD_ACCOUNTS = """
      SELECT m.account_id FROM members m WHERE m.card_number = ANY(p_card_number)
      UNION ALL
      SELECT fp.account_id FROM members m
        JOIN family_members fm ON fm.member_id = m.id AND fm.left_at IS NULL
        JOIN family_pools fp ON fp.id = fm.pool_id
       WHERE m.card_number = ANY(p_card_number)"""

ACCRUAL_LOCKS = LOCK_ACCOUNTS.format(accounts=CARD_ACCOUNTS + """
      UNION ALL
      SELECT s.clearing[pg_backend_pid() % cardinality(s.clearing) + 1]
        FROM (SELECT DISTINCT unnest(p_partner_id) AS id) p,
             LATERAL (SELECT ARRAY(SELECT a.id FROM accounts a
                                    WHERE a.kind = 'system' AND a.code = 'partner:' || p.id
                                    ORDER BY a.shard) AS clearing) s
       WHERE cardinality(s.clearing) > 0""")

# The members' advisory locks first, sorted, as gift_send() takes its two.
GIFT_LOCKS = """
  PERFORM count(pg_advisory_xact_lock(""" + str(GIFT_LOCK_NAMESPACE) + """, k))
     FROM unnest(ARRAY(
          SELECT DISTINCT (i % 2147483648)::int
            FROM unnest(p_sender_id || ARRAY(SELECT m.id FROM members m
                                              WHERE m.card_number = ANY(p_card_number))) i
           WHERE i IS NOT NULL ORDER BY 1)) AS k;""" + LOCK_ACCOUNTS.format(accounts="""
      SELECT m.account_id FROM members m WHERE m.id = ANY(p_sender_id)
      UNION ALL
      SELECT m.account_id FROM members m WHERE m.card_number = ANY(p_card_number)
      UNION ALL
      SELECT unnest(p_fee_account)""")


def batch_function(name: str, args: Sequence[tuple[str, str]], locks: str,
                   shared: Sequence[str] = ()) -> str:
    """``<name>_batch``: each argument as an array of the calls' values, but those in
    ``shared``, the same for every call and given once (an array argument would otherwise
    need a two-dimensional array)."""
    params = ", ".join(f"{a} {t}" if a in shared else f"{a} {t}[]" for a, t in args)
    call = ", ".join(a if a in shared else f"{a}[i]" for a, _ in args)
    first = next(a for a, _ in args if a not in shared)
    return f"""
CREATE FUNCTION {name}_batch({params})
RETURNS TABLE (status_code integer, response_body bytea, replayed boolean,
               error_code text, error_message text, error_detail text)
LANGUAGE plpgsql AS $fn$
DECLARE
  r record;
BEGIN
  {locks}
  FOR i IN 1 .. coalesce(cardinality({first}), 0) LOOP
    BEGIN
      SELECT * INTO r FROM {name}({call});
      status_code := r.status_code;
      response_body := r.response_body;
      replayed := r.replayed;
      error_code := NULL;
      error_message := NULL;
      error_detail := NULL;
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS error_code = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                              error_detail = PG_EXCEPTION_DETAIL;
      status_code := NULL;
      response_body := NULL;
      replayed := NULL;
    END;
    RETURN NEXT;
  END LOOP;
END
$fn$"""


def signature(name: str, args: Sequence[tuple[str, str]], shared: Sequence[str] = ()) -> str:
    return f"{name}_batch(" + ", ".join(t if a in shared else f"{t}[]" for a, t in args) + ")"


BY_MEMBER = "f.clearing[f.member_id % cardinality(f.clearing) + 1]"
BY_BACKEND = "f.clearing[pg_backend_pid() % cardinality(f.clearing) + 1]"
PARTNER_ACCRUE = ("partner_accrue(text, text, text, bigint, text, text, bigint, text, text, "
                  "timestamptz, text, bigint, timestamptz, timestamptz, timestamptz)")


def choose_clearing_shard(old: str, new: str) -> str:
    """partner_accrue() redefined with its clearing shard chosen by ``new`` instead of
    ``old``: the function's text as the server has it, with that one expression replaced,
    so that this migration does not carry a second copy of the whole function."""
    return f"""
DO $do$
DECLARE
  definition text := pg_get_functiondef('{PARTNER_ACCRUE}'::regprocedure);
BEGIN
  IF position('{old}' IN definition) = 0 THEN
    RAISE EXCEPTION 'partner_accrue() does not choose its clearing shard as this expects';
  END IF;
  EXECUTE replace(definition, '{old}', '{new}');
END
$do$"""


def upgrade() -> None:
    op.execute(choose_clearing_shard(BY_MEMBER, BY_BACKEND))
    op.execute(batch_function("partner_accrue", PARTNER_ACCRUE_ARGS, ACCRUAL_LOCKS))
    op.execute(batch_function("gift_send", GIFT_SEND_ARGS, GIFT_LOCKS,
                              shared=("p_default_terms",)))


def downgrade() -> None:
    op.execute("DROP FUNCTION " + signature("gift_send", GIFT_SEND_ARGS, ("p_default_terms",)))
    op.execute("DROP FUNCTION " + signature("partner_accrue", PARTNER_ACCRUE_ARGS))
    op.execute(choose_clearing_shard(BY_BACKEND, BY_MEMBER))
