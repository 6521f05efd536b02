"""Closing ended months: one unit of work per (partner, month), so one partner's failure
does not hold back the others and a rerun only does what is left."""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database
from lms.settlement.service import Month, SettlementService

log = logging.getLogger(__name__)


async def _close(partner_id: int, month: Month, now: datetime | None,
                 session: AsyncSession) -> bool:
    return await SettlementService(session).close_month(partner_id, month, now)


async def close_statements(db: Database, month: Month | None = None,
                           now: datetime | None = None) -> list[tuple[int, Month]]:
    """Close ``month`` for every partner (or every ended month not closed yet); returns the
    (partner, month) pairs this run closed. Safe to run twice, also concurrently: the second
    closer of a month finds it closed."""
    due = await db.transaction(lambda s: SettlementService(s).months_to_close(now))
    if month is not None:
        due = [(p, m) for p, m in due if m == month]
    closed = []
    for partner_id, due_month in due:
        if await db.transaction(partial(_close, partner_id, due_month, now)):
            log.info("closed the statement of partner %d for %s", partner_id, due_month)
            closed.append((partner_id, due_month))
    return closed
