"""Celery tasks of the wallets, and the outbox consumer that enqueues them."""

from __future__ import annotations

import logging

from lms.outbox.relay import ALL_TOPICS, consumers
from lms.settings import get_settings
from lms.wallet.sync import WalletConsumer, sync_due
from lms.worker import app, run_in_database

log = logging.getLogger(__name__)


@app.task(name="wallet.sync_pass")
def sync_pass(pass_id: int) -> int:
    """Push one pass whose sync is due (a no-op when another run took it)."""
    report = run_in_database(lambda db: sync_due(db, get_settings(), pass_id=pass_id))
    return report.pushes


@app.task(name="wallet.sync_due")
def sync_all_due(limit: int = 100) -> int:
    report = run_in_database(lambda db: sync_due(db, get_settings(), limit=limit))
    if report.passes:
        log.info("wallet sync: %d passes, %d pushes, %d devices gone, %d Google updates, "
                 "%d to retry", report.passes, report.pushes, report.gone,
                 report.google_updates, report.retries)
    return report.passes


def enqueue_sync(pass_id: int, countdown: float) -> None:
    sync_pass.apply_async(kwargs={"pass_id": pass_id}, countdown=countdown)


consumers.register(ALL_TOPICS, WalletConsumer(get_settings(), enqueue_sync))
