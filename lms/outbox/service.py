"""Writing domain events into the outbox, inside the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from lms.outbox.models import OutboxEvent


async def emit(session: AsyncSession, topic: str, payload: dict[str, Any]) -> None:
    await session.execute(insert(OutboxEvent).values(topic=topic, payload=payload))
