"""All SQL of gifting, spoken to asyncpg inside the caller's transaction."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg

# The first key of the two-key advisory locks under which a member's gifts are counted.
ADVISORY_NAMESPACE = 0x474946

MEMBER = """
SELECT id, account_id, card_number, first_name, last_name, status, timezone FROM members
WHERE {where}
"""

RULE_IN_FORCE = """
SELECT id, effective_from, fee_bp, fee_minimum, min_miles, daily_limit, yearly_limit,
       daily_received_limit, yearly_received_limit
FROM gift_rules WHERE effective_from <= $1 ORDER BY effective_from DESC LIMIT 1
"""

INSERT_RULE = """
INSERT INTO gift_rules (effective_from, fee_bp, fee_minimum, min_miles, daily_limit,
                        yearly_limit, daily_received_limit, yearly_received_limit, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (effective_from) DO NOTHING RETURNING id
"""

# Everything a gift needs before it counts, in one statement: the sender by id, the recipient
# by card (each NULL when missing), the terms in force on $3 (NULL: the defaults), and both
# members' gift locks: transaction-scoped advisory locks keyed as lms.db.advisory_keys keys
# them, taken in sorted order (unnest yields an array's elements in order), so that two gifts
# in opposite directions between two members queue instead of deadlocking. What the members
# sent and received is counted by a later statement: this one's snapshot predates the locks
# it may have waited for.
SEND_FACTS = """
SELECT s.id AS s_id, s.account_id AS s_account, s.card_number AS s_card,
       s.first_name AS s_first, s.last_name AS s_last, s.status AS s_status,
       s.timezone AS s_timezone,
       r.id AS r_id, r.account_id AS r_account, r.card_number AS r_card,
       r.first_name AS r_first, r.last_name AS r_last, r.status AS r_status,
       r.timezone AS r_timezone,
       g.id AS rule_id, g.fee_bp, g.fee_minimum, g.min_miles, g.daily_limit, g.yearly_limit,
       g.daily_received_limit, g.yearly_received_limit,
       (SELECT count(pg_advisory_xact_lock($4::int, k)) FROM unnest(ARRAY(
            SELECT DISTINCT (i % 2147483648)::int FROM unnest(ARRAY[s.id, r.id]) AS i
             WHERE i IS NOT NULL ORDER BY 1)) AS k) AS locks
  FROM (SELECT) AS one
  LEFT JOIN members s ON s.id = $1
  LEFT JOIN members r ON r.card_number = $2
  LEFT JOIN LATERAL (
       SELECT id, fee_bp, fee_minimum, min_miles, daily_limit, yearly_limit,
              daily_received_limit, yearly_received_limit
         FROM gift_rules WHERE effective_from <= $3 ORDER BY effective_from DESC LIMIT 1
       ) g ON true
"""

SENT_SINCE = """
SELECT COALESCE(sum(miles) FILTER (WHERE created_at >= $2), 0)::bigint AS day,
       COALESCE(sum(miles), 0)::bigint AS year
FROM gifts WHERE sender_id = $1 AND created_at >= $3
"""

# What the sender gave (as SENT_SINCE) and what the recipient received since the starts of
# their day and year, in one statement, after SEND_FACTS took both members' locks. The
# recipient's part is read even when the terms cap nothing: a parameter switching it off
# made PostgreSQL plan the statement anew on every call (a custom plan without that part
# always looked cheaper than the generic one).
GIFT_COUNTS = """
SELECT s.day AS sent_day, s.year AS sent_year, r.day AS received_day, r.year AS received_year
FROM (SELECT COALESCE(sum(miles) FILTER (WHERE created_at >= $2), 0)::bigint AS day,
             COALESCE(sum(miles), 0)::bigint AS year
        FROM gifts WHERE sender_id = $1 AND created_at >= $3) AS s,
     (SELECT COALESCE(sum(miles) FILTER (WHERE created_at >= $5), 0)::bigint AS day,
             COALESCE(sum(miles), 0)::bigint AS year
        FROM gifts WHERE recipient_id = $4 AND created_at >= $6) AS r
"""

INSERT_GIFT = """
INSERT INTO gifts (sender_id, recipient_id, miles, fee, message, rule_id, entry_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id
"""

LIST = """
SELECT g.id, g.miles, g.fee, g.message, g.entry_id, g.created_at,
       s.id AS s_id, s.card_number AS s_card, s.first_name AS s_first, s.last_name AS s_last,
       r.id AS r_id, r.card_number AS r_card, r.first_name AS r_first, r.last_name AS r_last
FROM gifts g JOIN members s ON s.id = g.sender_id JOIN members r ON r.id = g.recipient_id
WHERE g.{column} = $1 AND ($2::bigint IS NULL OR g.id < $2)
ORDER BY g.id DESC LIMIT $3
"""


class GiftRepository:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def member(self, member_id: int) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            MEMBER.format(where="id = $1"), member_id)
        return row

    async def send_facts(self, sender_id: int, card_number: str, day: date
                         ) -> asyncpg.Record:
        """SEND_FACTS: sender (``s_``), recipient (``r_``) and terms, both members locked."""
        row: asyncpg.Record = await self.conn.fetchrow(
            SEND_FACTS, sender_id, card_number, day, ADVISORY_NAMESPACE)
        return row

    async def rule_in_force(self, day: date) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(RULE_IN_FORCE, day)
        return row

    async def insert_rule(self, effective_from: date, fee_bp: int, fee_minimum: int,
                          min_miles: int, daily_limit: int, yearly_limit: int,
                          daily_received_limit: int | None, yearly_received_limit: int | None,
                          created_by: str) -> bool:
        return await self.conn.fetchval(
            INSERT_RULE, effective_from, fee_bp, fee_minimum, min_miles, daily_limit,
            yearly_limit, daily_received_limit, yearly_received_limit,
            created_by) is not None

    async def sent_since(self, member_id: int, day_start: datetime,
                         year_start: datetime) -> tuple[int, int]:
        row = await self.conn.fetchrow(SENT_SINCE, member_id, day_start, year_start)
        return row["day"], row["year"]

    async def counts(self, sender_id: int, sent_from: tuple[datetime, datetime],
                     recipient_id: int, received_from: tuple[datetime, datetime]
                     ) -> asyncpg.Record:
        """GIFT_COUNTS: ``sent_day``, ``sent_year``, ``received_day`` and
        ``received_year``, since the starts of day and year given."""
        row: asyncpg.Record = await self.conn.fetchrow(
            GIFT_COUNTS, sender_id, *sent_from, recipient_id, *received_from)
        return row

    async def insert_gift(self, *, sender_id: int, recipient_id: int, miles: int, fee: int,
                          message: str, rule_id: int | None, entry_id: int,
                          created_at: datetime
                          ) -> int:
        gift_id: int = await self.conn.fetchval(INSERT_GIFT, sender_id, recipient_id, miles,
                                                fee, message, rule_id, entry_id, created_at)
        return gift_id

    async def list(self, member_id: int, *, sent: bool, before: int | None,
                   limit: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(
            LIST.format(column="sender_id" if sent else "recipient_id"), member_id, before,
            limit)
        return rows
