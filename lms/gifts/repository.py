"""All SQL of gifting, spoken to asyncpg inside the caller's transaction."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg

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

SENT_SINCE = """
SELECT COALESCE(sum(miles) FILTER (WHERE created_at >= $2), 0)::bigint AS day,
       COALESCE(sum(miles), 0)::bigint AS year
FROM gifts WHERE sender_id = $1 AND created_at >= $3
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

    async def list(self, member_id: int, *, sent: bool, before: int | None,
                   limit: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(
            LIST.format(column="sender_id" if sent else "recipient_id"), member_id, before,
            limit)
        return rows
