"""API shapes of gifts (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec


class GiftCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    recipient_card_number: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6,16}$")]
    recipient_last_name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    miles: Annotated[int, msgspec.Meta(gt=0, le=10**9)]
    message: Annotated[str, msgspec.Meta(max_length=500)] = ""


class GiftParty(msgspec.Struct, rename="camel"):
    member_id: int
    card_number: str
    first_name: str
    last_name: str


class GiftOut(msgspec.Struct, rename="camel"):
    id: int
    direction: str  # sent | received, from the caller's side
    sender: GiftParty
    recipient: GiftParty
    miles: int
    fee: int
    message: str
    entry_id: int
    created_at: datetime


class GiftPage(msgspec.Struct, rename="camel"):
    items: list[GiftOut]


class GiftTermsOut(msgspec.Struct, rename="camel"):
    """The terms in force and what the caller may still send."""

    fee_percent_bp: int
    fee_minimum: int
    min_miles: int
    daily_limit: int
    yearly_limit: int
    daily_received_limit: int | None
    yearly_received_limit: int | None
    sent_today: int
    sent_this_year: int
