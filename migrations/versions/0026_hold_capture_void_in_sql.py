"""a partner's capture and void of a redemption hold as SQL functions:
partner_hold_capture() and partner_hold_void()

Revision ID: 0026
Revises: 0022
Create Date: 2026-11-24 10:00:00

A capture (POST /v1/partner/holds/{id}/capture) sent, after its API key's check, BEGIN, the
key's claim, the hold's facts, the hold's lock, ledger_post(), the hold's close, its event, the
redemption's row, the stored answer and COMMIT: eleven round trips, each with its executor
set-up, protocol and context switch on both sides; a void as many. Each is now one statement,
run in autocommit (a lone statement is atomic): one round trip and one commit.

Same rules, checks in the same order, locks and side effects as the Python path they replace
(lms.redemption.service.HoldWriteService and lms.ledger.service.Ledger before this revision):

1. The Idempotency-Key's claim (``idempotency_claim``, migration 0022); a replay answers the
   stored bytes.
2. ``partner_hold_pending``: the partner with its clearing shards and the partner's own hold
   (another partner's hold is not found), then the hold locked FOR UPDATE. Refusals in this
   order: partner unknown or without a clearing account (RH001), partner not active (RH002),
   no such hold of this partner (RH003), hold not pending (RH004, DETAIL: its status), hold
   due (RH005: left for the expiry job or the next read to release).
3. Capture: all that is held when no miles are given; more than is held is refused (RH006,
   DETAIL: {"requested", "held"}). One entry through ``ledger_post()`` (member or pool
   account to the partner's clearing shard chosen by member, releasing the hold in the same
   entry), whose errors are raised as they are; the hold closed as captured; the event
   ``redemption.captured``; the redemption's row.
   Void: the held miles released on the account's balance row (the UPDATE takes the row lock
   the ledger took before it), the hold closed as voided; the event ``hold.voided``.
4. The answer, as the API's encoder writes RedemptionOut (capture, 201) or HoldOut (void,
   200): compact JSON, keys in the struct's order, datetimes as msgspec writes them
   (``api_datetime``), stored under the key.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# "\:" below is a colon: op.execute() reads the text as SQLAlchemy's text(), where ":MI"
# would be a bind parameter.

# A timestamptz as msgspec encodes an aware datetime in UTC: seconds, then six digits of
# microseconds only when there are any, then "Z".
API_DATETIME = r"""
CREATE FUNCTION api_datetime(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $fn$
  SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24\:MI\:SS')
         || CASE WHEN date_trunc('second', t) = t THEN ''
                 ELSE to_char(t AT TIME ZONE 'UTC', '.US') END
         || 'Z'
$fn$"""

PARTNER_HOLD_PENDING = r"""
CREATE FUNCTION partner_hold_pending(
  p_partner_id bigint, p_hold_id bigint,
  OUT partner_name text, OUT clearing bigint[], OUT member_id bigint,
  OUT order_reference text, OUT cash_amount bigint, OUT currency text,
  OUT value_per_mile_milli_minor bigint, OUT account_id bigint, OUT amount bigint,
  OUT expires_at timestamptz, OUT created_at timestamptz, OUT reference text)
LANGUAGE plpgsql AS $fn$
DECLARE
  partner_status text;
  partner_hold bigint;
  hold_status text;
BEGIN
  SELECT p.name, p.status,
         ARRAY(SELECT a.id FROM accounts a
                WHERE a.kind = 'system' AND a.code = 'partner\:' || p.id
                ORDER BY a.shard),
         h.hold_id, h.member_id, h.order_reference, h.cash_amount, h.currency,
         h.value_per_mile_milli_minor
    INTO partner_name, partner_status, clearing, partner_hold, member_id, order_reference,
         cash_amount, currency, value_per_mile_milli_minor
    FROM partners p
    LEFT JOIN partner_holds h ON h.partner_id = p.id AND h.hold_id = p_hold_id
   WHERE p.id = p_partner_id;
  IF NOT FOUND OR cardinality(clearing) = 0 THEN
    RAISE EXCEPTION 'partner % not found', p_partner_id USING ERRCODE = 'RH001';
  END IF;
  IF partner_status <> 'active' THEN
    RAISE EXCEPTION 'partner % is %', p_partner_id, partner_status USING ERRCODE = 'RH002';
  END IF;
  IF partner_hold IS NULL THEN
    RAISE EXCEPTION 'hold % not found', p_hold_id USING ERRCODE = 'RH003';
  END IF;
  SELECT h.account_id, h.amount, h.status, h.expires_at, h.created_at, h.reference
    INTO account_id, amount, hold_status, expires_at, created_at, reference
    FROM holds h WHERE h.id = p_hold_id
     FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'hold % not found', p_hold_id USING ERRCODE = 'RH003';
  END IF;
  IF hold_status <> 'pending' THEN
    RAISE EXCEPTION 'hold % is %', p_hold_id, hold_status
      USING ERRCODE = 'RH004', DETAIL = hold_status;
  END IF;
  IF expires_at <= now() THEN
    RAISE EXCEPTION 'hold % has expired', p_hold_id USING ERRCODE = 'RH005';
  END IF;
END
$fn$"""

PARTNER_HOLD_CAPTURE = r"""
CREATE FUNCTION partner_hold_capture(
  p_principal text, p_key text, p_request_hash text,
  p_partner_id bigint, p_hold_id bigint, p_miles bigint,
  OUT status_code integer, OUT response_body bytea, OUT replayed boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
  claim record;
  f record;
  take bigint;
  entry bigint;
  redemption record;
BEGIN
  SELECT * INTO claim FROM idempotency_claim(p_principal, p_key, p_request_hash);
  IF NOT claim.claimed THEN
    status_code := claim.status_code;
    response_body := claim.response_body;
    replayed := true;
    RETURN;
  END IF;
  SELECT * INTO f FROM partner_hold_pending(p_partner_id, p_hold_id);
  take := COALESCE(p_miles, f.amount);
  IF take > f.amount THEN
    RAISE EXCEPTION '% requested, % held', take, f.amount
      USING ERRCODE = 'RH006',
            DETAIL = json_build_object('requested', take, 'held', f.amount)::text;
  END IF;
  -- No lot expiry: a capture credits a system account only, which never gets a lot.
  SELECT e.entry_id INTO entry
    FROM ledger_post(
      'capture', 'partner', p_partner_id::text, f.partner_name || '\: order '
        || f.order_reference,
      NULL, NULL, NULL, p_hold_id, NULL,
      jsonb_build_object('partnerId', p_partner_id, 'holdId', p_hold_id,
                         'orderReference', f.order_reference, 'cashAmount', f.cash_amount,
                         'currency', f.currency),
      ARRAY[f.account_id, f.clearing[f.member_id % cardinality(f.clearing) + 1]],
      ARRAY['MILES', 'MILES'], ARRAY[-take, take], f.account_id, f.amount, NULL,
      NULL, NULL, NULL) e;
  UPDATE holds SET status = 'captured', captured = take, entry_id = entry, closed_at = now()
   WHERE id = p_hold_id;
  INSERT INTO outbox_events (topic, payload)
  VALUES ('redemption.captured',
          jsonb_build_object('holdId', p_hold_id, 'accountId', f.account_id,
                             'amount', f.amount, 'captured', take, 'status', 'captured',
                             'reference', f.reference));
  INSERT INTO redemptions (hold_id, partner_id, member_id, entry_id, order_reference, miles,
                           cash_amount, currency, value_per_mile_milli_minor)
  VALUES (p_hold_id, p_partner_id, f.member_id, entry, f.order_reference, take,
          f.cash_amount, f.currency, f.value_per_mile_milli_minor)
  RETURNING id, refunded_miles, created_at INTO redemption;

  status_code := 201;
  response_body := convert_to(
    '{"id":' || redemption.id
    || ',"holdId":' || p_hold_id
    || ',"orderReference":' || to_json(f.order_reference)::text
    || ',"miles":' || take
    || ',"refundedMiles":' || redemption.refunded_miles
    || ',"refundableMiles":' || (take - redemption.refunded_miles)
    || ',"cashAmount":' || f.cash_amount
    || ',"currency":' || to_json(f.currency)::text
    || ',"valuePerMileMilliMinor":' || f.value_per_mile_milli_minor
    -- What the miles paid for, rounded down (lms.redemption.pricing.miles_worth).
    || ',"milesValue":' || div(take::numeric * f.value_per_mile_milli_minor, 1000)
    || ',"createdAt":"' || api_datetime(redemption.created_at)
    || '","refunds"\:[]}', 'UTF8');
  replayed := false;
  PERFORM idempotency_answer(p_principal, p_key, status_code, response_body);
END
$fn$"""

PARTNER_HOLD_VOID = r"""
CREATE FUNCTION partner_hold_void(
  p_principal text, p_key text, p_request_hash text,
  p_partner_id bigint, p_hold_id bigint,
  OUT status_code integer, OUT response_body bytea, OUT replayed boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
  claim record;
  f record;
  closed timestamptz;
BEGIN
  SELECT * INTO claim FROM idempotency_claim(p_principal, p_key, p_request_hash);
  IF NOT claim.claimed THEN
    status_code := claim.status_code;
    response_body := claim.response_body;
    replayed := true;
    RETURN;
  END IF;
  SELECT * INTO f FROM partner_hold_pending(p_partner_id, p_hold_id);
  UPDATE balances SET held = held - f.amount
   WHERE balances.account_id = f.account_id AND balances.unit = 'MILES';
  UPDATE holds SET status = 'voided', captured = 0, entry_id = NULL, closed_at = now()
   WHERE id = p_hold_id
  RETURNING holds.closed_at INTO closed;
  INSERT INTO outbox_events (topic, payload)
  VALUES ('hold.voided',
          jsonb_build_object('holdId', p_hold_id, 'accountId', f.account_id,
                             'amount', f.amount, 'captured', 0, 'status', 'voided',
                             'reference', f.reference, 'actor', 'partner'));

  status_code := 200;
  response_body := convert_to(
    '{"id":' || p_hold_id
    || ',"status":"voided","miles":' || f.amount
    || ',"capturedMiles"\:0,"cashAmount":' || f.cash_amount
    || ',"currency":' || to_json(f.currency)::text
    || ',"orderReference":' || to_json(f.order_reference)::text
    || ',"expiresAt":"' || api_datetime(f.expires_at)
    || '","createdAt":"' || api_datetime(f.created_at)
    || '","closedAt":"' || api_datetime(closed)
    || '","redemptionId"\:null}', 'UTF8');
  replayed := false;
  PERFORM idempotency_answer(p_principal, p_key, status_code, response_body);
END
$fn$"""


def upgrade() -> None:
    op.execute(API_DATETIME)
    op.execute(PARTNER_HOLD_PENDING)
    op.execute(PARTNER_HOLD_CAPTURE)
    op.execute(PARTNER_HOLD_VOID)


def downgrade() -> None:
    op.execute("DROP FUNCTION partner_hold_void(text, text, text, bigint, bigint)")
    op.execute("DROP FUNCTION partner_hold_capture(text, text, text, bigint, bigint, bigint)")
    op.execute("DROP FUNCTION partner_hold_pending(bigint, bigint)")
    op.execute("DROP FUNCTION api_datetime(timestamptz)")
