"""SQL of members and their statements."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.models import Member
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


CARD_AND_ACCOUNT = "SELECT card_number, account_id FROM members WHERE id = $1"


async def card_and_account(conn: RawConnection, member_id: int) -> tuple[str, int] | None:
    """A member's card number and account, on a bare connection (the balance read's path)."""
    row = await conn.fetchrow(CARD_AND_ACCOUNT, member_id)
    return None if row is None else (row["card_number"], row["account_id"])


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

