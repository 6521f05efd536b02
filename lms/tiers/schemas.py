"""API shapes of a member's tier (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime

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
