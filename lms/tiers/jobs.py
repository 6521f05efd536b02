"""The nightly jobs of status and expiry, over all members in bounded transactions.

Each job splits the members' account ids into ranges and runs a few ranges at a time, each
range one unit of work (``Database.transaction``: committed, retried on deadlock). Both are
safe to run twice: a second run finds nothing left to change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import Database
from lms.ledger.errors import AccountNotFound
from lms.ledger.service import Ledger, SystemAccounts
from lms.ledger.types import SystemAccount
from lms.tiers.expiry import ExpiryService
from lms.tiers.policy import ExpiryPolicy
from lms.tiers.service import TierService

TIER_RANGE = 20_000
EXPIRY_BATCH = 1000
NOTICE_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class ExpiryRun:
    notices: int
    extended: int
    expired: int


def ranges(bounds: tuple[int, int] | None, step: int) -> list[tuple[int, int]]:
    if bounds is None:
        return []
    lo, hi = bounds
    return [(start, min(start + step, hi + 1)) for start in range(lo, hi + 1, step)]


async def gather_limited(jobs: Sequence[Callable[[], Awaitable[int]]], concurrency: int) -> int:
    """Run the jobs, ``concurrency`` at a time; the sum of their results."""
    queue = list(reversed(jobs))
    total = 0

    async def worker() -> None:
        nonlocal total
        while queue:
            job = queue.pop()
            done = await job()  # not ``total += await job()``: that reads total first
            total += done

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(jobs))))))
    return total


async def tiers_nightly(db: Database, *, now: datetime | None = None, step: int = TIER_RANGE,
                        concurrency: int = 4) -> int:
    """Reevaluate every member; returns how many changed."""
    now = now or datetime.now(UTC)
    bounds = await db.transaction(lambda s: TierService(s).member_account_bounds())

    def job(lo: int, hi: int) -> Callable[[], Awaitable[int]]:
        return lambda: db.transaction(
            lambda s: TierService(s).reevaluate_range(lo, hi, now=now))

    return await gather_limited([job(lo, hi) for lo, hi in ranges(bounds, step)], concurrency)


async def expiry_nightly(db: Database, system: SystemAccounts, *,
                         now: datetime | None = None, batch: int = EXPIRY_BATCH,
                         concurrency: int = 4, step: int = TIER_RANGE) -> ExpiryRun:
    """Announce lots expiring soon, extend lots of active members (activity policy), then
    expire what is due, ``batch`` accounts per transaction and entry, ``concurrency``
    transactions at a time."""
    now = now or datetime.now(UTC)
    policies = await db.transaction(lambda s: TierService(s).policies(now))

    extended = 0
    if policies.expiry is ExpiryPolicy.ACTIVITY:
        bounds = await db.transaction(lambda s: ExpiryService(s).lot_account_bounds())

        def extend(lo: int, hi: int) -> Callable[[], Awaitable[int]]:
            return lambda: db.transaction(
                lambda s: ExpiryService(s).extend_for_activity(policies, lo, hi, now=now))

        extended = await gather_limited([extend(lo, hi) for lo, hi in ranges(bounds, step)],
                                        concurrency)

    notices = 0
    while True:
        sent = await db.transaction(
            lambda s: ExpiryService(s).notify_expiring(policies, now=now, limit=NOTICE_BATCH))
        notices += sent
        if sent < NOTICE_BATCH:
            break

    async def due(session: AsyncSession) -> list[int]:
        return await ExpiryService(session).accounts_with_due_lots(now)

    accounts = await db.transaction(due)
    breakage = system.all(SystemAccount.BREAKAGE)
    if not breakage:
        raise AccountNotFound("No breakage account; run `lms db upgrade`")
    chunks = [accounts[i:i + batch] for i in range(0, len(accounts), batch)]

    def expire(n: int, chunk: list[int]) -> Callable[[], Awaitable[int]]:
        # A shard per batch in turn: concurrent batches rarely queue on one breakage row.
        shard = breakage[n % len(breakage)]
        return lambda: db.transaction(lambda s: ExpiryService(s).expire_batch(
            Ledger(s, system), chunk, breakage=shard, now=now))

    expired = await gather_limited([expire(n, c) for n, c in enumerate(chunks)], concurrency)
    return ExpiryRun(notices=notices, extended=extended, expired=expired)
