"""The outbox relay: hands committed domain events to their consumers, then marks them
published. Two sources: the ``outbox_events`` table, and the journal, which is the feed of
the ledger's miles events (lms/outbox/feed.py).

Delivery is at least once: consumers run inside the relay's transaction, so if it rolls back
(a consumer failed, the commit failed) the same events are handed over again by the next run.
Consumers therefore deduplicate on ``Event.id`` (journal events have negative ids, outbox
events positive ones). A failing consumer holds back its batch,
and every later event, until it succeeds: order is kept rather than skipping ahead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database
from lms.outbox.feed import JournalFeed
from lms.outbox.repository import Event, OutboxRepository

log = logging.getLogger(__name__)

Consumer = Callable[[Event], Awaitable[None]]

ALL_TOPICS = "*"

SETTLE_POLL_SECONDS = 0.02

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


@dataclass(frozen=True, slots=True)
class Batch:
    published: int
    # A source gave as many as asked: there may be more right away.
    full: bool
    # The journal feed's horizon (lms/outbox/feed.py), None when another relay held it.
    horizon: int | None


async def relay_batch(session: AsyncSession, registry: ConsumerRegistry, limit: int) -> Batch:
    """Deliver up to ``limit`` unpublished outbox events in id order, then the miles events of
    up to ``limit`` journal entries in (xid, id) order."""
    repo = OutboxRepository(session)
    feed = JournalFeed(session)
    events = await repo.claim_unpublished(limit)
    journal = await feed.claim(limit)
    token = relay_session.set(session)
    try:
        for event in [*events, *(journal.events if journal else ())]:
            for consumer in registry.for_topic(event.topic):
                await consumer(event)
    finally:
        relay_session.reset(token)
    await repo.mark_published([e.id for e in events])
    if journal is not None:
        await feed.advance(journal)
    return Batch(published=len(events) + (len(journal.events) if journal else 0),
                 full=len(events) == limit or (journal is not None and journal.entries == limit),
                 horizon=journal.horizon if journal else None)


async def relay(db: Database, registry: ConsumerRegistry = consumers, *, batch_size: int = 500,
                max_batches: int = 20, settle_seconds: float = 2.0) -> int:
    """Publish what is waiting, one transaction per batch; returns how many were published.

    ``max_batches`` bounds one run so that a steady stream does not keep a worker forever;
    the next scheduled run picks up the rest. Journal entries committed before the run
    started are handed over by it, waiting up to ``settle_seconds`` for transactions that
    began before them to end (until then an entry is not yet safe to read, see
    lms/outbox/feed.py); a run that gives up leaves them to the next one.
    """
    newest = await db.transaction(lambda s: JournalFeed(s).newest_xid())
    deadline = time.monotonic() + settle_seconds
    total = 0
    for _ in range(max_batches):
        batch = await db.transaction(lambda s: relay_batch(s, registry, batch_size))
        total += batch.published
        if batch.full:
            continue
        # Done, or another relay holds the journal's cursor and will take it from here.
        if newest is None or batch.horizon is None or batch.horizon > newest:
            break
        if not await horizon_passes(db, newest, deadline):
            break
    return total


async def horizon_passes(db: Database, xid: int, deadline: float) -> bool:
    """Wait, holding no lock (a relay beside this one must not find rows or the cursor
    taken), until every transaction up to ``xid`` has ended; False at the deadline."""
    while time.monotonic() < deadline:
        await asyncio.sleep(SETTLE_POLL_SECONDS)
        if await db.transaction(lambda s: JournalFeed(s).horizon()) > xid:
            return True
    return False
