"""Lot expiry under the programme's policy: notices ahead of time, the activity policy's
extension, and breakage through the ledger in batches of accounts (one entry per batch).

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

from lms.ledger.service import Ledger, add_months
from lms.ledger.types import Actor, EntryKind, Leg, Unit
from lms.tiers.policy import Policies
from lms.tiers.repository import ExpiryRepository

# Entry kinds that count as activity under the activity policy: earning, not spending.
ACTIVITY_KINDS = ("accrual", "purchase")


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

    async def expire_batch(self, ledger: Ledger, account_ids: Sequence[int], *,
                           breakage: int, now: datetime) -> int:
        """Move what is left of the due lots of ``account_ids`` to ``breakage`` as ONE ledger
        entry (one leg per account, one to breakage) through ``Ledger.post``: the ledger
        checks, posts and consumes the lots oldest-expiry first, i.e. the due ones, exactly
        as ``Ledger.expire_lots`` does for one account, at a fraction of the cost per
        account. Held miles are spared; closed accounts are left alone. Returns how many
        accounts lost miles."""
        # Lock first, then read the due lots in a statement of its own: its fresh snapshot
        # sees every lot consumption committed before our locks were granted.
        locked = await self.repo.lock_miles_balances([*account_ids, breakage])
        due = await self.repo.due_lots(account_ids, now)
        amounts = []
        for account_id in account_ids:
            row = locked.get(account_id)
            if row is None or row.status != "open":
                continue
            amount = min(due.get(account_id, 0), row.available)
            if amount > 0:
                amounts.append((account_id, amount))
        if not amounts:
            return 0
        await ledger.post(
            kind=EntryKind.EXPIRY, actor=Actor.system("expiry"), description="Miles expired",
            effective_at=now, details={"accounts": len(amounts)},
            legs=[*(Leg(a, Unit.MILES, -x) for a, x in amounts),
                  Leg(breakage, Unit.MILES, sum(x for _, x in amounts))],
            events=[("miles.expired", {"accountId": a, "amount": x}) for a, x in amounts])
        return len(amounts)
