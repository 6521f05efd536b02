"""API shapes of mile and status purchases (camelCase on the wire). Money is integer minor
units with an ISO 4217 code."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec


class Money(msgspec.Struct, rename="camel"):
    amount: int  # minor units (cents)
    currency: str


class MilePurchaseRequest(msgspec.Struct, rename="camel"):
    miles: Annotated[int, msgspec.Meta(gt=0, le=100_000_000)]


class MilePurchaseOut(msgspec.Struct, rename="camel"):
    id: int
    reference: str
    miles: int
    price: Money
    status: str  # pending, completed, canceled, expired, rejected
    payment_url: str
    expires_at: datetime
    created_at: datetime
    closed_at: datetime | None
    entry_id: int | None
    refund_due: bool
    note: str | None


class StatusPurchaseRequest(msgspec.Struct, rename="camel"):
    tier: Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9_]{1,32}$")]


class StatusOffer(msgspec.Struct, rename="camel"):
    tier: str
    name: str
    price: Money
    missing_status_miles: int
    missing_segments: int
    # The tier would be held until then: the end of the next qualification period.
    valid_until: datetime


class StatusOffers(msgspec.Struct, rename="camel"):
    tier: str
    qualification: str
    status_miles: int
    segments: int
    min_progress_percent: int
    offers: list[StatusOffer]


class StatusPurchaseOut(msgspec.Struct, rename="camel"):
    id: int
    reference: str
    tier: str
    price: Money
    status: str
    payment_url: str
    expires_at: datetime
    created_at: datetime
    closed_at: datetime | None
    valid_until: datetime | None
    refund_due: bool
    note: str | None


class PurchaseAdminOut(msgspec.Struct, rename="camel"):
    id: int
    reference: str
    member_id: int
    kind: str
    miles: int | None
    tier: str | None
    price: Money
    status: str
    provider_payment_id: str
    refund_due: bool
    note: str | None
    created_at: datetime
    closed_at: datetime | None
