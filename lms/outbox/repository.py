"""SQL of the outbox relay: claim unpublished events in id order, mark them published."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import BigInteger

# SKIP LOCKED lets several relays run side by side, each taking the next rows no one holds.
CLAIM_UNPUBLISHED = text("""
SELECT id, topic, payload, created_at FROM outbox_events
WHERE published_at IS NULL
ORDER BY id
LIMIT :limit
FOR UPDATE SKIP LOCKED
""")

MARK_PUBLISHED = text("""
UPDATE outbox_events SET published_at = now()
WHERE id = ANY(:ids) AND published_at IS NULL
""").bindparams(bindparam("ids", type_=ARRAY(BigInteger())))


@dataclass(frozen=True, slots=True)
class Event:
    """A domain event as consumers see it; ``id`` is what they deduplicate on."""

    id: int
    topic: str
    payload: dict[str, Any]
    created_at: datetime


class OutboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_unpublished(self, limit: int) -> list[Event]:
        rows = await self.session.execute(CLAIM_UNPUBLISHED, {"limit": limit})
        return [Event(id=r.id, topic=r.topic, payload=r.payload, created_at=r.created_at)
                for r in rows]

    async def mark_published(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        result: Any = await self.session.execute(MARK_PUBLISHED, {"ids": list(ids)})
        count: int = result.rowcount
        return count
