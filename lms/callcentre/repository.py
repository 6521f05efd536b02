"""SQL of the call centre: member search, the reads of the 360° view, reason codes, limits,
adjustments and their daily counters, member status and merges, and the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.models import Member
from lms.audit.models import AuditRecord
from lms.callcentre.models import Adjustment, AdjustmentDay, AdjustmentLimit, ReasonCode

HIT = """
SELECT m.id, m.card_number, m.first_name, m.last_name, m.tier, m.status, m.email,
       (SELECT t.card_number FROM members t WHERE t.id = m.merged_into_id)
         AS merged_into_card_number
"""

BY_CARD = text(HIT + "FROM members m WHERE m.card_number = :card")
BY_EMAIL = text(HIT + "FROM members m WHERE m.email = :email")
BY_PHONE = text(HIT + """
FROM members m WHERE m.phone = :phone AND m.id > :after ORDER BY m.id LIMIT :limit
""")
# Order and ranges on the C-collated lower-case name indexes (ix_members_*_name_lower): a
# prefix is an index range and the page is the next rows of the index.
BY_LAST_NAME = text(HIT + """
FROM members m
WHERE lower(m.last_name) COLLATE "C" LIKE :last ESCAPE '\\'
  AND lower(m.first_name) COLLATE "C" LIKE :first ESCAPE '\\'
  AND (lower(m.last_name) COLLATE "C", lower(m.first_name) COLLATE "C", m.id)
      > (CAST(:k1 AS text) COLLATE "C", CAST(:k2 AS text) COLLATE "C", :k3)
ORDER BY lower(m.last_name) COLLATE "C", lower(m.first_name) COLLATE "C", m.id
LIMIT :limit
""")
BY_FIRST_NAME = text(HIT + """
FROM members m
WHERE lower(m.first_name) COLLATE "C" LIKE :first ESCAPE '\\'
  AND (lower(m.first_name) COLLATE "C", lower(m.last_name) COLLATE "C", m.id)
      > (CAST(:k1 AS text) COLLATE "C", CAST(:k2 AS text) COLLATE "C", :k3)
ORDER BY lower(m.first_name) COLLATE "C", lower(m.last_name) COLLATE "C", m.id
LIMIT :limit
""")
# A ticket's coupons credited to a member, or claimed by one.
BY_TICKET = text(HIT + """
FROM members m
WHERE m.id IN (SELECT member_id FROM flown_coupons WHERE ticket_number = :ticket
               UNION SELECT member_id FROM claims WHERE ticket_number = :ticket)
  AND m.id > :after
ORDER BY m.id LIMIT :limit
""")

# The member and every duplicate merged into it, however many merges deep.
MERGED_SET = text("""
WITH RECURSIVE s(id, card_number) AS (
  SELECT id, card_number FROM members WHERE id = :id
  UNION
  SELECT m.id, m.card_number FROM members m JOIN s ON m.merged_into_id = s.id
)
SELECT id, card_number FROM s
""")

HOLDS = text("""
SELECT id, amount, captured, status, reference, expires_at, created_at, closed_at
FROM holds WHERE account_id = :account_id
ORDER BY status = 'pending' DESC, id DESC LIMIT :limit
""")
PENDING_HOLDS = text("""
SELECT id, expires_at FROM holds WHERE account_id = :account_id AND status = 'pending'
ORDER BY id
""")
LATEST_LOT_EXPIRY = text("""
SELECT max(expires_at) FROM lots WHERE account_id = :account_id AND remaining > 0
""")
TIER_HISTORY = text("""
SELECT m.card_number, h.from_tier, h.to_tier, h.reason, h.valid_until, h.at
FROM tier_history h JOIN members m ON m.id = h.member_id
WHERE h.member_id = ANY(:ids) ORDER BY h.at DESC, h.id DESC LIMIT :limit
""")
FLIGHTS = text("""
SELECT m.card_number, f.ticket_number, f.coupon_number, f.flight_date, f.carrier,
       f.flight_number, f.origin, f.destination, f.booking_class, f.credited_at
FROM flown_coupons f JOIN members m ON m.id = f.member_id
WHERE f.member_id = ANY(:ids) ORDER BY f.flight_date DESC, f.ticket_number, f.coupon_number
LIMIT :limit
""")
CLAIMS = text("""
SELECT m.card_number, c.id, c.ticket_number, c.flight_number, c.flight_date, c.status,
       c.reason, c.entry_id, c.created_at, c.resolved_at
FROM claims c JOIN members m ON m.id = c.member_id
WHERE c.member_id = ANY(:ids) ORDER BY c.id DESC LIMIT :limit
""")
PURCHASES = text("""
SELECT p.id, m.card_number, p.reference, p.kind, p.miles, p.tier, p.amount_minor, p.currency,
       p.status, p.created_at, p.closed_at, p.entry_id, p.valid_until, p.refund_due, p.note
FROM purchases p JOIN members m ON m.id = p.member_id
WHERE p.member_id = ANY(:ids) ORDER BY p.id DESC LIMIT :limit
""")
ENTRY_MEMBERS = text("""
SELECT DISTINCT m.id, m.card_number FROM postings p JOIN members m ON m.account_id = p.account_id
WHERE p.entry_id = :entry_id ORDER BY m.id
""")
MERGE_ENTRY = text("""
SELECT e.id, (SELECT l.expires_at FROM lots l WHERE l.entry_id = e.id LIMIT 1) AS lot_expires_at,
       array_agg(p.unit ORDER BY p.id) AS units, array_agg(p.amount ORDER BY p.id) AS amounts
FROM journal_entries e JOIN postings p ON p.entry_id = e.id AND p.account_id = :account_id
WHERE e.source = 'merge' AND e.external_ref = :card
GROUP BY e.id
""")
LOCK_MEMBERS = text("""
SELECT id FROM members WHERE id = ANY(:ids) ORDER BY id FOR UPDATE
""")
# Opens the day's counter row so that the conditional UPDATE below always has one to lock.
OPEN_DAY = text("""
INSERT INTO adjustment_days (staff_id, day, unit) VALUES (:staff_id, :day, :unit)
ON CONFLICT DO NOTHING
""")
# Raise the counter only if it stays within the limit; concurrent callers queue on the row
# and each re-reads the committed total before deciding.
USE_DAY = text("""
UPDATE adjustment_days SET used = used + :amount
WHERE staff_id = :staff_id AND day = :day AND unit = :unit AND used + :amount <= :limit
RETURNING used
""")


class CallCentreRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _rows(self, query: Any, params: dict[str, Any]) -> list[Any]:
        return list((await self.session.execute(query, params)).all())

    # -- members ---------------------------------------------------------------------------

    async def member_by_card(self, card: str) -> Member | None:
        return (await self.session.execute(
            select(Member).where(Member.card_number == card))).scalar_one_or_none()

    async def member_by_id(self, member_id: int) -> Member | None:
        return await self.session.get(Member, member_id)

    async def lock_members(self, ids: Sequence[int]) -> None:
        """Row locks in id order, so that two merges of the same pair never deadlock."""
        await self.session.execute(LOCK_MEMBERS, {"ids": sorted(ids)})

    async def search_card(self, card: str) -> list[Any]:
        return await self._rows(BY_CARD, {"card": card})

    async def search_email(self, email: str) -> list[Any]:
        return await self._rows(BY_EMAIL, {"email": email})

    async def search_phone(self, phone: str, after: int, limit: int) -> list[Any]:
        return await self._rows(BY_PHONE, {"phone": phone, "after": after, "limit": limit})

    async def search_ticket(self, ticket: str, after: int, limit: int) -> list[Any]:
        return await self._rows(BY_TICKET, {"ticket": ticket, "after": after, "limit": limit})

    async def search_last_name(self, last: str, first: str, key: list[Any],
                               limit: int) -> list[Any]:
        return await self._rows(BY_LAST_NAME, {"last": last, "first": first, "k1": key[0],
                                               "k2": key[1], "k3": key[2], "limit": limit})

    async def search_first_name(self, first: str, key: list[Any], limit: int) -> list[Any]:
        return await self._rows(BY_FIRST_NAME, {"first": first, "k1": key[0], "k2": key[1],
                                                "k3": key[2], "limit": limit})

    async def merged_set(self, member_id: int) -> dict[int, str]:
        return {r.id: r.card_number for r in await self._rows(MERGED_SET, {"id": member_id})}

    async def set_status(self, member_id: int, status: str) -> None:
        await self.session.execute(update(Member).where(Member.id == member_id)
                                   .values(status=status))

    async def mark_merged(self, member_id: int, into_id: int, at: datetime) -> None:
        await self.session.execute(update(Member).where(Member.id == member_id).values(
            status="closed", merged_into_id=into_id, merged_at=at))

    async def merge_entry(self, card: str, into_account_id: int) -> dict[str, Any] | None:
        """The merge entry of a duplicate: its id, the lot expiry and what reached the
        target account, per unit."""
        row = (await self.session.execute(MERGE_ENTRY, {
            "card": card, "account_id": into_account_id})).first()
        if row is None:
            return None
        return {"id": row.id, "lot_expires_at": row.lot_expires_at,
                "moved": list(zip(row.units, row.amounts, strict=True))}

    # -- reads of the 360° view --------------------------------------------------------------

    async def holds(self, account_id: int, limit: int) -> list[Any]:
        return await self._rows(HOLDS, {"account_id": account_id, "limit": limit})

    async def pending_holds(self, account_id: int) -> list[Any]:
        return await self._rows(PENDING_HOLDS, {"account_id": account_id})

    async def latest_lot_expiry(self, account_id: int) -> datetime | None:
        value: datetime | None = (await self.session.execute(
            LATEST_LOT_EXPIRY, {"account_id": account_id})).scalar_one()
        return value

    async def tier_history(self, ids: Sequence[int], limit: int) -> list[Any]:
        return await self._rows(TIER_HISTORY, {"ids": list(ids), "limit": limit})

    async def flights(self, ids: Sequence[int], limit: int) -> list[Any]:
        return await self._rows(FLIGHTS, {"ids": list(ids), "limit": limit})

    async def claims(self, ids: Sequence[int], limit: int) -> list[Any]:
        return await self._rows(CLAIMS, {"ids": list(ids), "limit": limit})

    async def purchases(self, ids: Sequence[int], limit: int) -> list[Any]:
        return await self._rows(PURCHASES, {"ids": list(ids), "limit": limit})

    async def entry_members(self, entry_id: int) -> list[Any]:
        return await self._rows(ENTRY_MEMBERS, {"entry_id": entry_id})

    # -- reason codes and limits -------------------------------------------------------------

    async def reason_codes(self, active_only: bool) -> list[ReasonCode]:
        query = select(ReasonCode).order_by(ReasonCode.code)
        if active_only:
            query = query.where(ReasonCode.active.is_(True))
        return list((await self.session.execute(query)).scalars())

    async def reason_code(self, code: str) -> ReasonCode | None:
        return await self.session.get(ReasonCode, code)

    async def add_reason_code(self, code: str, description: str) -> ReasonCode | None:
        """The new code, or None when it exists (also by a concurrent insert)."""
        return (await self.session.execute(
            pg_insert(ReasonCode).values(code=code, description=description)
            .on_conflict_do_nothing(index_elements=[ReasonCode.code])
            .returning(ReasonCode))).scalar_one_or_none()

    async def set_reason_code_active(self, code: str, active: bool,
                                     now: datetime) -> ReasonCode | None:
        return (await self.session.execute(
            update(ReasonCode).where(ReasonCode.code == code)
            .values(active=active, updated_at=now).returning(ReasonCode)
            .execution_options(populate_existing=True))).scalar_one_or_none()

    async def limits(self) -> list[AdjustmentLimit]:
        return list((await self.session.execute(
            select(AdjustmentLimit).order_by(AdjustmentLimit.role))).scalars())

    async def limit_for(self, role: str) -> AdjustmentLimit | None:
        return await self.session.get(AdjustmentLimit, role)

    async def set_limit(self, role: str, per_adjustment: int, per_day: int,
                        now: datetime) -> AdjustmentLimit:
        return (await self.session.execute(
            pg_insert(AdjustmentLimit).values(role=role, per_adjustment=per_adjustment,
                                              per_day=per_day, updated_at=now)
            .on_conflict_do_update(index_elements=[AdjustmentLimit.role], set_={
                "per_adjustment": per_adjustment, "per_day": per_day, "updated_at": now})
            .returning(AdjustmentLimit)
            .execution_options(populate_existing=True))).scalar_one()

    async def use_daily_allowance(self, staff_id: int, day: date, unit: str, amount: int,
                                  limit: int) -> bool:
        """Count ``amount`` against the day's allowance if it fits; False if it does not."""
        params = {"staff_id": staff_id, "day": day, "unit": unit}
        await self.session.execute(OPEN_DAY, params)
        row = (await self.session.execute(
            USE_DAY, params | {"amount": amount, "limit": limit})).first()
        return row is not None

    async def used_today(self, staff_id: int, day: date, unit: str) -> int:
        used = (await self.session.execute(select(AdjustmentDay.used).where(
            AdjustmentDay.staff_id == staff_id, AdjustmentDay.day == day,
            AdjustmentDay.unit == unit))).scalar_one_or_none()
        return int(used or 0)

    # -- adjustments -------------------------------------------------------------------------

    async def add_adjustment(self, **values: Any) -> Adjustment:
        adjustment = Adjustment(**values)
        self.session.add(adjustment)
        await self.session.flush()
        await self.session.refresh(adjustment)
        return adjustment

    async def adjustment(self, adjustment_id: int, *, lock: bool = False) -> Adjustment | None:
        query = select(Adjustment).where(Adjustment.id == adjustment_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(
            query.execution_options(populate_existing=True))).scalar_one_or_none()

    async def decide(self, adjustment_id: int, **values: Any) -> Adjustment:
        return (await self.session.execute(
            update(Adjustment).where(Adjustment.id == adjustment_id).values(**values)
            .returning(Adjustment).execution_options(populate_existing=True))).scalar_one()

    async def adjustments(self, *, status: str | None, requested_by: int | None,
                          member_ids: Sequence[int] | None, before: int,
                          limit: int) -> list[tuple[Adjustment, str]]:
        query = (select(Adjustment, Member.card_number)
                 .join(Member, Member.id == Adjustment.member_id)
                 .where(Adjustment.id < before).order_by(Adjustment.id.desc()).limit(limit))
        if status is not None:
            query = query.where(Adjustment.status == status)
        if requested_by is not None:
            query = query.where(Adjustment.requested_by == requested_by)
        if member_ids is not None:
            query = query.where(Adjustment.member_id.in_(list(member_ids)))
        return [(a, c) for a, c in (await self.session.execute(query)).all()]

    # -- audit -------------------------------------------------------------------------------

    async def audit(self, **values: Any) -> None:
        await self.session.execute(insert(AuditRecord).values(**values))

    async def audit_records(self, *, actor_type: str | None, actor_id: str | None,
                            action: str | None, target_type: str | None,
                            target_ids: Sequence[str] | None, since: datetime | None,
                            until: datetime | None, before: int,
                            limit: int) -> list[AuditRecord]:
        query = (select(AuditRecord).where(AuditRecord.id < before)
                 .order_by(AuditRecord.id.desc()).limit(limit))
        if actor_type is not None:
            query = query.where(AuditRecord.actor_type == actor_type)
        if actor_id is not None:
            query = query.where(AuditRecord.actor_id == actor_id)
        if action is not None:
            query = query.where(AuditRecord.action == action)
        if target_type is not None:
            query = query.where(AuditRecord.target_type == target_type)
        if target_ids is not None:
            query = query.where(AuditRecord.target_id.in_(list(target_ids)))
        if since is not None:
            query = query.where(AuditRecord.at >= since)
        if until is not None:
            query = query.where(AuditRecord.at < until)
        return list((await self.session.execute(query)).scalars())
