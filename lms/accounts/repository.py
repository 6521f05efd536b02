"""SQL of members and their statements."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.models import Member
from lms.auth.repository import LIVE_TOKEN_OF
from lms.db import RawConnection

STATEMENT = text("""
SELECT p.id, p.entry_id, e.kind, p.unit, p.amount, p.balance_after, e.description,
       CASE WHEN e.external_ref IS NULL THEN NULL
            ELSE e.source || ':' || e.external_ref END AS reference,
       p.created_at AS at
FROM postings p JOIN journal_entries e ON e.id = p.entry_id
WHERE p.account_id = :account_id AND p.unit = :unit AND p.id < :before
  AND (CAST(:kind AS text) IS NULL OR e.kind = CAST(:kind AS text))
  AND (CAST(:since AS timestamptz) IS NULL OR p.created_at >= CAST(:since AS timestamptz))
  AND (CAST(:until AS timestamptz) IS NULL OR p.created_at < CAST(:until AS timestamptz))
ORDER BY p.id DESC
LIMIT :limit
""")


# The member's balance page in one statement: the card, the balances per unit, the next
# open lots to expire and the miles expiring before {until}. It reads the ledger's tables
# (balances, lots) the way lms.ledger.repository does (GET_BALANCES, OPEN_LOTS,
# EXPIRING_SUM), but as one round trip instead of four: it is the API's most frequent call.
# No row: no such member; NULL units: the member has no account rows (the ledger's
# AccountNotFound).
#
# The open lots are read in one pass that yields both the next {lots} and the sum expiring,
# and no parameter narrows an index scan: then PostgreSQL's plan cache settles on one
# generic plan for the prepared statement. With "expires_at <= {until}" as an index
# condition of a second scan, it re-planned the statement on every call (a custom plan
# looked cheaper for each value), and the planning cost 4-5 times the execution: about
# 0.25 ms of the backend's 0.3 ms per read on the 1M-member database.
BALANCE_PAGE_OF = """
SELECT m.card_number, b.units, b.posted, b.held, l.remaining[1:{lots}] AS remaining,
       l.expires_at[1:{lots}] AS expires_at, l.expiring
FROM members m
CROSS JOIN LATERAL (
    SELECT array_agg(unit ORDER BY unit) AS units, array_agg(posted ORDER BY unit) AS posted,
           array_agg(held ORDER BY unit) AS held
    FROM balances WHERE account_id = m.account_id) b
CROSS JOIN LATERAL (
    SELECT array_agg(remaining ORDER BY expires_at, id) AS remaining,
           array_agg(expires_at ORDER BY expires_at, id) AS expires_at,
           COALESCE(sum(remaining) FILTER (WHERE expires_at <= {until}), 0)::bigint
               AS expiring
    FROM lots WHERE account_id = m.account_id AND remaining > 0) l
WHERE m.id = {member}"""
BALANCE_PAGE = BALANCE_PAGE_OF.format(member="$1", until="$2", lots="$3")

# GET /v1/me/balance with its bearer tokens' checks, for several requests in one statement
# (lms.accounts.balance_reads), rather than the authentication middleware's lookup and then
# the page: a row per live token with its position in $1 (ord), none for a token that is not
# live; a caller of another role gets its principal and a page of NULLs.
BALANCE_PAGES_FOR_TOKENS = f"""
SELECT t.ord, caller.principal_type, caller.principal_id, caller.role, page.*
FROM unnest($1::text[]) WITH ORDINALITY AS t(hash, ord)
CROSS JOIN LATERAL ({LIVE_TOKEN_OF.format(hash="t.hash", now="$2")}) caller
LEFT JOIN LATERAL ({BALANCE_PAGE_OF.format(member="caller.principal_id", until="$3",
                                           lots="$4")}
                   AND caller.role = 'member') page ON true"""


async def balance_page(conn: RawConnection, member_id: int, expiring_until: datetime,
                       lots: int) -> asyncpg.Record | None:
    """``BALANCE_PAGE`` for one member, on a bare connection or a session's."""
    row: asyncpg.Record | None = await conn.fetchrow(BALANCE_PAGE, member_id,
                                                     expiring_until, lots)
    return row


async def balance_pages_for_tokens(conn: RawConnection, token_hashes: list[str],
                                   now: datetime, expiring_until: datetime, lots: int
                                   ) -> list[asyncpg.Record]:
    """``BALANCE_PAGES_FOR_TOKENS`` on a bare connection."""
    rows: list[asyncpg.Record] = await conn.fetch(BALANCE_PAGES_FOR_TOKENS, token_hashes,
                                                  now, expiring_until, lots)
    return rows


class MemberRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def next_card_sequence(self) -> int:
        value: int = (await self.session.execute(
            text("SELECT nextval('card_number_seq')"))).scalar_one()
        return value

    async def email_taken(self, email: str) -> bool:
        return (await self.session.execute(
            select(Member.id).where(Member.email == email))).first() is not None

    async def add(self, **values: Any) -> Member:
        member = Member(**values)
        self.session.add(member)
        await self.session.flush()
        return member

    async def by_id(self, member_id: int) -> Member | None:
        return await self.session.get(Member, member_id)

    async def by_email(self, email: str) -> Member | None:
        return (await self.session.execute(
            select(Member).where(Member.email == email))).scalar_one_or_none()

    async def by_card(self, card_number: str) -> Member | None:
        return (await self.session.execute(
            select(Member).where(Member.card_number == card_number))).scalar_one_or_none()

    async def update(self, member_id: int, **values: Any) -> Member:
        member = (await self.session.execute(
            update(Member).where(Member.id == member_id).values(**values)
            .returning(Member))).scalar_one()
        return member

    async def statement(self, account_id: int, unit: str, before: int, limit: int, *,
                        kind: str | None = None, since: datetime | None = None,
                        until: datetime | None = None) -> list[dict[str, Any]]:
        rows = await self.session.execute(STATEMENT, {
            "account_id": account_id, "unit": unit, "before": before, "limit": limit,
            "kind": kind, "since": since, "until": until})
        return [dict(r._mapping) for r in rows]

