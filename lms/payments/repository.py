"""SQL of received payment webhooks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from lms.payments.models import PaymentEvent


class PaymentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, **values: Any) -> int | None:
        """The new row's id, or None when this provider payment was received before (a
        concurrent duplicate waits for the first one's commit, then lands here)."""
        row_id: int | None = (await self.session.execute(
            pg_insert(PaymentEvent).values(**values)
            .on_conflict_do_nothing(index_elements=[PaymentEvent.provider_payment_id])
            .returning(PaymentEvent.id))).scalar_one_or_none()
        return row_id

    async def by_payment_id(self, payment_id: str) -> PaymentEvent | None:
        return (await self.session.execute(select(PaymentEvent).where(
            PaymentEvent.provider_payment_id == payment_id))).scalar_one_or_none()

    async def set_outcome(self, event_id: int, outcome: str) -> None:
        await self.session.execute(update(PaymentEvent).where(PaymentEvent.id == event_id)
                                   .values(outcome=outcome))
