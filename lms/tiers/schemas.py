"""API shapes of a member's tier (camelCase on the wire)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec


class TierColors(msgspec.Struct, rename="camel"):
    background: str
    foreground: str
    label: str


class TierOut(msgspec.Struct, rename="camel"):
    code: str
    name: str
    rank: int
    colors: TierColors


class Missing(msgspec.Struct, rename="camel"):
    """What is still to earn, on either path: reaching one of the two is enough."""

    tier: str
    status_miles: int
    segments: int
    by: datetime | None


class TierHistoryLine(msgspec.Struct, rename="camel"):
    from_tier: str
    to_tier: str
    reason: str
    valid_until: datetime | None
    at: datetime


class TierStatus(msgspec.Struct, rename="camel"):
    tier: TierOut
    valid_until: datetime | None
    qualification: str
    window_start: datetime
    window_end: datetime
    status_miles: int
    segments: int
    next_tier: Missing | None
    keep_tier: Missing | None
    history: list[TierHistoryLine]


# -- the admin API of tiers and policies ---------------------------------------------------

# What Apple Wallet accepts for a pass's colours, and the portal's CSS.
Color = Annotated[str, msgspec.Meta(
    max_length=32, pattern=r"^(rgb\(\d{1,3}, ?\d{1,3}, ?\d{1,3}\)|#[0-9a-fA-F]{6})$")]


class TierVersionIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]{0,31}$")]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    rank: Annotated[int, msgspec.Meta(ge=0, le=100)]
    status_miles_threshold: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
    segments_threshold: Annotated[int, msgspec.Meta(ge=0, le=10_000)]
    background_color: Color
    foreground_color: Color
    label_color: Color
    effective_from: Annotated[date, msgspec.Meta(
        description="From this day on (UTC); never today or earlier, so no past evaluation "
                    "changes")]


class TierVersionOut(msgspec.Struct, rename="camel"):
    code: str
    name: str
    rank: int
    status_miles_threshold: int
    segments_threshold: int
    background_color: str
    foreground_color: str
    label_color: str
    effective_from: date
    effective_to: date | None


PolicyName = Literal["tier_qualification", "expiry_policy", "expiry_months",
                     "expiry_notice_days"]


class PolicyIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    name: PolicyName
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description=(
        "tier_qualification: rolling_12_months | calendar_year; expiry_policy: fixed | "
        "activity; expiry_months and expiry_notice_days: whole numbers"))]
    effective_from: Annotated[datetime, msgspec.Meta(
        description="When the value takes over; not in the past")]


class PolicyOut(msgspec.Struct, rename="camel"):
    name: str
    value: str
    effective_from: datetime
