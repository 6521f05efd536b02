"""Celery tasks of the outbox."""

from __future__ import annotations

import logging

from lms.outbox.relay import relay as relay_events
from lms.worker import app, run_in_database

log = logging.getLogger(__name__)


@app.task(name="outbox.relay")
def relay(batch_size: int = 500, max_batches: int = 20) -> int:
    published = run_in_database(
        lambda db: relay_events(db, batch_size=batch_size, max_batches=max_batches))
    if published:
        log.info("outbox relay published %d events", published)
    return published
