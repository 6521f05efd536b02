"""Celery task of purchases: expiring the ones left unpaid."""

from __future__ import annotations

import logging

from lms.db import Database
from lms.ledger.service import SystemAccounts
from lms.purchases.service import PurchaseService
from lms.settings import get_settings
from lms.worker import app, run_in_database

log = logging.getLogger(__name__)


async def _expire(db: Database) -> int:
    """Expire every due pending purchase, 1000 per transaction."""
    settings = get_settings()
    system = SystemAccounts(settings.system_account_shards)
    total = 0
    while True:
        done = await db.transaction(
            lambda s: PurchaseService(s, system, settings).expire_pending(limit=1000))
        total += done
        if done < 1000:
            return total


@app.task(name="purchases.expire_pending")
def expire_pending() -> int:
    expired = run_in_database(_expire)
    if expired:
        log.info("purchases: %d pending purchases expired", expired)
    return expired
