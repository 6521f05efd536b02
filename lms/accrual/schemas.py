"""API shapes of flown-coupon batches, earn rules and promotions (camelCase on the wire)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec

MAX_BATCH = 1000

Airport = Annotated[str, msgspec.Meta(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$",
                                      description="IATA airport code")]
Airline = Annotated[str, msgspec.Meta(min_length=2, max_length=3, pattern=r"^[A-Z0-9]{2,3}$")]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217")]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=8, pattern=r"^[A-Z0-9]+$")]


class CouponIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    ticket_number: Annotated[str, msgspec.Meta(min_length=8, max_length=20,
                                               pattern=r"^[A-Za-z0-9]+$")]
    coupon_number: Annotated[int, msgspec.Meta(ge=1, le=16)]
    card_number: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
    flight_date: date
    marketing_carrier: Airline
    operating_carrier: Airline
    flight_number: Annotated[str, msgspec.Meta(min_length=1, max_length=5,
                                               pattern=r"^[A-Za-z0-9]+$")]
    origin: Airport
    destination: Airport
    booking_class: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]$")]
    cabin: Annotated[str, msgspec.Meta(max_length=20)] | None = None
    booking_date: date | None = None
    fare_amount: Annotated[int, msgspec.Meta(ge=0, description=(
        "Fare in minor units of fareCurrency (cents); needed for revenue-based carriers"))
    ] | None = None
    fare_currency: Currency | None = None


class FlightBatchRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    coupons: Annotated[list[CouponIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class CouponOutcome(msgspec.Struct, rename="camel", omit_defaults=True):
    ticket_number: str
    coupon_number: int
    status: Literal["credited", "duplicate", "rejected"]
    miles: int = 0
    status_miles: int = 0
    segments: int = 0
    reason: str | None = None
    detail: str | None = None
    entry_id: int | None = None


class FlightBatchResponse(msgspec.Struct, rename="camel"):
    credited: int
    duplicates: int
    rejected: int
    outcomes: list[CouponOutcome]


RuleKindName = Literal["carrier", "booking_class", "tier_bonus"]


class CouponReversalRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class CouponReversalOut(msgspec.Struct, rename="camel"):
    ticket_number: str
    coupon_number: int
    entry_id: int
    miles: Annotated[int, msgspec.Meta(description="Miles taken back, bonuses included")]
    status_miles: int
    segments: int
    balance_after: Annotated[int, msgspec.Meta(
        description="The member's posted miles after it; negative when spent miles became debt")]
    debt: Annotated[int, msgspec.Meta(
        description="Miles the member owes now; redemptions wait until accruals repay it")]


class EarnRuleIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    kind: RuleKindName
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=40, description=(
        "carrier: the airline code (BA); booking_class: carrier/class (BA/J); "
        "tier_bonus: the tier name (GOLD)"))]
    effective_from: date
    body: dict[str, Any]


class EarnRuleOut(msgspec.Struct, rename="camel"):
    id: int
    kind: str
    key: str
    effective_from: date
    body: dict[str, Any]
    created_by: str
    created_at: datetime


class PromotionIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(min_length=2, max_length=32,
                                      pattern=r"^[A-Z0-9][A-Z0-9_-]*$")]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    bonus_percent: Annotated[int, msgspec.Meta(ge=0, le=10_000, description=(
        "Bonus on the base miles: 100 doubles them"))] = 0
    fixed_miles: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 0
    carriers: list[Code] = []
    origins: list[Airport] = []
    destinations: list[Airport] = []
    countries: list[Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]] = []
    booking_classes: list[Annotated[str, msgspec.Meta(pattern=r"^[A-Z]$")]] = []
    tiers: list[Annotated[str, msgspec.Meta(min_length=1, max_length=32)]] = []
    travel_from: date | None = None
    travel_to: date | None = None
    booked_from: date | None = None
    booked_to: date | None = None
    first_flight_only: bool = False
    requires_registration: bool = False
    member_cap: Annotated[int, msgspec.Meta(ge=1)] | None = None
    budget: Annotated[int, msgspec.Meta(ge=1)] | None = None


class PromotionOut(PromotionIn, kw_only=True):
    used: int
    created_at: datetime


class RegistrationOut(msgspec.Struct, rename="camel"):
    promotion_code: str
    registered_at: datetime
