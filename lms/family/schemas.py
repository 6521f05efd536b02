"""API shapes of family pools (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

CardNumber = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6,16}$",
                                         description="The invitee's card number")]


class InvitationCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    card_number: CardNumber


class PoolBalance(msgspec.Struct, rename="camel"):
    posted: int
    held: int
    available: int


class PoolMemberOut(msgspec.Struct, rename="camel"):
    member_id: int
    card_number: str
    first_name: str
    last_name: str
    role: str
    contributed: int
    joined_at: datetime


class InvitationOut(msgspec.Struct, rename="camel"):
    id: int
    pool_id: int
    member_id: int
    status: str
    created_at: datetime
    expires_at: datetime
    card_number: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    head_card_number: str | None = None
    head_name: str | None = None


class PoolOut(msgspec.Struct, rename="camel"):
    id: int
    account_id: int
    head_member_id: int
    created_at: datetime
    balance: PoolBalance
    members: list[PoolMemberOut]
    pending_invitations: list[InvitationOut]
    max_members: int
    contributions_total: int


class FamilyOut(msgspec.Struct, rename="camel"):
    """The caller's pool (null when they are in none) and the invitations waiting for
    their answer."""

    role: str | None
    pool: PoolOut | None
    invitations_received: list[InvitationOut]


class PayoutOut(msgspec.Struct, rename="camel"):
    member_id: int
    miles: int


class LeaveOut(msgspec.Struct, rename="camel"):
    pool_id: int
    member_id: int
    reason: str
    miles_taken: int
    entry_id: int | None


class DissolveOut(msgspec.Struct, rename="camel"):
    pool_id: int
    distributed: int
    payouts: list[PayoutOut]
    entry_id: int | None
