"""Tier operations: reevaluating one member after a credit, the nightly set-based pass over
all members, and a member's view of their status.

Status is decided from the qualifying units earned in the window (ledger postings in
STATUS_MILES and SEGMENTS), never from the balance. Upgrades happen at once; downgrades only
when ``members.tier_valid_until`` has passed, one tier at a time (see lms.tiers.policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import MemberNotFound
from lms.clock import utcnow
from lms.tiers.errors import PolicyInvalid
from lms.tiers.policy import (
    Change,
    ExpiryPolicy,
    Ladder,
    Policies,
    Progress,
    Qualification,
    Reason,
    TierRule,
    Window,
    current_window,
    decide,
    review_window,
)
from lms.tiers.repository import TierRepository
from lms.tiers.schemas import Missing, TierColors, TierHistoryLine, TierOut, TierStatus

# Thresholds above anything a member can earn: "no tier above this one".
UNREACHABLE = 2**62



def parse_policies(values: dict[str, str]) -> Policies:
    default = Policies()
    try:
        return Policies(
            qualification=Qualification(values.get("tier_qualification",
                                                   default.qualification)),
            expiry=ExpiryPolicy(values.get("expiry_policy", default.expiry)),
            expiry_months=int(values.get("expiry_months", default.expiry_months)),
            notice_days=int(values.get("expiry_notice_days", default.notice_days)))
    except ValueError as exc:
        raise PolicyInvalid(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class MemberProgress:
    """Where a member stands now: tier, its validity, and the current window's progress."""

    ladder: Ladder
    policy: Qualification
    tier: TierRule
    valid_until: datetime | None
    progress: Progress


@dataclass(frozen=True, slots=True)
class Grant:
    tier: str
    valid_until: datetime | None
    # The member already held a higher tier: nothing was changed.
    exceeded: bool


class TierService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = TierRepository(session)

    async def ladder(self, now: datetime) -> Ladder:
        return Ladder(await self.repo.effective_tiers(now.date()))

    async def policies(self, now: datetime) -> Policies:
        return parse_policies(await self.repo.effective_policies(now))

    async def reevaluate(self, member_id: int, *, now: datetime | None = None
                         ) -> Change | None:
        """Bring one member's tier up to date; call it after crediting qualifying units, in
        the same unit of work. Locks the member row, so concurrent calls queue."""
        now = now or utcnow()
        standing = await self.repo.standing(member_id, lock=True)
        if standing is None:
            raise MemberNotFound()
        ladder, policy = await self.ladder(now), (await self.policies(now)).qualification
        current = await self.repo.qualifying(standing.account_id,
                                             current_window(policy, now))
        review = None
        if standing.valid_until is not None and standing.valid_until <= now:
            review = await self.repo.qualifying(standing.account_id,
                                                review_window(standing.valid_until))
        change = decide(ladder, code=standing.tier, valid_until=standing.valid_until,
                        now=now, policy=policy, current=current, review=review)
        if change is not None:
            await self.repo.apply([(member_id, standing.valid_until, change)])
        return change

    async def progress(self, member_id: int, *, now: datetime | None = None
                       ) -> MemberProgress:
        now = now or utcnow()
        standing = await self.repo.standing(member_id, lock=False)
        if standing is None:
            raise MemberNotFound()
        ladder, policy = await self.ladder(now), (await self.policies(now)).qualification
        progress = await self.repo.qualifying(standing.account_id,
                                              current_window(policy, now))
        return MemberProgress(ladder, policy, ladder.get(standing.tier), standing.valid_until,
                              progress)

    async def grant(self, member_id: int, code: str, *, valid_until: datetime,
                    reason: Reason = Reason.PURCHASE, now: datetime | None = None) -> Grant:
        """Give a member ``code`` until ``valid_until`` (a bought tier), in the caller's unit
        of work; locks the member row like ``reevaluate``.

        A tier is never lowered: a member already above ``code`` keeps everything
        (``exceeded``); a member on ``code`` keeps the later of the two validities. The
        nightly pass respects the grant because it only reviews a tier once its
        ``tier_valid_until`` has passed.
        """
        now = now or utcnow()
        standing = await self.repo.standing(member_id, lock=True)
        if standing is None:
            raise MemberNotFound()
        ladder = await self.ladder(now)
        target, current = ladder.get(code), ladder.get(standing.tier)
        if current.rank > target.rank:
            return Grant(standing.tier, standing.valid_until, exceeded=True)
        until = valid_until
        if current.rank == target.rank and standing.valid_until is not None:
            until = max(valid_until, standing.valid_until)
        await self.repo.grant(member_id, from_tier=standing.tier, to_tier=target.code,
                              until=until, reason=str(reason))
        return Grant(target.code, until, exceeded=False)

    async def reevaluate_range(self, lo: int, hi: int, *, now: datetime) -> int:
        """The nightly pass over members whose accounts are in [lo, hi): one statement finds
        who can change, the same ``decide`` as ``reevaluate`` says how, one statement
        applies it. Returns how many members changed (tier or validity)."""
        ladder, policy = await self.ladder(now), (await self.policies(now)).qualification
        nexts = []
        for tier in ladder.tiers:
            above = ladder.above(tier)
            nexts.append((tier.code, above.status_miles if above else UNREACHABLE,
                          above.segments if above else UNREACHABLE))
        candidates = await self.repo.candidates(lo, hi, window=current_window(policy, now),
                                                now=now, ladder=nexts)
        changes = []
        for c in candidates:
            due = c.valid_until is not None and c.valid_until <= now
            change = decide(ladder, code=c.tier, valid_until=c.valid_until, now=now,
                            policy=policy, current=c.current,
                            review=c.review if due else None)
            if change is not None:
                changes.append((c.member_id, c.valid_until, change))
        await self.repo.apply(changes)
        return len(changes)

    async def member_account_bounds(self) -> tuple[int, int] | None:
        return await self.repo.member_account_bounds()

    async def status(self, member_id: int, *, now: datetime | None = None) -> TierStatus:
        """The member's tier, the current window's progress, what is missing for the next
        tier and, before ``validUntil``, for keeping this one."""
        now = now or utcnow()
        standing = await self.repo.standing(member_id, lock=False)
        if standing is None:
            raise MemberNotFound()
        ladder, policy = await self.ladder(now), (await self.policies(now)).qualification
        tier = ladder.get(standing.tier)
        window = current_window(policy, now)
        progress = await self.repo.qualifying(standing.account_id, window)
        above = ladder.above(tier)
        next_tier = None if above is None else Missing(
            tier=above.code, status_miles=max(0, above.status_miles - progress.status_miles),
            segments=max(0, above.segments - progress.segments), by=None)
        keep = None
        if standing.valid_until is not None and tier.rank > ladder.base.rank:
            # Keeping the tier is judged on the period that ends at validUntil.
            period = review_window(standing.valid_until)
            kept = await self.repo.qualifying(
                standing.account_id, Window(period.start, min(period.end, now)))
            keep = Missing(tier=tier.code,
                           status_miles=max(0, tier.status_miles - kept.status_miles),
                           segments=max(0, tier.segments - kept.segments),
                           by=standing.valid_until)
        history = [TierHistoryLine(from_tier=h.from_tier, to_tier=h.to_tier, reason=h.reason,
                                   valid_until=h.valid_until, at=h.at)
                   for h in await self.repo.history(member_id)]
        return TierStatus(
            tier=TierOut(code=tier.code, name=tier.name, rank=tier.rank,
                         colors=TierColors(background=tier.background_color,
                                           foreground=tier.foreground_color,
                                           label=tier.label_color)),
            valid_until=standing.valid_until, qualification=str(policy),
            window_start=window.start, window_end=now,
            status_miles=progress.status_miles, segments=progress.segments,
            next_tier=next_tier, keep_tier=keep, history=history)
