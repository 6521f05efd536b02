"""Versions of the tier ladder and of the programme policies, as the admin API adds them.

Both are data with effective dates: a change is a new version that starts in the future, so
no evaluation already made (a tier granted, a lot's expiry date) is rewritten. A tier version
runs until the code's next version; the version in force on its first day ends there.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accrual.errors import RuleVersionExists
from lms.clock import utcnow
from lms.errors import ValidationFailed
from lms.tiers.errors import PolicyInvalid
from lms.tiers.repository import RulesRepository, TierRepository
from lms.tiers.schemas import PolicyIn, PolicyOut, TierVersionIn, TierVersionOut
from lms.tiers.service import parse_policies

Actor = tuple[str, str, str]  # type, id, role
# Bounds an admin may set; outside them the programme would be unusable, not merely strict.
POLICY_RANGES = {"expiry_months": (1, 240), "expiry_notice_days": (0, 365)}


class LadderInvalid(ValidationFailed):
    code = "ladder_invalid"
    title = "The tiers in force on that day would not form a ladder"


class TierRules:
    def __init__(self, session: AsyncSession) -> None:
        self.repo = RulesRepository(session)
        self.tiers = TierRepository(session)

    async def tier_versions(self) -> list[TierVersionOut]:
        return [TierVersionOut(**dict(r)) for r in await self.repo.tier_versions()]

    async def add_tier_version(self, data: TierVersionIn, actor: Actor) -> TierVersionOut:
        if data.effective_from <= utcnow().date():
            raise ValidationFailed("A new version starts tomorrow at the earliest",
                                   field="effectiveFrom")
        await self.repo.lock_tiers()
        ladder = {t.code: (t.rank, t.status_miles, t.segments)
                  for t in await self.tiers.effective_tiers(data.effective_from)}
        ladder[data.code] = (data.rank, data.status_miles_threshold, data.segments_threshold)
        check_ladder(ladder)
        values = msgspec.structs.asdict(data)
        if not await self.repo.add_tier_version(values):
            raise RuleVersionExists(field="effectiveFrom")
        await self.repo.audit(actor, "tier.version_added", "tier", data.code,
                              msgspec.to_builtins(data))
        [added] = [v for v in await self.tier_versions()
                   if v.code == data.code and v.effective_from == data.effective_from]
        return added

    async def policy_versions(self) -> list[PolicyOut]:
        return [PolicyOut(**dict(r)) for r in await self.repo.policy_versions()]

    async def add_policy(self, data: PolicyIn, actor: Actor) -> PolicyOut:
        # A little slack for the request's own travel time; the past is never rewritten.
        if data.effective_from.tzinfo is None \
                or data.effective_from < utcnow() - timedelta(minutes=1):
            raise ValidationFailed("A policy takes over now or later, with a time zone",
                                   field="effectiveFrom")
        check_policy(data.name, data.value)
        in_force = await self.tiers.effective_policies(data.effective_from)
        try:
            parse_policies(in_force | {data.name: data.value})
        except PolicyInvalid as exc:
            raise ValidationFailed(exc.detail or "Not a valid value", field="value") from exc
        if not await self.repo.add_policy(data.name, data.value, data.effective_from):
            raise RuleVersionExists(field="effectiveFrom")
        await self.repo.audit(actor, "policy.version_added", "policy", data.name,
                              msgspec.to_builtins(data))
        return PolicyOut(name=data.name, value=data.value, effective_from=data.effective_from)


def check_ladder(ladder: dict[str, tuple[int, int, int]]) -> None:
    """One tier per rank; the lowest needs nothing; a higher rank never needs less."""
    ordered = sorted(ladder.items(), key=lambda item: item[1][0])
    ranks = [rank for _, (rank, _, _) in ordered]
    if len(set(ranks)) != len(ranks):
        raise LadderInvalid("Two tiers would share a rank", field="rank")
    _, (_, base_miles, base_segments) = ordered[0]
    if base_miles or base_segments:
        raise LadderInvalid("The lowest tier must need no status miles and no segments",
                            field="statusMilesThreshold")
    for (low, (_, lm, ls)), (high, (_, hm, hs)) in itertools.pairwise(ordered):
        if hm < lm or hs < ls:
            raise LadderInvalid(f"{high} would need less than {low}",
                                field="statusMilesThreshold")


def check_policy(name: str, value: str) -> None:
    if name not in POLICY_RANGES:
        return
    low, high = POLICY_RANGES[name]
    if not value.isdigit() or not low <= int(value) <= high:
        raise ValidationFailed(f"{name} is a whole number from {low} to {high}", field="value")


