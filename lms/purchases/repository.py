"""SQL of purchase rules and purchases."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import RawConnection
from lms.purchases.models import Purchase

RULE_AT = text("""
SELECT body FROM purchase_rules WHERE kind = :kind AND effective_from <= :on
ORDER BY effective_from DESC LIMIT 1
""")

MEMBER = text("SELECT id, account_id, status FROM members WHERE id = :id")
# The member row is the lock that serialises one member's purchases, so that two concurrent
# purchases cannot both pass the yearly cap.
LOCK_MEMBER = text("SELECT id, account_id, status FROM members WHERE id = :id FOR UPDATE")

# Pending purchases count until they expire: paid ones must still fit under the cap.
BOUGHT_IN_YEAR = text("""
SELECT COALESCE(sum(miles), 0)::bigint FROM purchases
WHERE member_id = :member_id AND kind = 'miles' AND cap_year = :year
  AND (status = 'completed' OR (status = 'pending' AND expires_at > :now))
""")

# SKIP LOCKED: a purchase being settled right now is left to its webhook.
EXPIRE_DUE = text("""
WITH due AS (
  SELECT id FROM purchases WHERE status = 'pending' AND expires_at <= :now
  ORDER BY expires_at LIMIT :limit FOR UPDATE SKIP LOCKED
)
UPDATE purchases p SET status = 'expired', closed_at = :now,
       note = 'not paid in time'
FROM due WHERE p.id = due.id
RETURNING p.id, p.member_id, p.kind, p.reference, p.miles, p.tier
""")

INSERT_RULE = """
INSERT INTO purchase_rules (kind, effective_from, body, created_by)
VALUES ($1, $2, $3::jsonb, $4)
ON CONFLICT (kind, effective_from) DO NOTHING
RETURNING kind
"""


async def store_rule(conn: RawConnection, kind: str, since: date, body: dict[str, Any],
                     created_by: str) -> bool:
    """Add a rule version; False when that (kind, effective_from) exists (never
    overwritten)."""
    return await conn.fetchval(INSERT_RULE, kind, since, json.dumps(body),
                               created_by) is not None


class PurchaseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def rule_at(self, kind: str, on: date) -> dict[str, Any] | None:
        body: dict[str, Any] | None = (await self.session.execute(
            RULE_AT, {"kind": kind, "on": on})).scalar_one_or_none()
        return body

    async def member(self, member_id: int, *, lock: bool = False) -> Any:
        return (await self.session.execute(LOCK_MEMBER if lock else MEMBER,
                                           {"id": member_id})).first()

    async def bought_in_year(self, member_id: int, year: int, now: datetime) -> int:
        total: int = (await self.session.execute(BOUGHT_IN_YEAR, {
            "member_id": member_id, "year": year, "now": now})).scalar_one()
        return total

    async def add(self, **values: Any) -> Purchase:
        return (await self.session.execute(
            insert(Purchase).values(**values).returning(Purchase))).scalar_one()

    async def by_reference(self, reference: str, *, lock: bool = False) -> Purchase | None:
        query = select(Purchase).where(Purchase.reference == reference)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def of_member(self, member_id: int, kind: str, purchase_id: int
                        ) -> Purchase | None:
        return (await self.session.execute(select(Purchase).where(
            Purchase.id == purchase_id, Purchase.member_id == member_id,
            Purchase.kind == kind))).scalar_one_or_none()

    async def list_of_member(self, member_id: int, kind: str, limit: int) -> list[Purchase]:
        return list((await self.session.execute(
            select(Purchase).where(Purchase.member_id == member_id, Purchase.kind == kind)
            .order_by(Purchase.id.desc()).limit(limit))).scalars())

    async def refunds_due(self, limit: int) -> list[Purchase]:
        return list((await self.session.execute(
            select(Purchase).where(Purchase.refund_due)
            .order_by(Purchase.id.desc()).limit(limit))).scalars())

    async def close(self, purchase_id: int, **values: Any) -> Purchase:
        return (await self.session.execute(
            update(Purchase).where(Purchase.id == purchase_id).values(**values)
            .returning(Purchase))).scalar_one()

    async def expire_due(self, now: datetime, limit: int) -> list[Any]:
        return list((await self.session.execute(EXPIRE_DUE, {"now": now,
                                                             "limit": limit})).all())
