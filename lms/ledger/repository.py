"""All SQL of the ledger, spoken to asyncpg directly.

The ledger is the hot path of the whole system, so its statements are fixed texts with array
parameters: asyncpg prepares each once per connection and every posting, whatever its number of
legs, is a lock statement plus one write statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from lms.ledger.types import HoldStatus, HoldView, Unit

# Locks the balance rows of an entry in one fixed order (account, unit), so concurrent
# entries touching the same accounts queue instead of deadlocking.
LOCK_BALANCES = """
SELECT b.account_id, b.unit, b.posted, b.held, b.allow_negative, a.kind, a.status
FROM balances b
JOIN accounts a ON a.id = b.account_id
JOIN unnest($1::bigint[], $2::text[]) AS k(account_id, unit)
  ON b.account_id = k.account_id AND b.unit = k.unit
ORDER BY b.account_id, b.unit
FOR UPDATE OF b
"""

# The whole write path is one call (see migration 0002 for why, 0019 for what it does now).
POST_ENTRY = """
SELECT entry_id, created_at, accounts, units, posted
FROM ledger_post($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb,
                 $11::bigint[], $12::text[], $13::bigint[], $14, $15, $16,
                 $17::text[], $18::jsonb[], $19)
"""

INSERT_OUTBOX = """
INSERT INTO outbox_events (topic, payload)
SELECT t, p::jsonb FROM unnest($1::text[], $2::text[]) AS e(t, p)
"""

# Locks every balance row of these accounts in (account, unit) order, for a batch of credits
# that must lock something ordered after balances (a promotion's budget) before it posts
# (Ledger.lock_for_credits). Account by account, each found by key: joined on the balance rows
# alone, the planner read every account (a hash or merge join over the whole table: 20 ms of
# CPU a batch at 100,000 members) to find the batch's thousand. The keys reach the planner
# through a sub-select so that it never sees how many there are.
LOCK_BATCH_BALANCES = """
WITH k AS MATERIALIZED (
  SELECT DISTINCT unnest(string_to_array((SELECT $1::text), E'\\x1f')::bigint[]) AS id
)
SELECT b.account_id, b.unit, b.posted, a.status
FROM k JOIN accounts a ON a.id = k.id JOIN balances b ON b.account_id = k.id
ORDER BY b.account_id, b.unit
FOR UPDATE OF b
"""

# The same rows, locked the same way, answered as four arrays in one row.
LOCK_BATCH_BALANCES_ARRAYS = f"""
WITH locked AS ({LOCK_BATCH_BALANCES})
SELECT array_agg(account_id) AS accounts, array_agg(unit) AS units,
       array_agg(posted) AS posted, array_agg(status) AS statuses
FROM locked
"""

# A batch of credits adds its totals per (account, unit) to the balance rows in one UPDATE and
# answers each row's balance after it and the accounts that are not open; each leg's
# balance_after is then the caller's to work out (Ledger.post_credits). The totals do not
# depend on the balances, so the rows need no lock beforehand: a SELECT ... FOR UPDATE first
# wrote a lock into every tuple (with its WAL) that the UPDATE then wrote again. Here each row
# is found by key, in (account, unit) order: the keys are sorted before the join and the
# caller forbids hash and merge joins, so the rows are updated (and locked) one by one in the
# order every ledger_post() takes, and concurrent entries queue instead of deadlocking. The
# keys reach the planner through a sub-select so that it never sees how many there are: shown
# a thousand, it would rather scan whole tables.
CREDIT_BATCH_BALANCES = """
WITH d AS MATERIALIZED (
  SELECT * FROM unnest(string_to_array((SELECT $1::text), E'\\x1f')::bigint[],
                       string_to_array((SELECT $2::text), E'\\x1f'),
                       string_to_array((SELECT $3::text), E'\\x1f')::bigint[])
                AS d(account_id, unit, amount)
  ORDER BY 1, 2
),
credited AS (
  UPDATE balances b SET posted = b.posted + d.amount
  FROM d
  WHERE b.account_id = d.account_id AND b.unit = d.unit
  RETURNING b.account_id, b.unit, b.posted
),
shut AS (  -- each account once (not once per unit): the few that are not open
  SELECT a.id FROM (SELECT DISTINCT account_id FROM d) k JOIN accounts a ON a.id = k.account_id
  WHERE a.status <> 'open'
)
SELECT array_agg(account_id) AS accounts, array_agg(unit) AS units,
       array_agg(posted) AS posted, (SELECT array_agg(id) FROM shut) AS closed
FROM credited
"""

# What CREDIT_BATCH_BALANCES needs of the planner (a lookup by key per row, not a bitmap of
# one), and back to the session's own settings after the batch; each one round trip.
BATCH_PLAN_SETTINGS = ("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "
                       "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
BATCH_PLAN_RESET = ("RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_hashjoin; "
                    "RESET enable_mergejoin")

# The ledger's write path (ledger_post(), migration 0002) done for a whole batch of credits in
# one statement: one journal entry per coupon with its postings (zero legs left out, each
# entry balanced per unit) and a lot per MILES credit as ledger_post() writes them; the
# balance rows took the batch's totals just before, in the same transaction
# (CREDIT_BATCH_BALANCES). The miles.credited events are the relay's to read from the journal
# (lms/outbox/feed.py), as for every entry. Calling ledger_post() once per coupon costs about
# a millisecond each; this is the difference between 1,000 and 10,000+ coupons a second. Only
# credits from system accounts, so there is no shortfall to check and no lot to consume.
# What the caller already knows comes in rather than being worked out again per row: each
# leg's balance_after along the batch's order and each lot's amount (Ledger.post_credits
# runs them from the balances CREDIT_BATCH_BALANCES answered), and the entries' ids, drawn
# from their sequence here in the batch's order, so the postings need no join back to the
# inserted entries (that join, a window over every leg and the sorts they took were a third
# of the statement).
# Every column comes as one text of the values joined by ASCII unit separators (``packed``),
# thousands of them: asyncpg's array parameters cost the client about half a microsecond per
# element, string_to_array() the server a tenth of that.
POST_CREDITS = """
WITH c AS (
  SELECT c.*, nextval('journal_entries_id_seq') AS entry_id
  FROM unnest(string_to_array($1, E'\\x1f'), string_to_array($2, E'\\x1f')::bigint[],
              string_to_array($3, E'\\x1f')::bigint[], string_to_array($4, E'\\x1f')::bigint[],
              string_to_array($5, E'\\x1f')::bigint[],
              string_to_array($6, E'\\x1f')::timestamptz[], string_to_array($7, E'\\x1f'),
              string_to_array($8, E'\\x1f')::jsonb[],
              string_to_array($9, E'\\x1f')::timestamptz[],
              string_to_array($10, E'\\x1f', '')::bigint[],
              string_to_array($11, E'\\x1f')::bigint[], string_to_array($12, E'\\x1f')::bigint[],
              string_to_array($13, E'\\x1f')::bigint[], string_to_array($14, E'\\x1f')::bigint[],
              string_to_array($15, E'\\x1f')::bigint[], string_to_array($16, E'\\x1f')::bigint[],
              string_to_array($17, E'\\x1f')::bigint[])
       WITH ORDINALITY AS c(ref, account_id, miles, status_miles, segments, effective_at,
                            description, details, lot_expires_at, miles_account_id,
                            issuance_after, miles_after, qualification_status_after,
                            status_after, qualification_segments_after, segments_after,
                            lot_amount, ord)
),
entry AS (
  INSERT INTO journal_entries (id, kind, actor_type, actor_id, description, source,
                               external_ref, effective_at, details)
  SELECT c.entry_id, 'accrual', $20, $21, c.description, $22, c.ref, c.effective_at, c.details
  FROM c
),
posting AS (
  INSERT INTO postings (entry_id, account_id, unit, amount, balance_after, created_at)
  SELECT c.entry_id, l.account_id, l.unit, l.amount, l.balance_after, now()
  FROM c CROSS JOIN LATERAL (VALUES
    (1, $18::bigint, 'MILES', -c.miles, c.issuance_after),
    (2, COALESCE(c.miles_account_id, c.account_id), 'MILES', c.miles, c.miles_after),
    (3, $19::bigint, 'STATUS_MILES', -c.status_miles, c.qualification_status_after),
    (4, c.account_id, 'STATUS_MILES', c.status_miles, c.status_after),
    (5, $19::bigint, 'SEGMENTS', -c.segments, c.qualification_segments_after),
    (6, c.account_id, 'SEGMENTS', c.segments, c.segments_after)
  ) AS l(n, account_id, unit, amount, balance_after)
  WHERE l.amount <> 0
),
lot AS (  -- a credit first repays any debt; only the rest opens a lot (as in ledger_post())
  INSERT INTO lots (account_id, entry_id, amount, remaining, expires_at, created_at)
  SELECT COALESCE(c.miles_account_id, c.account_id), c.entry_id, c.lot_amount, c.lot_amount,
         c.lot_expires_at, now()
  FROM c WHERE c.lot_amount > 0
)
SELECT array_agg(c.entry_id ORDER BY c.ord) FROM c
"""

# Debits may only take miles that are not held: the WHERE re-checks on the newest row version
# when another transaction updated it first, so two holds can never overdraw together.
CREATE_HOLD = """
WITH reserved AS (
  UPDATE balances SET held = held + $2
  WHERE account_id = $1 AND unit = $3 AND (allow_negative OR posted - held >= $2)
  RETURNING account_id
)
INSERT INTO holds (account_id, unit, amount, actor_type, actor_id, reference, expires_at)
SELECT account_id, $3, $2, $4, $5, $6, $7 FROM reserved
RETURNING id, account_id, amount, captured, status, expires_at, created_at, closed_at,
          reference, entry_id
"""

HOLD_COLUMNS = ("id, account_id, amount, captured, status, expires_at, created_at, closed_at, "
                "reference, entry_id")

LOCK_HOLD = f"SELECT {HOLD_COLUMNS}, now() AS now FROM holds WHERE id = $1 FOR UPDATE"

GET_HOLD = f"SELECT {HOLD_COLUMNS} FROM holds WHERE id = $1"

CLOSE_HOLD = f"""
UPDATE holds SET status = $2, captured = $3, entry_id = $4, closed_at = now() WHERE id = $1
RETURNING {HOLD_COLUMNS}
"""

RELEASE_HELD = """
UPDATE balances SET held = held - d.amount
FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS d(account_id, unit, amount)
WHERE balances.account_id = d.account_id AND balances.unit = d.unit
"""

# Claims due holds without waiting on holds another worker or a capture is handling.
CLAIM_EXPIRED_HOLDS = f"""
UPDATE holds SET status = 'expired', closed_at = now()
WHERE id IN (
  SELECT id FROM holds
  WHERE status = 'pending' AND expires_at <= $1
  ORDER BY expires_at, id
  LIMIT $2
  FOR UPDATE SKIP LOCKED
)
RETURNING {HOLD_COLUMNS}, unit
"""

GET_BALANCES = """
SELECT account_id, unit, posted, held FROM balances WHERE account_id = $1 ORDER BY unit
"""

OPEN_LOTS = """
SELECT id, amount, remaining, expires_at, created_at FROM lots
WHERE account_id = $1 AND remaining > 0 ORDER BY expires_at, id LIMIT $2
"""

EXPIRING_SUM = """
SELECT COALESCE(sum(remaining), 0)::bigint FROM lots
WHERE account_id = $1 AND remaining > 0 AND expires_at <= $2
"""

ENTRY_POSTINGS = """
SELECT e.id, e.kind, e.reverses_id, p.account_id, p.unit, p.amount, a.kind AS account_kind
FROM journal_entries e JOIN postings p ON p.entry_id = e.id JOIN accounts a ON a.id = p.account_id
WHERE e.id = $1 ORDER BY p.id
"""

IS_REVERSED = "SELECT 1 FROM journal_entries WHERE reverses_id = $1"

ENTRY_BY_REFERENCE = "SELECT id FROM journal_entries WHERE source = $1 AND external_ref = $2"

ACCOUNTS_WITH_DUE_LOTS = """
SELECT DISTINCT account_id FROM lots WHERE remaining > 0 AND expires_at <= $1 LIMIT $2
"""

DUE_LOTS = """
SELECT COALESCE(sum(remaining), 0)::bigint FROM lots
WHERE account_id = $1 AND remaining > 0 AND expires_at <= $2
"""

INSERT_ACCOUNT = """
WITH account AS (
  INSERT INTO accounts (kind, code, shard, allow_negative) VALUES ($1, $2, $3, $4) RETURNING id
), balance AS (
  INSERT INTO balances (account_id, unit, allow_negative)
  SELECT account.id, u, $4 FROM account, unnest($5::text[]) AS u
)
SELECT id FROM account
"""

SYSTEM_ACCOUNTS = "SELECT code, shard, id FROM accounts WHERE kind = 'system' ORDER BY code, shard"

ENSURE_SYSTEM_ACCOUNT = """
WITH account AS (
  INSERT INTO accounts (kind, code, shard, allow_negative) VALUES ('system', $1, $2, true)
  ON CONFLICT (code, shard) DO NOTHING RETURNING id
), balance AS (
  INSERT INTO balances (account_id, unit, allow_negative)
  SELECT account.id, u, true FROM account, unnest($3::text[]) AS u
)
SELECT id FROM account
"""

SYSTEM_ACCOUNT_ID = "SELECT id FROM accounts WHERE kind = 'system' AND code = $1 AND shard = $2"

ACCOUNT_STATUS = "UPDATE accounts SET status = $2 WHERE id = $1 RETURNING id"


def hold_from_row(row: asyncpg.Record) -> HoldView:
    return HoldView(
        id=row["id"], account_id=row["account_id"], amount=row["amount"],
        captured=row["captured"], status=HoldStatus(row["status"]),
        expires_at=row["expires_at"], created_at=row["created_at"],
        closed_at=row["closed_at"], reference=row["reference"], entry_id=row["entry_id"],
    )


class LedgerRepository:
    """Thin wrapper over one asyncpg connection inside the caller's transaction."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def lock_balances(self, keys: Sequence[tuple[int, Unit]]) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(
            LOCK_BALANCES, [k[0] for k in keys], [str(k[1]) for k in keys])
        return rows

    async def lock_balance_rows(self, keys: Sequence[tuple[int, str]]) -> None:
        await self.conn.fetch(LOCK_BALANCES, [k[0] for k in keys], [k[1] for k in keys])

    async def post_entry(self, *, header: Sequence[Any], accounts: list[int], units: list[str],
                         amounts: list[int], release: tuple[int, int] | None,
                         lot_expires_at: datetime, events: Sequence[tuple[str, str]],
                         debt_account: int | None = None) -> asyncpg.Record:
        """The legs as three columns. No events: null arrays, which cost nothing to send."""
        row: asyncpg.Record = await self.conn.fetchrow(
            POST_ENTRY, *header, accounts, units, amounts,
            release[0] if release else None, release[1] if release else None,
            lot_expires_at, [e[0] for e in events] if events else None,
            [e[1] for e in events] if events else None, debt_account)
        return row

    async def add_events(self, events: Sequence[tuple[str, str]]) -> None:
        if events:
            await self.conn.execute(INSERT_OUTBOX, [e[0] for e in events],
                                    [e[1] for e in events])

    async def create_hold(self, *, account_id: int, amount: int, unit: Unit, actor_type: str,
                          actor_id: str | None, reference: str | None,
                          expires_at: datetime) -> HoldView | None:
        row = await self.conn.fetchrow(CREATE_HOLD, account_id, amount, str(unit), actor_type,
                                       actor_id, reference, expires_at)
        return hold_from_row(row) if row else None

    async def lock_hold(self, hold_id: int) -> tuple[HoldView, datetime] | None:
        row = await self.conn.fetchrow(LOCK_HOLD, hold_id)
        return (hold_from_row(row), row["now"]) if row else None

    async def get_hold(self, hold_id: int) -> HoldView | None:
        row = await self.conn.fetchrow(GET_HOLD, hold_id)
        return hold_from_row(row) if row else None

    async def close_hold(self, hold_id: int, status: HoldStatus, captured: int,
                         entry_id: int | None) -> HoldView:
        row = await self.conn.fetchrow(CLOSE_HOLD, hold_id, str(status), captured, entry_id)
        return hold_from_row(row)

    async def release_held(self, releases: Sequence[tuple[int, str, int]]) -> None:
        await self.conn.execute(RELEASE_HELD, [r[0] for r in releases],
                                [r[1] for r in releases], [r[2] for r in releases])

    async def claim_expired_holds(self, now: datetime, limit: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(CLAIM_EXPIRED_HOLDS, now, limit)
        return rows

    async def balances(self, account_id: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(GET_BALANCES, account_id)
        return rows

    async def open_lots(self, account_id: int, limit: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(OPEN_LOTS, account_id, limit)
        return rows

    async def expiring_sum(self, account_id: int, until: datetime) -> int:
        value: int = await self.conn.fetchval(EXPIRING_SUM, account_id, until)
        return value

    async def entry_postings(self, entry_id: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(ENTRY_POSTINGS, entry_id)
        return rows

    async def entry_by_reference(self, source: str, external_ref: str) -> int | None:
        value: int | None = await self.conn.fetchval(ENTRY_BY_REFERENCE, source, external_ref)
        return value

    async def is_reversed(self, entry_id: int) -> bool:
        return await self.conn.fetchval(IS_REVERSED, entry_id) is not None

    async def accounts_with_due_lots(self, now: datetime, limit: int) -> list[int]:
        rows = await self.conn.fetch(ACCOUNTS_WITH_DUE_LOTS, now, limit)
        return [r["account_id"] for r in rows]

    async def due_lots(self, account_id: int, now: datetime) -> int:
        value: int = await self.conn.fetchval(DUE_LOTS, account_id, now)
        return value

    async def insert_account(self, kind: str, units: Sequence[Unit]) -> int:
        account_id: int = await self.conn.fetchval(
            INSERT_ACCOUNT, kind, None, None, False, [str(u) for u in units])
        return account_id

    async def set_account_status(self, account_id: int, status: str) -> bool:
        return await self.conn.fetchval(ACCOUNT_STATUS, account_id, status) is not None

    async def system_accounts(self) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(SYSTEM_ACCOUNTS)
        return rows

    async def ensure_system_account(self, code: str, shard: int, units: Sequence[Unit]) -> None:
        await self.conn.fetchval(ENSURE_SYSTEM_ACCOUNT, code, shard, [str(u) for u in units])

    async def system_account_id(self, code: str, shard: int) -> int | None:
        account_id: int | None = await self.conn.fetchval(SYSTEM_ACCOUNT_ID, code, shard)
        return account_id

    async def batch_plan(self) -> None:
        await self.conn.execute(BATCH_PLAN_SETTINGS)

    async def end_batch_plan(self) -> None:
        await self.conn.execute(BATCH_PLAN_RESET)

    async def lock_balances_for_credits(self, account_ids: Sequence[int]
                                        ) -> tuple[list[int], list[str], list[int], list[str]]:
        """Lock the batch's balance rows: their (account_ids, units, posted, statuses)."""
        row = await self.conn.fetchrow(
            LOCK_BATCH_BALANCES_ARRAYS, packed(sorted(set(account_ids))))
        if row is None or row["accounts"] is None:
            return [], [], [], []
        return row["accounts"], row["units"], row["posted"], row["statuses"]

    async def credit_batch_balances(self, totals: dict[tuple[int, str], int]
                                    ) -> tuple[list[int], list[str], list[int], list[int]]:
        """Add a batch's totals per (account, unit) to its balance rows, in ledger order:
        the rows found, as (account_ids, units, posted after), and the batch's accounts that
        are not open. Only between ``batch_plan`` and ``end_batch_plan``: see
        CREDIT_BATCH_BALANCES."""
        row = await self.conn.fetchrow(CREDIT_BATCH_BALANCES, *key_columns(totals))
        if row is None:
            return [], [], [], []
        return (row["accounts"] or [], row["units"] or [], row["posted"] or [],
                row["closed"] or [])

    async def post_credits(self, rows: Sequence[tuple[Any, ...]],
                           afters: Sequence[tuple[int, ...]], *, issuance: int,
                           qualification: int, actor_type: str, actor_id: str | None,
                           source: str) -> list[int]:
        """One entry per row (ref, account_id, miles, status_miles, segments, effective_at,
        description, details JSON, lot_expires_at[, miles_account_id]), in order; returns
        the entry ids. A row's optional tenth value credits its MILES to another account
        (a family pool) while status miles and segments stay on ``account_id``. ``afters``:
        per row, the balance after each of its six legs in POST_CREDITS' order and the
        amount of its lot (0: none). The balance rows are not written here: see
        ``credit_batch_balances``."""
        columns = [packed(c) for c in zip(*rows, strict=True)]
        if len(columns) == 9:
            columns.append(packed([None] * len(rows)))
        columns += [packed(c) for c in zip(*afters, strict=True)]
        ids: list[int] = await self.conn.fetchval(
            POST_CREDITS, *columns, issuance, qualification, actor_type, actor_id, source)
        return ids


def key_columns(values: dict[tuple[int, str], int]) -> tuple[str, str, str]:
    """{(account, unit): n} as the three packed columns a statement unnests."""
    return (packed([k[0] for k in values]), packed([k[1] for k in values]),
            packed(values.values()))


SEPARATOR = "\x1f"  # ASCII unit separator: in no ledger value, escaped in any JSON


def packed(values: Iterable[Any]) -> str:
    """A column of values as one text parameter, for ``string_to_array($n, E'\\x1f', '')``:
    numbers and text as they are, datetimes in ISO form, None as the empty string (so a
    column that may hold NULLs must have no empty text). A value holding the separator would
    shift every later one: refused."""
    column = values if isinstance(values, list | tuple) else list(values)
    kinds = set(map(type, column))
    texts: Iterable[str]
    if kinds <= {str}:
        texts = column
    elif kinds <= {int}:
        texts = map(str, column)
    elif kinds == {type(None)}:  # a column of NULLs (no family pool in a batch of credits)
        texts = [""] * len(column)
    else:
        iso: dict[datetime, str] = {}  # a batch's datetimes are a few hundred distinct days
        texts = []
        for v in column:
            if v is None:
                texts.append("")
            elif isinstance(v, str):
                texts.append(v)
            elif isinstance(v, datetime):
                text = iso.get(v)
                if text is None:
                    text = iso[v] = v.isoformat()
                texts.append(text)
            else:
                texts.append(str(v))
    joined = SEPARATOR.join(texts)
    if joined.count(SEPARATOR) != max(len(column) - 1, 0):
        raise ValueError("a value holds the column separator (ASCII 31)")
    return joined
