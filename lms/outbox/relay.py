"""The outbox relay: hands committed domain events to their consumers, then marks them
published.

Delivery is at least once: consumers run inside the relay's transaction, so if it rolls back
(a consumer failed, the commit failed) the same events are handed over again by the next run.
Consumers therefore deduplicate on ``Event.id``. A failing consumer holds back its batch,
and every later event, until it succeeds: order is kept rather than skipping ahead.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database
from lms.outbox.repository import Event, OutboxRepository

log = logging.getLogger(__name__)

Consumer = Callable[[Event], Awaitable[None]]

ALL_TOPICS = "*"

# The relay's session while consumers run, for a consumer whose effect is a write that must
# commit (or roll back) with the event's publication, e.g. marking a wallet pass changed.
relay_session: ContextVar[AsyncSession] = ContextVar("relay_session")


class ConsumerRegistry:
    """Topic -> consumers. ``ALL_TOPICS`` consumers see every event."""

    def __init__(self) -> None:
        self._consumers: dict[str, list[Consumer]] = defaultdict(list)

    def register(self, topic: str, consumer: Consumer) -> None:
        if consumer not in self._consumers[topic]:
            self._consumers[topic].append(consumer)

    def for_topic(self, topic: str) -> list[Consumer]:
        return [*self._consumers.get(ALL_TOPICS, ()), *self._consumers.get(topic, ())]


async def log_event(event: Event) -> None:
    log.debug("outbox event %s %s %s", event.id, event.topic, event.payload)


consumers = ConsumerRegistry()
consumers.register(ALL_TOPICS, log_event)


async def relay_batch(session: AsyncSession, registry: ConsumerRegistry, limit: int) -> int:
    """Deliver up to ``limit`` unpublished events in id order; returns how many."""
    repo = OutboxRepository(session)
    events = await repo.claim_unpublished(limit)
    token = relay_session.set(session)
    try:
        for event in events:
            for consumer in registry.for_topic(event.topic):
                await consumer(event)
    finally:
        relay_session.reset(token)
    await repo.mark_published([e.id for e in events])
    return len(events)


async def relay(db: Database, registry: ConsumerRegistry = consumers, *, batch_size: int = 500,
                max_batches: int = 20) -> int:
    """Publish what is waiting, one transaction per batch; returns how many were published.

    ``max_batches`` bounds one run so that a steady stream does not keep a worker forever;
    the next scheduled run picks up the rest.
    """
    total = 0
    for _ in range(max_batches):
        published = await db.transaction(lambda s: relay_batch(s, registry, batch_size))
        total += published
        if published < batch_size:
            break
    return total
