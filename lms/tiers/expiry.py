"""Lot expiry under the programme's policy: notices ahead of time, the activity policy's
extension, and breakage through the ledger in batches of accounts.

Why the activity policy extends lots instead of making the expiry job skip active members:
lots are what every reader of "when do my miles expire" looks at (the balance's
``expiringIn90Days``, the ``miles.expiring`` notices, the ledger's own expiry). Moving the
dates keeps all of them true with no second rule to remember; skipping would leave members
being told that miles expire which then do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from lms.db import RawConnection
from lms.ledger.service import Ledger, SystemAccounts, add_months
from lms.ledger.types import SystemAccount
from lms.tiers.policy import Policies
from lms.tiers.repository import ExpiryRepository

# Entry kinds that count as activity under the activity policy: earning, not spending.
ACTIVITY_KINDS = ("accrual", "purchase")


class PinnedBreakage(SystemAccounts):
    """System accounts whose breakage is always one shard.

    A batch of accounts expired in one transaction keeps its breakage row locked to the end;
    with a random shard per account, two batches would each hold a shard the other wants and
    deadlock. Each concurrent batch worker gets a shard of its own instead.
    """

    def __init__(self, base: SystemAccounts, shard: int) -> None:
        super().__init__(base.shards)
        self._base = base
        shards = base.all(SystemAccount.BREAKAGE)
        self._breakage = shards[shard % len(shards)]

    def loaded(self) -> bool:
        return True

    def pick(self, code: SystemAccount | str) -> int:
        if str(code) == SystemAccount.BREAKAGE:
            return self._breakage
        return self._base.pick(code)

    def all(self, code: SystemAccount | str) -> list[int]:
        return self._base.all(code)


class ExpiryService:
    def __init__(self, session: AsyncSession) -> None:
        self.repo = ExpiryRepository(session)

    async def notify_expiring(self, policies: Policies, *, now: datetime,
                              limit: int = 10_000) -> int:
        """Announce up to ``limit`` lots expiring within the notice period; returns how many."""
        return await self.repo.notify_expiring(
            now, now + timedelta(days=policies.notice_days), limit)

    async def extend_for_activity(self, policies: Policies, lo: int, hi: int, *,
                                  now: datetime) -> int:
        """Activity policy, accounts in [lo, hi): returns how many lots moved."""
        return await self.repo.extend_for_activity(
            lo, hi, since=add_months(now, -policies.expiry_months),
            months=policies.expiry_months, kinds=ACTIVITY_KINDS)

    async def accounts_with_due_lots(self, now: datetime) -> list[int]:
        return await self.repo.accounts_with_due_lots(now)

    async def lot_account_bounds(self) -> tuple[int, int] | None:
        return await self.repo.lot_account_bounds()


async def expire_batch(conn: RawConnection, system: SystemAccounts,
                       account_ids: Sequence[int], *, now: datetime) -> int:
    """Expire the due lots of ``account_ids`` (ascending) in the caller's transaction, each
    account its own ledger entry through ``Ledger.expire_lots`` (held miles spared, every
    invariant kept). Returns entries posted."""
    ledger = Ledger(conn, system)
    posted = 0
    for account_id in sorted(account_ids):
        if await ledger.expire_lots(account_id, now=now) is not None:
            posted += 1
    return posted
