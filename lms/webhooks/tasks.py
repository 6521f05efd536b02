"""Celery tasks of webhooks: ``webhooks.deliver`` makes one attempt of one delivery;
``webhooks.sweep`` (beat, every few seconds) hands due deliveries and retries to it. Importing
this module (the worker does) registers the outbox consumers that enqueue deliveries."""

from __future__ import annotations

import logging

import httpx

from lms.db import Database
from lms.outbox.relay import consumers
from lms.webhooks import consumers as webhook_consumers
from lms.webhooks.delivery import attempt, claim_due
from lms.worker import app, run_in_database

log = logging.getLogger(__name__)


async def _attempt(db: Database, delivery_id: int, attempts: int) -> str:
    async with httpx.AsyncClient(follow_redirects=False) as client:
        return await attempt(db, delivery_id, attempts, client=client)


@app.task(name="webhooks.deliver")
def deliver(delivery_id: int, attempts: int) -> str:
    return run_in_database(lambda db: _attempt(db, delivery_id, attempts))


@app.task(name="webhooks.sweep")
def sweep(limit: int = 500) -> int:
    due = run_in_database(lambda db: claim_due(db, limit=limit))
    for delivery_id, attempts in due:
        deliver.apply_async(kwargs={"delivery_id": delivery_id, "attempts": attempts})
    if due:
        log.info("webhooks: %d deliveries handed over", len(due))
    return len(due)


webhook_consumers.register(consumers)
