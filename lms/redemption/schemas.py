"""API shapes of consent codes, quotes, holds, redemptions and refunds (camelCase)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from lms.partners.schemas import Code, Currency

CardNumber = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{8,16}$",
                                         description="The member's card number")]
MemberCode = Annotated[str, msgspec.Meta(
    pattern=r"^[0-9]{8}$", description="The one-time code the member created for this "
    "redemption (`POST /v1/me/redemption-codes`)")]
Miles = Annotated[int, msgspec.Meta(gt=0, le=10**12)]
MinorAmount = Annotated[int, msgspec.Meta(ge=0, le=10**12, description="Minor units")]
OrderReference = Annotated[str, msgspec.Meta(
    min_length=1, max_length=100, description="The partner's own reference of the order")]
TtlSeconds = Annotated[int, msgspec.Meta(
    ge=1, le=7 * 86400, description="How long the hold lasts before it expires by itself "
    "(at most 7 days)")]


class RedemptionCodeRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    partner_code: Annotated[Code | None, msgspec.Meta(
        description="Bind the code to this partner; any partner may use it when absent")] \
        = None
    from_pool: Annotated[bool, msgspec.Meta(
        description="The head of a family pool authorises holds on the pool's miles")] = False


class RedemptionCodeOut(msgspec.Struct, rename="camel"):
    """The code appears here only; it is stored as a hash."""

    code: str
    expires_at: datetime
    partner_code: str | None


class RedemptionCodeStatus(msgspec.Struct, rename="camel"):
    locked: bool
    locked_until: datetime | None
    recent_failures: int
    active_codes: int


class QuoteRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    card_number: CardNumber
    member_code: MemberCode
    order_amount: Annotated[int, msgspec.Meta(gt=0, le=10**12,
                                              description="Order total in minor units")]
    currency: Currency


class QuoteOut(msgspec.Struct, rename="camel"):
    currency: str
    order_amount: int
    miles_available: int
    value_per_mile_milli_minor: int
    min_cash_share_bp: int
    min_miles: int
    max_miles: int
    cash_at_min_miles: int
    cash_at_max_miles: int


class HoldRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    card_number: CardNumber
    member_code: MemberCode
    miles: Miles
    cash_amount: MinorAmount
    currency: Currency
    order_reference: OrderReference
    ttl_seconds: TtlSeconds = 3600


class AwardBookingRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    miles: Miles
    order_reference: OrderReference
    ttl_seconds: TtlSeconds = 86400


HoldStatusName = Literal["pending", "captured", "voided", "expired"]


class HoldOut(msgspec.Struct, rename="camel"):
    id: int
    status: HoldStatusName
    miles: int
    captured_miles: int
    cash_amount: int
    currency: str
    order_reference: str
    expires_at: datetime
    created_at: datetime
    closed_at: datetime | None
    redemption_id: int | None


class CaptureRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    miles: Annotated[Miles | None, msgspec.Meta(
        description="Miles to capture; all that is held when absent. The rest is released")] \
        = None


class RefundRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    miles: Annotated[Miles | None, msgspec.Meta(
        description="Miles to give back; all that is left when absent")] = None
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class RefundOut(msgspec.Struct, rename="camel"):
    id: int
    redemption_id: int
    miles: int
    created_at: datetime


class RedemptionOut(msgspec.Struct, rename="camel"):
    id: int
    hold_id: int
    order_reference: str
    miles: int
    refunded_miles: int
    refundable_miles: int
    cash_amount: int
    currency: str
    value_per_mile_milli_minor: int
    # What the miles paid for, in minor units, rounded down (see lms.redemption.pricing).
    miles_value: int
    created_at: datetime
    refunds: list[RefundOut] = []
