"""Celery tasks of the ledger: expiring holds and lots."""

from __future__ import annotations

import logging
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database
from lms.ledger.service import Ledger, SystemAccounts
from lms.settings import get_settings
from lms.worker import app, run_in_database

log = logging.getLogger(__name__)


async def expire_due_holds(db: Database, limit: int) -> int:
    """Expire every due hold, ``limit`` per transaction; returns how many."""
    system = SystemAccounts(get_settings().system_account_shards)
    total = 0
    while True:
        expired = await db.transaction(lambda s: Ledger(s, system).expire_holds(limit=limit))
        if expired == 0:
            return total
        total += expired


async def expire_due_lots(db: Database, limit: int) -> int:
    """Move due lots to breakage, one account per transaction; returns entries posted."""
    system = SystemAccounts(get_settings().system_account_shards)
    posted = 0
    while True:
        accounts = await db.transaction(
            lambda s: Ledger(s, system).accounts_with_due_lots(limit=limit))
        progress = 0
        for account_id in accounts:
            progress += await db.transaction(partial(expire_account_lots, system, account_id))
        posted += progress
        # Lots spared because their miles are held stay due, and come back in every batch:
        # stop when a batch was short or changed nothing, not when no account is left.
        if len(accounts) < limit or progress == 0:
            return posted


async def expire_account_lots(system: SystemAccounts, account_id: int,
                              session: AsyncSession) -> int:
    return 0 if await Ledger(session, system).expire_lots(account_id) is None else 1


@app.task(name="ledger.expire_holds")
def expire_holds(limit: int = 1000) -> int:
    expired = run_in_database(lambda db: expire_due_holds(db, limit))
    if expired:
        log.info("expired %d holds", expired)
    return expired


@app.task(name="ledger.expire_lots")
def expire_lots(limit: int = 500) -> int:
    posted = run_in_database(lambda db: expire_due_lots(db, limit))
    if posted:
        log.info("expired lots on %d accounts", posted)
    return posted
