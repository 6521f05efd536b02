"""SQL of consent codes, the per-card guard, partner holds, redemptions and refunds.

``RedemptionRepository`` speaks through a session; ``HoldWriteRepository`` is the hot path
of codes, holds, captures and voids on a bare asyncpg connection.
"""

from __future__ import annotations

from datetime import datetime, timedelta
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

# What opening a hold needs besides the code: the partner's contract and the member.
OPEN_FACTS = """
    SELECT p.name, p.status, p.currency, p.value_per_mile_milli_minor, p.min_cash_share_bp,
           p.clearing_account_id, m.status AS member_status, m.account_id
      FROM partners p LEFT JOIN members m ON m.id = $2
     WHERE p.id = $1"""

# A member code a partner presents, checked in one statement of its own (migration 0025), run
# in autocommit so that a wrong code stays counted: a refusal, or the code's member and the
# account it draws on.
CHECK_CODE = """
    SELECT refusal, refusal_detail, code_id, member_id, account_id
      FROM member_code_check($1, $2, $3, $4, $5, $6, $7, NULL, NULL)"""

# A partner's hold opened, captured and voided, each its whole unit of work in one statement
# (migration 0025), run in autocommit: the code's check (opening), the key's claim, the
# rules, the ledger's work, the rows and events, and the stored answer.
OPEN_HOLD = """
    SELECT status_code, response_body, replayed, refusal, refusal_detail
      FROM partner_hold_open($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                             $16)"""

CAPTURE_HOLD = """
    SELECT status_code, response_body, replayed
      FROM partner_hold_capture($1, $2, $3, $4, $5, $6)"""

VOID_HOLD = """
    SELECT status_code, response_body, replayed
      FROM partner_hold_void($1, $2, $3, $4, $5)"""


class HoldWriteRepository:
    """The SQL of a member's code issued (``Database.raw_transaction``), and of a partner's
    code check, quote, hold, capture and void, each one statement on a bare connection
    (``Database.autocommit``)."""

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

    async def open_facts(self, partner_id: int, member_id: int) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(OPEN_FACTS, partner_id,
                                                              member_id)
        return row

    async def check_code(self, partner_id: int, card_number: str, code_hash: str,
                         now: datetime, *, max_failures: int, window: timedelta,
                         lock: timedelta) -> asyncpg.Record:
        """member_code_check()'s one row: ``refusal`` (NULL when the code is good) and
        ``refusal_detail``, else ``code_id``, ``member_id`` and ``account_id``."""
        row: asyncpg.Record | None = await self.conn.fetchrow(
            CHECK_CODE, partner_id, card_number, code_hash, now, max_failures, window, lock)
        assert row is not None
        return row

    async def open_hold(self, principal: str, key: str, fingerprint: str, *,
                        partner_id: int, card_number: str, code_hash: str, miles: int,
                        cash_amount: int, currency: str, order_reference: str,
                        expires_at: datetime, now: datetime, max_failures: int,
                        window: timedelta, lock: timedelta, hold_max_ttl: timedelta
                        ) -> asyncpg.Record:
        """partner_hold_open()'s one row: ``refusal`` and ``refusal_detail`` when the code
        was refused (a wrong one counted), else ``status_code``, ``response_body`` and
        ``replayed``."""
        row: asyncpg.Record | None = await self.conn.fetchrow(
            OPEN_HOLD, principal, key, fingerprint, partner_id, card_number, code_hash, miles,
            cash_amount, currency, order_reference, expires_at, now, max_failures, window,
            lock, hold_max_ttl)
        assert row is not None
        return row

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
