"""The rules of status, as pure functions: windows, qualification and the tier decision.

Both the per-member path (``TierService.reevaluate``) and the nightly set-based job decide with
``decide``, so the two can never disagree about a member.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lms.ledger.service import add_months

PERIOD_MONTHS = 12
# Windows are half-open [start, end); a window that ends "now" must still count postings
# written at this very instant (the caller's own credit, in the same transaction).
INSTANT = timedelta(microseconds=1)


class Qualification(enum.StrEnum):
    ROLLING = "rolling_12_months"
    CALENDAR = "calendar_year"


class ExpiryPolicy(enum.StrEnum):
    FIXED = "fixed"
    ACTIVITY = "activity"


class Reason(enum.StrEnum):
    UPGRADE = "upgrade"
    REQUALIFIED = "requalified"
    DOWNGRADE = "downgrade"
    PURCHASE = "purchase"


@dataclass(frozen=True, slots=True)
class TierRule:
    code: str
    name: str
    rank: int
    status_miles: int
    segments: int
    background_color: str
    foreground_color: str
    label_color: str

    def reached_by(self, status_miles: int, segments: int) -> bool:
        return status_miles >= self.status_miles or segments >= self.segments


@dataclass(frozen=True, slots=True)
class Policies:
    qualification: Qualification = Qualification.ROLLING
    expiry: ExpiryPolicy = ExpiryPolicy.FIXED
    expiry_months: int = 36
    notice_days: int = 30


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Progress:
    status_miles: int
    segments: int


@dataclass(frozen=True, slots=True)
class Change:
    from_code: str
    to_code: str
    valid_until: datetime | None
    reason: Reason


class Ladder:
    """The tiers in effect, lowest rank first."""

    def __init__(self, tiers: list[TierRule]) -> None:
        if not tiers:
            raise ValueError("no tiers are in effect")
        self.tiers = sorted(tiers, key=lambda t: t.rank)
        self.by_code = {t.code: t for t in self.tiers}

    @property
    def base(self) -> TierRule:
        return self.tiers[0]

    def get(self, code: str) -> TierRule:
        # A member on a tier that was withdrawn keeps its rank's neighbour: the base tier.
        return self.by_code.get(code, self.base)

    def qualified(self, progress: Progress) -> TierRule:
        reached = [t for t in self.tiers if t.reached_by(progress.status_miles,
                                                         progress.segments)]
        return reached[-1] if reached else self.base

    def above(self, tier: TierRule) -> TierRule | None:
        return next((t for t in self.tiers if t.rank > tier.rank), None)

    def below(self, tier: TierRule) -> TierRule:
        lower = [t for t in self.tiers if t.rank < tier.rank]
        return lower[-1] if lower else self.base


def current_window(policy: Qualification, now: datetime) -> Window:
    if policy is Qualification.CALENDAR:
        return Window(datetime(now.year, 1, 1, tzinfo=UTC), now + INSTANT)
    return Window(add_months(now, -PERIOD_MONTHS), now + INSTANT)


def review_window(valid_until: datetime) -> Window:
    """The qualification period that ends when the status does: the 12 months (under the
    calendar policy, the calendar year) before ``valid_until``."""
    return Window(add_months(valid_until, -PERIOD_MONTHS), valid_until)


def upgrade_valid_until(policy: Qualification, now: datetime) -> datetime:
    """A tier reached now is kept for the following full period: 12 months from now, or to
    the end of next calendar year."""
    if policy is Qualification.CALENDAR:
        return datetime(now.year + 2, 1, 1, tzinfo=UTC)
    return add_months(now, PERIOD_MONTHS)


def decide(ladder: Ladder, *, code: str, valid_until: datetime | None, now: datetime,
           policy: Qualification, current: Progress, review: Progress | None
           ) -> Change | None:
    """What happens to a member's status now, or None if nothing changes.

    At the end of the period (``valid_until`` passed) the member keeps the tier if the period
    requalified them for it, else drops exactly one tier. Independently, a tier above the
    current one reached in the current window is granted at once.
    """
    tier = ladder.get(code)
    new, until, reason = tier, valid_until, None
    if valid_until is not None and valid_until <= now and review is not None:
        if ladder.qualified(review).rank >= tier.rank:
            until, reason = add_months(valid_until, PERIOD_MONTHS), Reason.REQUALIFIED
        else:
            new = ladder.below(tier)
            until = (add_months(valid_until, PERIOD_MONTHS)
                     if new.rank > ladder.base.rank else None)
            reason = Reason.DOWNGRADE
    reached = ladder.qualified(current)
    if reached.rank > new.rank:
        new, until, reason = reached, upgrade_valid_until(policy, now), Reason.UPGRADE
    if reason is None or (new.code == code and until == valid_until):
        return None
    return Change(from_code=code, to_code=new.code, valid_until=until, reason=reason)
