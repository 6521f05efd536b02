"""SQL of consent codes, the per-card guard, partner holds, redemptions and refunds.

``RedemptionRepository`` speaks through a session; ``HoldWriteRepository`` is the hot path
of codes, holds, captures and voids on a bare asyncpg connection.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import RawConnection
from lms.redemption.models import (
    PartnerHold,
    Redemption,
    RedemptionCode,
    RedemptionGuard,
    RedemptionRefund,
)


class RedemptionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- codes ------------------------------------------------------------------------------

    async def account_open(self, account_id: int) -> bool:
        status = (await self.session.execute(
            text("SELECT status FROM accounts WHERE id = :id"), {"id": account_id})).scalar()
        return bool(status == "open")

    async def live_code_count(self, member_id: int, now: datetime) -> int:
        count: int = (await self.session.execute(
            select(func.count()).select_from(RedemptionCode).where(
                RedemptionCode.member_id == member_id, RedemptionCode.used_at.is_(None),
                RedemptionCode.revoked_at.is_(None), RedemptionCode.expires_at > now)
        )).scalar_one()
        return count

    # -- the guard against guessing ---------------------------------------------------------

    async def guard(self, card_number: str) -> RedemptionGuard | None:
        return await self.session.get(RedemptionGuard, card_number, populate_existing=True)

    # -- holds ------------------------------------------------------------------------------

    async def add_hold(self, **values: Any) -> PartnerHold:
        return (await self.session.execute(
            insert(PartnerHold).values(**values).returning(PartnerHold))).scalar_one()

    async def hold(self, partner_id: int, hold_id: int) -> PartnerHold | None:
        # Filtered by the calling partner: another partner's hold is simply not found.
        return (await self.session.execute(select(PartnerHold).where(
            PartnerHold.partner_id == partner_id, PartnerHold.hold_id == hold_id))
        ).scalar_one_or_none()

    async def holds_by_order(self, partner_id: int, order_reference: str
                             ) -> list[PartnerHold]:
        return list((await self.session.execute(select(PartnerHold).where(
            PartnerHold.partner_id == partner_id,
            PartnerHold.order_reference == order_reference)
            .order_by(PartnerHold.hold_id).limit(100))).scalars())

    async def redemption_ids_of(self, hold_ids: list[int]) -> dict[int, int]:
        rows = await self.session.execute(select(Redemption.hold_id, Redemption.id).where(
            Redemption.hold_id.in_(hold_ids)))
        return {row[0]: row[1] for row in rows}

    # -- redemptions and refunds ------------------------------------------------------------

    async def add_redemption(self, **values: Any) -> Redemption:
        return (await self.session.execute(
            insert(Redemption).values(**values).returning(Redemption))).scalar_one()

    async def redemption(self, partner_id: int, redemption_id: int, *, lock: bool = False
                         ) -> Redemption | None:
        query = select(Redemption).where(Redemption.partner_id == partner_id,
                                         Redemption.id == redemption_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(
            query.execution_options(populate_existing=True))).scalar_one_or_none()

    async def redemptions_by_order(self, partner_id: int, order_reference: str
                                   ) -> list[Redemption]:
        return list((await self.session.execute(select(Redemption).where(
            Redemption.partner_id == partner_id,
            Redemption.order_reference == order_reference)
            .order_by(Redemption.id).limit(100))).scalars())

    async def add_refund(self, **values: Any) -> RedemptionRefund:
        return (await self.session.execute(
            insert(RedemptionRefund).values(**values).returning(RedemptionRefund))
        ).scalar_one()

    async def set_refunded(self, redemption_id: int, refunded_miles: int) -> None:
        await self.session.execute(update(Redemption).where(
            Redemption.id == redemption_id).values(refunded_miles=refunded_miles))

    async def refunds_of(self, redemption_id: int) -> list[RedemptionRefund]:
        return list((await self.session.execute(select(RedemptionRefund).where(
            RedemptionRefund.redemption_id == redemption_id)
            .order_by(RedemptionRefund.id))).scalars())


# After the card's lock: its guard against guessing and the live code with that hash, with
# its member (each NULL when missing).
CODE_FACTS = """
    SELECT g.failures, g.window_started_at, g.locked_until,
           c.id AS code_id, c.partner_id AS code_partner_id, c.account_id AS code_account_id,
           c.member_id, c.card_number, c.member_status
      FROM (SELECT 1) AS one
      LEFT JOIN redemption_guards g ON g.card_number = $1
      LEFT JOIN LATERAL (
           SELECT c.id, c.partner_id, c.account_id, m.id AS member_id, m.card_number,
                  m.status AS member_status
             FROM redemption_codes c JOIN members m ON m.id = c.member_id
            WHERE c.code_hash = $2 AND c.used_at IS NULL AND c.revoked_at IS NULL
              AND c.expires_at > $3
            LIMIT 1) c ON true"""

# What issuing a code needs: the member, its card's guard and the partner the code is bound
# to, if any (partner columns NULL when no partner has that code).
ISSUE_FACTS = """
    SELECT m.status, m.card_number, g.failures, g.window_started_at, g.locked_until,
           p.id AS partner_id, p.status AS partner_status
      FROM members m
      LEFT JOIN redemption_guards g ON g.card_number = m.card_number
      LEFT JOIN partners p ON p.code = $2
     WHERE m.id = $1"""

ADD_CODE = """
    INSERT INTO redemption_codes (member_id, partner_id, account_id, expires_at, code_hash)
    VALUES ($1, $2, $3, $4, $5)"""

LOCK_CARD = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"

SAVE_GUARD = """
    INSERT INTO redemption_guards (card_number, failures, window_started_at, locked_until,
                                   updated_at)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (card_number) DO UPDATE
       SET failures = excluded.failures, window_started_at = excluded.window_started_at,
           locked_until = excluded.locked_until, updated_at = excluded.updated_at"""

MEMBER_BY_CARD = "SELECT id, card_number FROM members WHERE card_number = $1"

REVOKE_LIVE_CODES = """
    UPDATE redemption_codes SET revoked_at = $2
     WHERE member_id = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2"""

# What opening a hold needs besides the code: the partner's contract and the member.
OPEN_FACTS = """
    SELECT p.name, p.status, p.currency, p.value_per_mile_milli_minor, p.min_cash_share_bp,
           p.clearing_account_id, m.status AS member_status, m.account_id
      FROM partners p LEFT JOIN members m ON m.id = $2
     WHERE p.id = $1"""

CONSUME_CODE = """
    UPDATE redemption_codes SET used_at = $2
     WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2
    RETURNING id"""

ADD_HOLD = """
    INSERT INTO partner_holds (hold_id, partner_id, member_id, code_id, order_reference, miles,
                               cash_amount, currency, value_per_mile_milli_minor, origin)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"""

# A partner's capture and void of a hold, each its whole unit of work in one statement
# (migration 0026), run in autocommit: the key's claim, the checks, the ledger's work, the
# hold closed with its event (and the redemption's row) and the stored answer.
CAPTURE_HOLD = """
    SELECT status_code, response_body, replayed
      FROM partner_hold_capture($1, $2, $3, $4, $5, $6)"""

VOID_HOLD = """
    SELECT status_code, response_body, replayed
      FROM partner_hold_void($1, $2, $3, $4, $5)"""


class HoldWriteRepository:
    """The SQL of a partner's code check and hold besides the ledger's, on the unit of
    work's asyncpg connection (``Database.raw_transaction``), and of its capture and void,
    each one statement on a bare connection (``Database.autocommit``)."""

    def __init__(self, conn: RawConnection) -> None:
        self.conn = conn

    async def issue_facts(self, member_id: int, partner_code: str | None
                          ) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(ISSUE_FACTS, member_id,
                                                              partner_code)
        return row

    async def add_code(self, *, member_id: int, partner_id: int | None,
                       account_id: int | None, expires_at: datetime, code_hash: str) -> None:
        await self.conn.execute(ADD_CODE, member_id, partner_id, account_id, expires_at,
                                code_hash)

    async def lock_card(self, card_number: str) -> None:
        """Serialise every code check of one card number (known or not) until the end of the
        transaction: each check sees the failures of the one before it."""
        await self.conn.execute(LOCK_CARD, "redemption:" + card_number)

    async def code_facts(self, card_number: str, code_hash: str, now: datetime
                         ) -> asyncpg.Record:
        row: asyncpg.Record | None = await self.conn.fetchrow(CODE_FACTS, card_number,
                                                              code_hash, now)
        assert row is not None
        return row

    async def save_guard(self, card_number: str, *, failures: int, window_started_at: datetime,
                         locked_until: datetime | None, now: datetime) -> None:
        await self.conn.execute(SAVE_GUARD, card_number, failures, window_started_at,
                                locked_until, now)

    async def member_by_card(self, card_number: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(MEMBER_BY_CARD, card_number)
        return row

    async def revoke_live_codes(self, member_id: int, now: datetime) -> None:
        await self.conn.execute(REVOKE_LIVE_CODES, member_id, now)

    async def open_facts(self, partner_id: int, member_id: int) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(OPEN_FACTS, partner_id,
                                                              member_id)
        return row

    async def consume_code(self, code_id: int, now: datetime) -> bool:
        """Mark a live code used; False when it was used, revoked or expired meanwhile (a
        concurrent use of the same code waits here for the first one's commit)."""
        return await self.conn.fetchval(CONSUME_CODE, code_id, now) is not None

    async def add_hold(self, *, hold_id: int, partner_id: int, member_id: int,
                       code_id: int | None, order_reference: str, miles: int, cash_amount: int,
                       currency: str, value_per_mile_milli_minor: int, origin: str) -> None:
        await self.conn.execute(ADD_HOLD, hold_id, partner_id, member_id, code_id,
                                order_reference, miles, cash_amount, currency,
                                value_per_mile_milli_minor, origin)

    async def capture(self, principal: str, key: str, fingerprint: str, *, partner_id: int,
                      hold_id: int, miles: int | None) -> asyncpg.Record:
        """partner_hold_capture()'s one row: ``status_code``, ``response_body``,
        ``replayed``."""
        row: asyncpg.Record | None = await self.conn.fetchrow(
            CAPTURE_HOLD, principal, key, fingerprint, partner_id, hold_id, miles)
        assert row is not None  # a function with OUT parameters returns one row
        return row

    async def void(self, principal: str, key: str, fingerprint: str, *, partner_id: int,
                   hold_id: int) -> asyncpg.Record:
        """partner_hold_void()'s one row, as ``capture``'s."""
        row: asyncpg.Record | None = await self.conn.fetchrow(
            VOID_HOLD, principal, key, fingerprint, partner_id, hold_id)
        assert row is not None
        return row
