"""Celery tasks of tiers and expiry: thin, they run the nightly jobs."""

from __future__ import annotations

import logging

from lms.db import Database
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import SystemAccounts
from lms.settings import get_settings
from lms.tiers.jobs import expiry_nightly, tiers_nightly
from lms.worker import app, run_in_database

log = logging.getLogger(__name__)


@app.task(name="tiers.reevaluate_all")
def reevaluate_all() -> int:
    changed = run_in_database(lambda db: tiers_nightly(db))
    log.info("tier pass: %d members changed", changed)
    return changed


async def _expire(db: Database) -> int:
    system = SystemAccounts(get_settings().system_account_shards)

    async def load(conn: object) -> None:
        await system.load(LedgerRepository(conn))

    await db.raw_transaction(load)
    run = await expiry_nightly(db, system)
    log.info("expiry pass: %d notices, %d lots extended, %d accounts expired",
             run.notices, run.extended, run.expired)
    return run.expired


@app.task(name="tiers.expire_lots")
def expire_lots() -> int:
    return run_in_database(_expire)
