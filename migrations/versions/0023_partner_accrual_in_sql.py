"""a partner accrual as one SQL function: partner_accrue()

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-24 10:00:00

A partner accrual (POST /v1/partner/accruals) sent, after its API key's check, BEGIN, the
key's claim with the facts, ledger_post(), the accrual's row, the stored answer and COMMIT:
six round trips, each with its executor set-up, protocol and context switch on both sides.
``partner_accrue`` does the same unit of work in one statement, run in autocommit (a lone
statement is atomic): one round trip and one commit.

Same rules, same checks in the same order, same locks and side effects as the Python path it
replaces (lms.partners.service before this revision):

1. The Idempotency-Key's claim (``idempotency_claim``, migration 0022); a replay answers the
   stored bytes.
2. ``occurredAt`` without an offset (``p_occurred_at`` NULL) is refused.
3. One query for the facts: the partner with its clearing shards, the member by card with
   the family pool route of its miles (the membership locked FOR NO KEY UPDATE until commit,
   as lms.family.routing documents), the earn rate in force at the purchase.
4. Refusals in this order: partner unknown or without a clearing account, partner not active,
   another currency than the contract's (DETAIL: the contract's), ``occurredAt`` outside
   ``[p_not_before, p_not_after]``, no member with that card, no earn rate.
5. Miles = amount x rate // (minor units per currency unit x 10,000), rounded down. Above
   zero: one entry through ``ledger_post()`` (the partner's clearing shard chosen by member,
   to the pool's account when the member is in one, which then counts as the member's
   contribution), ledger_post()'s own errors raised as they are (LD005: the transaction id
   is already in the journal).
6. The accrual's row; when the partner sent this transaction id before (an accrual of no
   miles has no entry to be caught by), refused.
7. The answer, as the API's encoder writes AccrualOut (compact JSON, keys in the struct's
   order), stored under the key.

Values Python knows cheaply come as arguments: the currency's minor units, the window of
accepted purchase times (from the API's clock), the lots' expiry and ``occurredAt`` written
as the API writes it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# "\:" below is a colon: op.execute() reads the text as SQLAlchemy's text(), where ":0" would
# be a bind parameter.
PARTNER_ACCRUE = r"""
CREATE FUNCTION partner_accrue(
  p_principal text, p_key text, p_request_hash text,
  p_partner_id bigint, p_card_number text, p_partner_txn_id text, p_amount bigint,
  p_currency text, p_category text, p_occurred_at timestamptz, p_occurred_text text,
  p_minor_per_unit bigint, p_not_before timestamptz, p_not_after timestamptz,
  p_lot_expires_at timestamptz,
  OUT status_code integer, OUT response_body bytea, OUT replayed boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
  claim record;
  f record;
  miles bigint;
  credit_account bigint;
  entry_id bigint;
  accounts bigint[];
  posted bigint[];
  balance_after bigint;
BEGIN
  SELECT * INTO claim FROM idempotency_claim(p_principal, p_key, p_request_hash);
  IF NOT claim.claimed THEN
    status_code := claim.status_code;
    response_body := claim.response_body;
    replayed := true;
    RETURN;
  END IF;
  IF p_occurred_at IS NULL THEN
    RAISE EXCEPTION 'occurredAt has no offset' USING ERRCODE = 'PA004';
  END IF;

  SELECT p.name, p.status, p.currency,
         ARRAY(SELECT a.id FROM accounts a
                WHERE a.kind = 'system' AND a.code = 'partner:' || p.id
                ORDER BY a.shard) AS clearing,
         m.id AS member_id, m.account_id, m.card_number,
         route.route_id, route.route_pool_id, route.route_account_id,
         r.id AS rate_id, r.miles_per_unit_bp
    INTO f
    FROM partners p
    LEFT JOIN members m ON m.card_number = p_card_number
    LEFT JOIN LATERAL (
         SELECT fm.id AS route_id, fm.pool_id AS route_pool_id,
                fp.account_id AS route_account_id
           FROM family_members fm JOIN family_pools fp ON fp.id = fm.pool_id
          WHERE fm.member_id = m.id AND fm.left_at IS NULL
            FOR NO KEY UPDATE OF fm) route ON true
    LEFT JOIN LATERAL (
         SELECT id, miles_per_unit_bp FROM partner_earn_rates
          WHERE partner_id = p.id AND category = p_category
            AND effective_from <= p_occurred_at
            AND (effective_to IS NULL OR effective_to > p_occurred_at)
          ORDER BY effective_from DESC LIMIT 1) r ON true
   WHERE p.id = p_partner_id;
  IF NOT FOUND OR cardinality(f.clearing) = 0 THEN
    RAISE EXCEPTION 'partner % not found', p_partner_id USING ERRCODE = 'PA001';
  END IF;
  IF f.status <> 'active' THEN
    RAISE EXCEPTION 'partner % is %', p_partner_id, f.status USING ERRCODE = 'PA002';
  END IF;
  IF p_currency <> f.currency THEN
    RAISE EXCEPTION 'the contract''s currency is %', f.currency
      USING ERRCODE = 'PA003', DETAIL = f.currency;
  END IF;
  IF p_occurred_at > p_not_after OR p_occurred_at < p_not_before THEN
    RAISE EXCEPTION 'occurredAt % is out of range', p_occurred_at USING ERRCODE = 'PA004';
  END IF;
  IF f.member_id IS NULL THEN
    RAISE EXCEPTION 'no member with this card' USING ERRCODE = 'PA005';
  END IF;
  IF f.rate_id IS NULL THEN
    RAISE EXCEPTION 'no rate for % at %', p_category, p_occurred_at USING ERRCODE = 'PA006';
  END IF;

  -- In numeric: an amount of up to 10^12 times a rate of up to 10^8 overflows bigint.
  miles := div(p_amount::numeric * f.miles_per_unit_bp, p_minor_per_unit * 10000)::bigint;
  IF miles > 0 THEN
    credit_account := COALESCE(f.route_account_id, f.account_id);
    SELECT e.entry_id, e.accounts, e.posted INTO entry_id, accounts, posted
      FROM ledger_post(
        'accrual', 'partner', p_partner_id::text, f.name || ': ' || p_category,
        'partner:' || p_partner_id, p_partner_txn_id, NULL, NULL, p_occurred_at,
        jsonb_build_object('partnerTxnId', p_partner_txn_id, 'amount', p_amount,
                           'currency', p_currency, 'category', p_category,
                           'rateId', f.rate_id, 'memberId', f.member_id)
          || CASE WHEN f.route_id IS NULL THEN '{}'::jsonb
                  ELSE jsonb_build_object('familyPoolId', f.route_pool_id) END,
        ARRAY[f.clearing[f.member_id % cardinality(f.clearing) + 1], credit_account],
        ARRAY['MILES', 'MILES'], ARRAY[-miles, miles], NULL, NULL, p_lot_expires_at,
        '{}'::text[], '{}'::jsonb[], NULL) e;
    IF f.route_id IS NOT NULL THEN
      UPDATE family_members SET contributed = contributed + miles WHERE id = f.route_id;
    ELSE
      -- A pool's balance is not the partner's business: only the member's own is answered.
      balance_after := posted[array_position(accounts, f.account_id)];
    END IF;
  END IF;

  INSERT INTO partner_accruals (partner_id, partner_txn_id, member_id, amount_minor,
                                currency, category, rate_id, miles, occurred_at, entry_id)
  VALUES (p_partner_id, p_partner_txn_id, f.member_id, p_amount, p_currency, p_category,
          f.rate_id, miles, p_occurred_at, entry_id)
  ON CONFLICT ON CONSTRAINT uq_partner_accruals_partner_txn DO NOTHING;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'partner % sent % before', p_partner_id, p_partner_txn_id
      USING ERRCODE = 'PA007';
  END IF;

  status_code := 201;
  response_body := convert_to(
    '{"id":' || COALESCE(entry_id::text, 'null')
    || ',"cardNumber":' || to_json(f.card_number)::text
    || ',"partnerTxnId":' || to_json(p_partner_txn_id)::text
    || ',"miles":' || miles
    || ',"amount":' || p_amount
    || ',"currency":' || to_json(p_currency)::text
    || ',"category":' || to_json(p_category)::text
    || ',"occurredAt":' || to_json(p_occurred_text)::text
    || ',"reversedAmount"\:0,"reversedMiles"\:0'
    || ',"balanceAfter":' || COALESCE(balance_after::text, 'null') || '}', 'UTF8');
  replayed := false;
  PERFORM idempotency_answer(p_principal, p_key, status_code, response_body);
END
$fn$"""


def upgrade() -> None:
    op.execute(PARTNER_ACCRUE)


def downgrade() -> None:
    op.execute("DROP FUNCTION partner_accrue(text, text, text, bigint, text, text, bigint, "
               "text, text, timestamptz, text, bigint, timestamptz, timestamptz, "
               "timestamptz)")
