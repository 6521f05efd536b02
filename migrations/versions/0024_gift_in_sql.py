"""a gift (POST /v1/me/gifts) as one SQL function: gift_send()

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-24 10:00:00

The API's gift was a unit of work of six statements between BEGIN and COMMIT (the key's claim
with the members and terms, the counts, ledger_post(), the gift's row, the stored answer):
``gift_send()`` does the same work with the same rules, checks, errors in the same order,
locks and side effects in one call, which the API sends alone in autocommit mode (a lone
statement is atomic): one round trip and one commit.

Refusals are errors with SQLSTATEs of their own, each DETAIL carrying what the problem says
(lms.gifts.service.gift_refusal turns them into the API's problems):

- GF001 the sender is missing or not active (member_locked);
- GF002 no recipient with this card and last name (gift_recipient_not_found);
- GF003 a gift to oneself (gift_to_self);
- GF004 the recipient is not active (gift_recipient_not_active);
- GF005 below the minimum, DETAIL the minimum (gift_too_small);
- GF006 over the sender's limit, DETAIL {"period", "limit", "remaining"} as JSON;
- GF007 over the recipient's cap, DETAIL the period (both gift_limit_exceeded);

then ledger_post()'s own (LD001 insufficient miles, ...).

What Python knows cheaply comes as arguments: the recipient's last name as compared
(lms.gifts.service.name_key), the request's time and its text as the API writes it, the
default terms, the fee account's shard, the lots' expiry. What only the database knows is
computed here the way the Python code did it:

- ``gift_name_key(text)``, the stored last name as name_key() compares it: case folded,
  NFKD, combining marks dropped, hyphens and white space as single spaces. Every step but
  the last works character by character, so the table ``gift_name_key_chars`` holds, for
  each code point that the steps change, what they make of it, computed by this migration
  with Python's unicodedata (the Unicode of the Python that runs it, which is the one the
  API's name_key() uses). A test compares the two over every code point and many names.
- ``gift_local_starts(now, zone)``, the starts of the member's day and year as
  lms.gifts.service.local_starts() computes them with zoneinfo: the zone is read as a full
  zone name (the TimeZone setting's reading, not AT TIME ZONE's, which would take "CET" for
  the fixed abbreviation), a zone PostgreSQL cannot read counts in UTC, and a local
  midnight that a clock change makes ambiguous or skips resolves as Python's ``fold``
  does (PostgreSQL's own rule differs for ambiguous times).
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The first key of the gifts' two-key advisory locks (lms.gifts before this migration:
# ADVISORY_NAMESPACE = 0x474946).
GIFT_LOCK_NAMESPACE = 0x474946


def name_key_chars() -> tuple[list[str], list[str]]:
    """Each code point that name_key()'s per-character steps change, and what they make of
    it (a space for a hyphen or any white space, which the last step collapses)."""
    chars, keys = [], []
    for point in range(1, 0x110000):
        if 0xD800 <= point <= 0xDFFF:
            continue
        char = chr(point)
        decomposed = unicodedata.normalize("NFKD", char.casefold())
        kept = "".join(c for c in decomposed if not unicodedata.combining(c))
        key = "".join(" " if c == "-" or c.isspace() else c for c in kept)
        if key != char:
            chars.append(char)
            keys.append(key)
    return chars, keys


# PL/pgSQL, not SQL: a SQL function with a sub-select is not inlined, and its own executor
# cost several times the work. Each character is looked up on its own (a sub-select per
# character): a join let the planner hash the whole table for every name.
NAME_KEY = r"""
CREATE FUNCTION gift_name_key(p_name text) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $fn$
DECLARE
  k text;
BEGIN
  IF octet_length(p_name) = char_length(p_name) THEN
    -- ASCII only (almost every name), without the table: upper case to lower, a hyphen and
    -- white space as str.split() sees it to a space.
    k := translate(p_name, E'ABCDEFGHIJKLMNOPQRSTUVWXYZ-\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f',
                   'abcdefghijklmnopqrstuvwxyz' || repeat(' ', 10));
  ELSE
    SELECT string_agg(COALESCE((SELECT m.key FROM gift_name_key_chars m WHERE m.ch = c.ch),
                               c.ch), '' ORDER BY c.i)
      INTO k FROM string_to_table(p_name, NULL) WITH ORDINALITY AS c(ch, i);
  END IF;
  IF strpos(k, '  ') > 0 THEN
    k := regexp_replace(k, ' {2,}', ' ', 'g');
  END IF;
  RETURN btrim(k, ' ');
END
$fn$
"""

# Python's zoneinfo resolves a local time that a clock change repeats or skips by ``fold``
# (0: the offset before the change, 1: the one after); PostgreSQL takes the offset before
# the change in a gap but the one after in a repeat. The offset before is the one a day
# earlier (clock changes are months apart).
WALL_INSTANT = r"""
CREATE FUNCTION gift_wall_instant(p_wall timestamp, p_fold boolean) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  later timestamptz := p_wall::timestamptz;
  before interval := (later - interval '1 day')::timestamp
                     - ((later - interval '1 day') AT TIME ZONE 'UTC');
  earlier timestamptz := (p_wall - before) AT TIME ZONE 'UTC';
BEGIN
  IF earlier < later AND earlier::timestamp = p_wall THEN
    -- Repeated: two instants show this wall time.
    RETURN CASE WHEN p_fold THEN later ELSE earlier END;
  END IF;
  IF later::timestamp <> p_wall AND p_fold THEN
    -- Skipped, read with the offset after the change.
    RETURN (p_wall - (later::timestamp - (later AT TIME ZONE 'UTC'))) AT TIME ZONE 'UTC';
  END IF;
  RETURN later;
END
$fn$
"""

LOCAL_STARTS = r"""
CREATE FUNCTION gift_local_starts(p_now timestamptz, p_zone text,
                                  OUT day_start timestamptz, OUT year_start timestamptz)
LANGUAGE plpgsql
-- The zone is set for this call only (restored when it returns).
SET TimeZone = 'UTC'
AS $fn$
DECLARE
  wall timestamp;
  fold boolean;
BEGIN
  BEGIN
    PERFORM set_config('TimeZone', p_zone, true);
  EXCEPTION WHEN invalid_parameter_value THEN
    NULL;  -- local_starts(): a zone that cannot be loaded counts in UTC
  END;
  wall := p_now::timestamp;
  -- now.astimezone(zone).fold: 1 in the second pass of a repeated hour.
  fold := gift_wall_instant(wall, false) < p_now;
  day_start := gift_wall_instant(date_trunc('day', wall), fold);
  year_start := gift_wall_instant(date_trunc('year', wall), fold);
END
$fn$
"""

GIFT_SEND = r"""
CREATE FUNCTION gift_send(
  p_principal text, p_key text, p_request_hash text,
  p_sender_id bigint, p_card_number text, p_name_key text, p_miles bigint, p_message text,
  p_now timestamptz, p_created_at text, p_default_terms bigint[], p_fee_account bigint,
  p_lot_expires_at timestamptz,
  OUT status_code integer, OUT response_body bytea, OUT replayed boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
  claim record;
  f record;
  fee_bp bigint;
  fee_minimum bigint;
  min_miles bigint;
  daily_limit bigint;
  yearly_limit bigint;
  daily_received bigint;
  yearly_received bigint;
  fee bigint;
  s_from record;
  r_from record;
  c record;
  summary jsonb;
  entry record;
  gift_id bigint;
BEGIN
  SELECT * INTO claim FROM idempotency_claim(p_principal, p_key, p_request_hash);
  IF NOT claim.claimed THEN
    status_code := claim.status_code;
    response_body := claim.response_body;
    replayed := true;
    RETURN;
  END IF;

  -- The sender by id, the recipient by card, the terms in force on the request's UTC date,
  -- and both members' gift locks: transaction-scoped advisory locks keyed as
  -- lms.db.advisory_keys keys them, taken in sorted order so that two gifts in opposite
  -- directions between two members queue instead of deadlocking. What the members sent and
  -- received is counted by a later statement: this one's snapshot predates the locks it may
  -- have waited for.
  SELECT s.id AS s_id, s.account_id AS s_account, s.card_number AS s_card,
         s.first_name AS s_first, s.last_name AS s_last, s.status AS s_status,
         s.timezone AS s_timezone,
         r.id AS r_id, r.account_id AS r_account, r.card_number AS r_card,
         r.first_name AS r_first, r.last_name AS r_last, r.status AS r_status,
         r.timezone AS r_timezone,
         g.id AS rule_id, g.fee_bp, g.fee_minimum, g.min_miles, g.daily_limit,
         g.yearly_limit, g.daily_received_limit, g.yearly_received_limit,
         (SELECT count(pg_advisory_xact_lock(""" + str(GIFT_LOCK_NAMESPACE) + r""", k))
            FROM unnest(ARRAY(
              SELECT DISTINCT (i % 2147483648)::int FROM unnest(ARRAY[s.id, r.id]) AS i
               WHERE i IS NOT NULL ORDER BY 1)) AS k) AS locks
    INTO f
    FROM (SELECT) AS one
    LEFT JOIN members s ON s.id = p_sender_id
    LEFT JOIN members r ON r.card_number = p_card_number
    LEFT JOIN LATERAL (
         SELECT gr.id, gr.fee_bp, gr.fee_minimum, gr.min_miles, gr.daily_limit,
                gr.yearly_limit, gr.daily_received_limit, gr.yearly_received_limit
           FROM gift_rules gr WHERE gr.effective_from <= (p_now AT TIME ZONE 'UTC')::date
          ORDER BY gr.effective_from DESC LIMIT 1
         ) g ON true;

  IF f.s_id IS NULL OR f.s_status <> 'active' THEN
    RAISE EXCEPTION 'member % cannot give', p_sender_id USING ERRCODE = 'GF001';
  END IF;
  -- A NULL key (a name with a character no stored name can hold) matches nobody.
  IF f.r_id IS NULL OR p_name_key IS NULL OR gift_name_key(f.r_last) <> p_name_key THEN
    RAISE EXCEPTION 'no such recipient' USING ERRCODE = 'GF002';
  END IF;
  IF f.r_id = p_sender_id THEN
    RAISE EXCEPTION 'a gift to oneself' USING ERRCODE = 'GF003';
  END IF;
  IF f.r_status <> 'active' THEN
    RAISE EXCEPTION 'member % cannot receive', f.r_id USING ERRCODE = 'GF004';
  END IF;
  IF f.rule_id IS NULL THEN
    fee_bp := p_default_terms[1]; fee_minimum := p_default_terms[2];
    min_miles := p_default_terms[3]; daily_limit := p_default_terms[4];
    yearly_limit := p_default_terms[5]; daily_received := p_default_terms[6];
    yearly_received := p_default_terms[7];
  ELSE
    fee_bp := f.fee_bp; fee_minimum := f.fee_minimum; min_miles := f.min_miles;
    daily_limit := f.daily_limit; yearly_limit := f.yearly_limit;
    daily_received := f.daily_received_limit; yearly_received := f.yearly_received_limit;
  END IF;
  IF p_miles < min_miles THEN
    RAISE EXCEPTION 'at least % miles', min_miles
      USING ERRCODE = 'GF005', DETAIL = min_miles::text;
  END IF;
  -- The percentage rounded up to a whole mile, never below the minimum.
  fee := GREATEST(fee_minimum, (p_miles * fee_bp + 9999) / 10000);

  -- Under both members' locks: what they already sent or received, since the starts of
  -- their own day and year. The recipient's part is counted even when the terms cap nothing.
  SELECT * INTO s_from FROM gift_local_starts(p_now, f.s_timezone);
  IF f.r_timezone = f.s_timezone THEN
    r_from := s_from;
  ELSE
    SELECT * INTO r_from FROM gift_local_starts(p_now, f.r_timezone);
  END IF;
  SELECT s.day AS sent_day, s.year AS sent_year, r.day AS received_day,
         r.year AS received_year
    INTO c
    FROM (SELECT COALESCE(sum(miles) FILTER (WHERE created_at >= s_from.day_start), 0)::bigint
                   AS day,
                 COALESCE(sum(miles), 0)::bigint AS year
            FROM gifts WHERE sender_id = p_sender_id AND created_at >= s_from.year_start) AS s,
         (SELECT COALESCE(sum(miles) FILTER (WHERE created_at >= r_from.day_start), 0)::bigint
                   AS day,
                 COALESCE(sum(miles), 0)::bigint AS year
            FROM gifts WHERE recipient_id = f.r_id AND created_at >= r_from.year_start) AS r;
  IF c.sent_day + p_miles > daily_limit THEN
    RAISE EXCEPTION 'over the daily limit' USING ERRCODE = 'GF006',
      DETAIL = json_build_object('period', 'daily', 'limit', daily_limit,
                                 'remaining', GREATEST(0, daily_limit - c.sent_day))::text;
  END IF;
  IF c.sent_year + p_miles > yearly_limit THEN
    RAISE EXCEPTION 'over the yearly limit' USING ERRCODE = 'GF006',
      DETAIL = json_build_object('period', 'yearly', 'limit', yearly_limit,
                                 'remaining', GREATEST(0, yearly_limit - c.sent_year))::text;
  END IF;
  IF daily_received IS NOT NULL AND c.received_day + p_miles > daily_received THEN
    RAISE EXCEPTION 'over the recipient''s daily limit' USING ERRCODE = 'GF007',
      DETAIL = 'daily';
  END IF;
  IF yearly_received IS NOT NULL AND c.received_year + p_miles > yearly_received THEN
    RAISE EXCEPTION 'over the recipient''s yearly limit' USING ERRCODE = 'GF007',
      DETAIL = 'yearly';
  END IF;

  -- A NULL message carried a NUL character: the entry's details refused it, as jsonb
  -- refuses \u0000 (an unstorable text, answered 422).
  IF p_message IS NULL THEN
    RAISE EXCEPTION 'unsupported Unicode escape sequence' USING ERRCODE = '22P05',
      DETAIL = '\u0000 cannot be converted to text.';
  END IF;
  summary := jsonb_build_object(
    'miles', p_miles, 'fee', fee, 'message', p_message,
    'sender', jsonb_build_object('memberId', p_sender_id, 'cardNumber', f.s_card,
                                 'name', f.s_first || ' ' || f.s_last),
    'recipient', jsonb_build_object('memberId', f.r_id, 'cardNumber', f.r_card,
                                    'name', f.r_first || ' ' || f.r_last));
  SELECT * INTO entry FROM ledger_post(
    'gift', 'member', p_sender_id::text,
    'Gift from ' || f.s_first || ' ' || f.s_last || ' to ' || f.r_first || ' ' || f.r_last,
    NULL, NULL, NULL, NULL, NULL, summary,
    CASE WHEN fee > 0 THEN ARRAY[f.s_account, f.r_account, p_fee_account]
         ELSE ARRAY[f.s_account, f.r_account] END,
    CASE WHEN fee > 0 THEN ARRAY['MILES', 'MILES', 'MILES'] ELSE ARRAY['MILES', 'MILES'] END,
    CASE WHEN fee > 0 THEN ARRAY[-(p_miles + fee), p_miles, fee]
         ELSE ARRAY[-(p_miles + fee), p_miles] END,
    NULL, NULL, p_lot_expires_at,
    ARRAY['gift.sent', 'gift.received'],
    ARRAY[summary || jsonb_build_object('memberId', p_sender_id),
          summary || jsonb_build_object('memberId', f.r_id)],
    NULL);
  INSERT INTO gifts (sender_id, recipient_id, miles, fee, message, rule_id, entry_id,
                     created_at)
  VALUES (p_sender_id, f.r_id, p_miles, fee, p_message, f.rule_id, entry.entry_id, p_now)
  RETURNING id INTO gift_id;

  -- lms.gifts.schemas.GiftOut, field for field.
  status_code := 201;
  response_body := convert_to(json_build_object(
    'id', gift_id, 'direction', 'sent',
    'sender', json_build_object('memberId', p_sender_id, 'cardNumber', f.s_card,
                                'firstName', f.s_first, 'lastName', f.s_last),
    'recipient', json_build_object('memberId', f.r_id, 'cardNumber', f.r_card,
                                   'firstName', f.r_first, 'lastName', f.r_last),
    'miles', p_miles, 'fee', fee, 'message', p_message, 'entryId', entry.entry_id,
    'createdAt', p_created_at)::text, 'UTF8');
  replayed := false;
  PERFORM idempotency_answer(p_principal, p_key, status_code, response_body);
END
$fn$
"""


def upgrade() -> None:
    op.execute("CREATE TABLE gift_name_key_chars (ch text COLLATE \"C\" PRIMARY KEY, "
               "key text NOT NULL)")
    chars, keys = name_key_chars()
    op.get_bind().execute(
        sa.text("INSERT INTO gift_name_key_chars (ch, key) "
                "SELECT * FROM unnest(CAST(:chars AS text[]), CAST(:keys AS text[]))"),
        {"chars": chars, "keys": keys})
    op.execute(NAME_KEY)
    op.execute(WALL_INSTANT)
    op.execute(LOCAL_STARTS)
    op.execute(GIFT_SEND)


def downgrade() -> None:
    op.execute("DROP FUNCTION gift_send(text, text, text, bigint, text, text, bigint, text, "
               "timestamptz, text, bigint[], bigint, timestamptz)")
    op.execute("DROP FUNCTION gift_local_starts(timestamptz, text)")
    op.execute("DROP FUNCTION gift_wall_instant(timestamp, boolean)")
    op.execute("DROP FUNCTION gift_name_key(text)")
    op.execute("DROP TABLE gift_name_key_chars")
