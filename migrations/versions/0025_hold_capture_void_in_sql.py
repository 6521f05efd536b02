"""a partner's hold opened, captured and voided as SQL functions: partner_hold_open(),
partner_hold_capture() and partner_hold_void(), and a member code's check, member_code_check()

Revision ID: 0025
Revises: 0024
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

Opening a hold (POST /v1/partner/holds) was fifteen statements in two units of work: the
member code's check in one of its own, committed even when the code is wrong so that wrong
codes are counted, then the hold. ``partner_hold_open`` is one statement:

1. ``member_code_check`` (also called alone by a quote): the card's lock (an advisory lock
   until the commit, so that the checks of one card number run in turn and each sees the
   failures of the one before); a request answered before under its key skips the check (its
   replay must not be refused for the code it used up); the card's guard and the live code
   with that hash. A lock in force refuses (``redemption_locked``, with its end as Python's
   isoformat writes it); a code that is not found or bound to another partner is counted
   against the card number as sent (the fifth within the window locks the card, revokes the
   member's live codes and emits ``member.redemption_locked``) and refused
   (``invalid_member_code``); an inactive member is ``member_locked``. A refusal is the
   function's answer (``refusal``), not an error: the statement commits the count, and the
   API raises the problem after it. The card's lock is now held until the hold is made
   rather than released between the two units of work, so a second use of one code always
   finds it used (a wrong code, counted, as when it comes after the first has finished).
2. The key's claim; then, as errors that roll back everything (the key's claim and the
   code's use with it): partner unknown or without a clearing account (RH001), partner not
   active (RH002), no value per mile (RH007), another currency than the contract's (RH008,
   DETAIL: the contract's), the miles' worth beyond the contract's share of the order
   (RH009, DETAIL: the minimum cash share), the code used meanwhile (RH010), member not
   active (RH011), a hold longer than ``hold_max_ttl`` (RH012), not enough miles available
   (RH013, DETAIL: {"available", "requested"}).
3. The code used, the miles reserved by the ledger's conditional statement, the event
   ``hold.created``, the partner's hold row, the answer (HoldOut, 201) stored under the key.

Values Python knows cheaply come as arguments: the code's HMAC under the server's secret, the
clock (the check's time and the hold's expiry), the guard's policy and ``hold_max_ttl``.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
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


# A timestamptz as Python's datetime.isoformat() writes an aware datetime in UTC (the events'
# and problems' times): microseconds only when there are any, then "+00:00".
PY_ISOFORMAT = r"""
CREATE FUNCTION py_isoformat(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $fn$
  SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24\:MI\:SS')
         || CASE WHEN date_trunc('second', t) = t THEN ''
                 ELSE to_char(t AT TIME ZONE 'UTC', '.US') END
         || '+00\:00'
$fn$"""

# A member code a partner presents, checked (lms.redemption.service before revision 0025): a
# wrong one is counted, so a refusal is this row's answer, not an error (an error would roll
# the count back). Called by a quote on its own, and by partner_hold_open(), which then runs
# on with the code's facts in the same statement.
MEMBER_CODE_CHECK = r"""
CREATE FUNCTION member_code_check(
  p_partner_id bigint, p_card_number text, p_code_hash text, p_now timestamptz,
  p_max_failures integer, p_failure_window interval, p_lock interval,
  p_principal text, p_key text,
  OUT refusal text, OUT refusal_detail text, OUT answered boolean,
  OUT code_id bigint, OUT member_id bigint, OUT account_id bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
  g record;
  recent integer := 0;
  locked timestamptz;
  failures integer;
  window_start timestamptz;
  until timestamptz;
  m record;
BEGIN
  -- Every check of one card number (known or not) in turn, until the commit, so that each
  -- sees the failures of the one before it.
  PERFORM pg_advisory_xact_lock(hashtextextended('redemption\:' || p_card_number, 0));
  -- A request answered before under its Idempotency-Key (p_key; NULL: no key) is replayed,
  -- not refused for the code it used up.
  answered := p_key IS NOT NULL AND EXISTS (
    SELECT 1 FROM idempotency_keys k WHERE k.principal = p_principal AND k.key = p_key);
  IF answered THEN
    RETURN;
  END IF;
  SELECT gd.failures, gd.window_started_at, gd.locked_until,
         c.id AS code_id, c.partner_id AS code_partner_id,
         c.account_id AS code_account_id, c.member_id, c.card_number, c.member_status
    INTO g
    FROM (SELECT 1) AS one
    LEFT JOIN redemption_guards gd ON gd.card_number = p_card_number
    LEFT JOIN LATERAL (
         SELECT rc.id, rc.partner_id, rc.account_id, mm.id AS member_id, mm.card_number,
                mm.status AS member_status
           FROM redemption_codes rc JOIN members mm ON mm.id = rc.member_id
          WHERE rc.code_hash = p_code_hash AND rc.used_at IS NULL
            AND rc.revoked_at IS NULL AND rc.expires_at > p_now
          LIMIT 1) c ON true;
  IF g.failures IS NOT NULL THEN
    IF g.locked_until IS NOT NULL AND g.locked_until > p_now THEN
      locked := g.locked_until;
    END IF;
    IF g.window_started_at > p_now - p_failure_window THEN
      recent := g.failures;
    END IF;
  END IF;
  IF locked IS NOT NULL THEN
    refusal := 'redemption_locked';
    refusal_detail := py_isoformat(locked);
    RETURN;
  END IF;
  IF g.code_id IS NULL OR g.code_partner_id <> p_partner_id THEN
    -- A retry whose first attempt used the code up just now replays its answer.
    answered := p_key IS NOT NULL AND EXISTS (
      SELECT 1 FROM idempotency_keys k WHERE k.principal = p_principal AND k.key = p_key);
    IF answered THEN
      RETURN;
    END IF;
    failures := recent + 1;
    IF failures < p_max_failures THEN
      window_start := CASE WHEN g.failures IS NOT NULL AND recent <> 0
                           THEN g.window_started_at ELSE p_now END;
      INSERT INTO redemption_guards (card_number, failures, window_started_at,
                                     locked_until, updated_at)
      VALUES (p_card_number, failures, window_start, NULL, p_now)
      ON CONFLICT (card_number) DO UPDATE
         SET failures = excluded.failures, window_started_at = excluded.window_started_at,
             locked_until = excluded.locked_until, updated_at = excluded.updated_at;
    ELSE
      until := p_now + p_lock;
      INSERT INTO redemption_guards (card_number, failures, window_started_at,
                                     locked_until, updated_at)
      VALUES (p_card_number, 0, p_now, until, p_now)
      ON CONFLICT (card_number) DO UPDATE
         SET failures = excluded.failures, window_started_at = excluded.window_started_at,
             locked_until = excluded.locked_until, updated_at = excluded.updated_at;
      SELECT mm.id, mm.card_number INTO m FROM members mm WHERE mm.card_number = p_card_number;
      IF FOUND THEN
        -- Codes out there may be what is being guessed at: the member makes new ones.
        UPDATE redemption_codes SET revoked_at = p_now
         WHERE redemption_codes.member_id = m.id AND used_at IS NULL AND revoked_at IS NULL
           AND expires_at > p_now;
        INSERT INTO outbox_events (topic, payload)
        VALUES ('member.redemption_locked',
                jsonb_build_object('memberId', m.id, 'cardNumber', m.card_number,
                                   'lockedUntil', py_isoformat(until),
                                   'failures', failures));
      END IF;
    END IF;
    refusal := 'invalid_member_code';
    RETURN;
  END IF;
  IF g.card_number <> p_card_number THEN
    refusal := 'invalid_member_code';  -- the hash covers the card: never seen
    RETURN;
  END IF;
  IF g.member_status <> 'active' THEN
    refusal := 'member_locked';
    RETURN;
  END IF;
  code_id := g.code_id;
  member_id := g.member_id;
  account_id := g.code_account_id;
END
$fn$"""

PARTNER_HOLD_OPEN = r"""
CREATE FUNCTION partner_hold_open(
  p_principal text, p_key text, p_request_hash text,
  p_partner_id bigint, p_card_number text, p_code_hash text,
  p_miles bigint, p_cash_amount bigint, p_currency text, p_order_reference text,
  p_expires_at timestamptz, p_now timestamptz,
  p_max_failures integer, p_failure_window interval, p_lock interval,
  p_hold_max_ttl interval,
  OUT status_code integer, OUT response_body bytea, OUT replayed boolean,
  OUT refusal text, OUT refusal_detail text)
LANGUAGE plpgsql AS $fn$
DECLARE
  c record;
  claim record;
  f record;
  account bigint;
  hold record;
  available bigint;
BEGIN
  SELECT * INTO c FROM member_code_check(
    p_partner_id, p_card_number, p_code_hash, p_now, p_max_failures, p_failure_window,
    p_lock, p_principal, p_key);
  IF c.refusal IS NOT NULL THEN
    -- Committed with the statement: a wrong code stays counted.
    refusal := c.refusal;
    refusal_detail := c.refusal_detail;
    RETURN;
  END IF;

  SELECT * INTO claim FROM idempotency_claim(p_principal, p_key, p_request_hash);
  IF NOT claim.claimed THEN
    status_code := claim.status_code;
    response_body := claim.response_body;
    replayed := true;
    RETURN;
  END IF;
  SELECT p.status, p.currency, p.value_per_mile_milli_minor, p.min_cash_share_bp,
         p.clearing_account_id, mm.status AS member_status, mm.account_id
    INTO f
    FROM partners p LEFT JOIN members mm ON mm.id = COALESCE(c.member_id, 0)
   WHERE p.id = p_partner_id;
  IF NOT FOUND OR f.clearing_account_id IS NULL THEN
    RAISE EXCEPTION 'partner % not found', p_partner_id USING ERRCODE = 'RH001';
  END IF;
  IF f.status <> 'active' THEN
    RAISE EXCEPTION 'partner % is %', p_partner_id, f.status USING ERRCODE = 'RH002';
  END IF;
  IF f.value_per_mile_milli_minor <= 0 THEN
    RAISE EXCEPTION 'partner % offers no redemption', p_partner_id USING ERRCODE = 'RH007';
  END IF;
  IF p_currency <> f.currency THEN
    RAISE EXCEPTION 'the contract''s currency is %', f.currency
      USING ERRCODE = 'RH008', DETAIL = f.currency;
  END IF;
  -- lms.redemption.pricing.within_cash_share: the miles' worth rounded down, the most miles
  -- the order (cash plus that worth) may take rounded down.
  IF p_miles > div((p_cash_amount + div(p_miles::numeric * f.value_per_mile_milli_minor, 1000))
                   * (10000 - f.min_cash_share_bp) * 1000,
                   10000::numeric * f.value_per_mile_milli_minor) THEN
    RAISE EXCEPTION 'the miles pay for too much of the order'
      USING ERRCODE = 'RH009', DETAIL = f.min_cash_share_bp::text;
  END IF;
  -- The code is used exactly when the hold exists: consumed in this unit of work.
  IF c.code_id IS NULL THEN
    RAISE EXCEPTION 'no member code' USING ERRCODE = 'RH010';
  END IF;
  UPDATE redemption_codes SET used_at = p_now
   WHERE id = c.code_id AND used_at IS NULL AND revoked_at IS NULL AND expires_at > p_now;
  IF NOT FOUND OR f.member_status IS NULL THEN
    RAISE EXCEPTION 'the member code is used' USING ERRCODE = 'RH010';
  END IF;
  IF f.member_status <> 'active' THEN
    RAISE EXCEPTION 'member % is %', c.member_id, f.member_status USING ERRCODE = 'RH011';
  END IF;
  IF p_expires_at - p_now > p_hold_max_ttl THEN
    RAISE EXCEPTION 'a hold may last at most %', p_hold_max_ttl USING ERRCODE = 'RH012';
  END IF;

  -- lms.ledger's create_hold: only miles that are not held, re-checked on the newest row
  -- version when another transaction updated it first.
  account := COALESCE(c.account_id, f.account_id);
  WITH reserved AS (
    UPDATE balances SET held = held + p_miles
     WHERE balances.account_id = account AND balances.unit = 'MILES'
       AND (allow_negative OR posted - held >= p_miles)
    RETURNING balances.account_id
  )
  INSERT INTO holds (account_id, unit, amount, actor_type, actor_id, reference, expires_at)
  SELECT r.account_id, 'MILES', p_miles, 'partner', p_partner_id::text, p_order_reference,
         p_expires_at
    FROM reserved r
  RETURNING holds.id, holds.expires_at, holds.created_at INTO hold;
  IF NOT FOUND THEN
    SELECT b.posted - b.held INTO available FROM balances b
     WHERE b.account_id = account AND b.unit = 'MILES';
    IF NOT FOUND THEN
      RAISE EXCEPTION 'no such account among %', account
        USING ERRCODE = 'LD002', DETAIL = account::text;
    END IF;
    RAISE EXCEPTION '% miles available, % needed', available, p_miles
      USING ERRCODE = 'RH013',
            DETAIL = json_build_object('available', available, 'requested', p_miles)::text;
  END IF;
  INSERT INTO outbox_events (topic, payload)
  VALUES ('hold.created', jsonb_build_object('holdId', hold.id, 'accountId', account,
                                             'amount', p_miles,
                                             'expiresAt', py_isoformat(hold.expires_at)));
  INSERT INTO partner_holds (hold_id, partner_id, member_id, code_id, order_reference, miles,
                             cash_amount, currency, value_per_mile_milli_minor, origin)
  VALUES (hold.id, p_partner_id, c.member_id, c.code_id, p_order_reference, p_miles,
          p_cash_amount, f.currency, f.value_per_mile_milli_minor, 'partner');

  status_code := 201;
  response_body := convert_to(
    '{"id":' || hold.id
    || ',"status":"pending","miles":' || p_miles
    || ',"capturedMiles"\:0,"cashAmount":' || p_cash_amount
    || ',"currency":' || to_json(f.currency)::text
    || ',"orderReference":' || to_json(p_order_reference)::text
    || ',"expiresAt":"' || api_datetime(hold.expires_at)
    || '","createdAt":"' || api_datetime(hold.created_at)
    || '","closedAt"\:null,"redemptionId"\:null}', 'UTF8');
  replayed := false;
  PERFORM idempotency_answer(p_principal, p_key, status_code, response_body);
END
$fn$"""


def upgrade() -> None:
    op.execute(API_DATETIME)
    op.execute(PARTNER_HOLD_PENDING)
    op.execute(PARTNER_HOLD_CAPTURE)
    op.execute(PARTNER_HOLD_VOID)
    op.execute(PY_ISOFORMAT)
    op.execute(MEMBER_CODE_CHECK)
    op.execute(PARTNER_HOLD_OPEN)


def downgrade() -> None:
    op.execute("DROP FUNCTION partner_hold_open(text, text, text, bigint, text, text, bigint, "
               "bigint, text, text, timestamptz, timestamptz, integer, interval, interval, "
               "interval)")
    op.execute("DROP FUNCTION member_code_check(bigint, text, text, timestamptz, integer, "
               "interval, interval, text, text)")
    op.execute("DROP FUNCTION py_isoformat(timestamptz)")
    op.execute("DROP FUNCTION partner_hold_void(text, text, text, bigint, bigint)")
    op.execute("DROP FUNCTION partner_hold_capture(text, text, text, bigint, bigint, bigint)")
    op.execute("DROP FUNCTION partner_hold_pending(bigint, bigint)")
    op.execute("DROP FUNCTION api_datetime(timestamptz)")
