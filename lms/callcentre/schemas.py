"""API shapes of the call centre (camelCase on the wire)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec

from lms.accounts.schemas import StatementPage, UnitBalance
from lms.claims.schemas import ClaimOut
from lms.family.schemas import FamilyOut

Comment = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
CardNumber = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
ReasonCodeValue = Annotated[str, msgspec.Meta(
    pattern=r"^[A-Z][A-Z0-9_]{1,31}$", description="Upper-case code, e.g. `GOODWILL`")]


class MemberHit(msgspec.Struct, rename="camel"):
    card_number: str
    first_name: str
    last_name: str
    tier: str
    status: str
    masked_email: str
    merged_into_card_number: str | None = None


class SearchPage(msgspec.Struct, rename="camel"):
    items: list[MemberHit]
    next_cursor: str | None


class ProfileOut(msgspec.Struct, rename="camel"):
    id: int
    card_number: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    phone_region: str | None
    birth_date: date | None
    locale: str
    timezone: str
    status: str
    tier: str
    tier_valid_until: datetime | None
    joined_at: datetime
    last_activity_at: datetime | None
    merged_into_card_number: str | None
    merged_at: datetime | None
    merged_from: Annotated[list[str], msgspec.Meta(
        description="Cards of duplicates merged into this member; their flights, claims and "
                    "tier history are shown here")]


class LotOut(msgspec.Struct, rename="camel"):
    id: int
    amount: int
    remaining: int
    expires_at: datetime
    created_at: datetime


class HoldOut(msgspec.Struct, rename="camel"):
    id: int
    amount: int
    captured: int
    status: str
    reference: str | None
    expires_at: datetime
    created_at: datetime
    closed_at: datetime | None


class TierChangeOut(msgspec.Struct, rename="camel"):
    card_number: str
    from_tier: str
    to_tier: str
    reason: str
    valid_until: datetime | None
    at: datetime


class FlightOut(msgspec.Struct, rename="camel"):
    card_number: str
    ticket_number: str
    coupon_number: int
    flight_date: date
    carrier: str
    flight_number: str
    origin: str
    destination: str
    booking_class: str
    credited_at: datetime


class MemberClaimOut(msgspec.Struct, rename="camel"):
    card_number: str
    claim: ClaimOut


class PurchaseOut(msgspec.Struct, rename="camel"):
    id: int
    card_number: str
    reference: str
    kind: Annotated[str, msgspec.Meta(description="miles or status")]
    miles: int | None
    tier: str | None
    amount_minor: int
    currency: str
    status: str
    created_at: datetime
    closed_at: datetime | None
    entry_id: int | None
    valid_until: datetime | None
    refund_due: bool
    note: str | None


class AdjustmentOut(msgspec.Struct, rename="camel"):
    id: int
    card_number: str
    direction: str
    unit: str
    amount: int
    reason_code: str
    comment: str
    status: Annotated[str, msgspec.Meta(description="posted, pending_approval or rejected")]
    pending_reason: Annotated[str | None, msgspec.Meta(
        description="Why it waits for a supervisor: per_adjustment_limit or daily_limit")]
    requested_by: int
    requested_role: str
    requested_at: datetime
    decided_by: int | None
    decision_comment: str | None
    decided_at: datetime | None
    entry_id: int | None


class AdjustmentPage(msgspec.Struct, rename="camel"):
    items: list[AdjustmentOut]
    next_cursor: str | None


class AuditOut(msgspec.Struct, rename="camel"):
    id: int
    at: datetime
    actor_type: str
    actor_id: str | None
    actor_role: str | None
    ip: str | None
    action: str
    target_type: str | None
    target_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(msgspec.Struct, rename="camel"):
    items: list[AuditOut]
    next_cursor: str | None


class Member360(msgspec.Struct, rename="camel"):
    profile: ProfileOut
    balances: list[UnitBalance]
    lots: Annotated[list[LotOut], msgspec.Meta(
        description="Open lots of MILES, soonest expiry first")]
    holds: Annotated[list[HoldOut], msgspec.Meta(description="Pending holds, then recent ones")]
    statement: Annotated[StatementPage, msgspec.Meta(
        description="The newest MILES lines; page on with getStaffMemberStatement")]
    tier_history: list[TierChangeOut]
    flights: list[FlightOut]
    claims: list[MemberClaimOut]
    adjustments: list[AdjustmentOut]
    audit_trail: list[AuditOut]
    purchases: Annotated[list[PurchaseOut], msgspec.Meta(
        description="Purchases of miles and status, newest first")]
    family_pool: Annotated[FamilyOut | None, msgspec.Meta(
        description="The member's role, family pool (balance, members and their "
                    "contributions) and invitations waiting for an answer")] = None


class ReasonCodeCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    code: ReasonCodeValue
    description: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ReasonCodeOut(msgspec.Struct, rename="camel"):
    code: str
    description: str
    active: bool
    created_at: datetime
    updated_at: datetime


class LimitOut(msgspec.Struct, rename="camel"):
    role: str
    per_adjustment: int
    per_day: int
    updated_at: datetime


class LimitSet(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    per_adjustment: Annotated[int, msgspec.Meta(ge=0, le=10**9)]
    per_day: Annotated[int, msgspec.Meta(ge=0, le=10**10)]


class AdjustmentRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    direction: Literal["credit", "debit"]
    amount: Annotated[int, msgspec.Meta(gt=0, le=10**9)]
    reason_code: ReasonCodeValue
    comment: Comment
    unit: Literal["MILES", "STATUS_MILES"] = "MILES"


class Decision(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    comment: Comment


class ReasonRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    reason: Comment


class ReversalOut(msgspec.Struct, rename="camel"):
    entry_id: int
    reverses_id: int
    created_at: datetime


class MemberStatusOut(msgspec.Struct, rename="camel"):
    card_number: str
    status: str
    previous_status: str


class MergeRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    into_card_number: CardNumber
    reason: Comment


class MovedUnit(msgspec.Struct, rename="camel"):
    unit: str
    amount: int


class MergeOut(msgspec.Struct, rename="camel"):
    card_number: str
    into_card_number: str
    status: str
    merged_at: datetime
    entry_id: Annotated[int | None, msgspec.Meta(
        description="The `merge` journal entry; null when there was nothing to move")]
    moved: list[MovedUnit]
    lot_expires_at: Annotated[datetime | None, msgspec.Meta(
        description="Expiry of the one lot the moved MILES open on the target: the latest "
                    "expiry among the duplicate's open lots")]
