"""API shapes of members, balances and statements (camelCase on the wire)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class RegisterRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Syntax is checked here (types, lengths, the locale's shape); what needs knowledge
    (e-mail rules, phone numbering plans, time zones, password strength) by the service."""

    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
    password: Annotated[str, msgspec.Meta(
        min_length=1, max_length=200,
        description="At least 10 characters, 5 of them different; not a common password")]
    first_name: Name
    last_name: Name
    phone: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    birth_date: date | None = None
    locale: Annotated[str, msgspec.Meta(
        pattern=r"^[a-z]{2}(-[A-Z]{2})?$", description="Language, optionally with a region: "
        "en, en-GB; the region also reads phone numbers written without +")] = "en"
    timezone: Annotated[str, msgspec.Meta(max_length=64, description="IANA time zone")] = "UTC"


class ProfileUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """What a member may change about themselves (e-mail and birth date go through staff)."""

    first_name: Name
    last_name: Name
    phone: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    locale: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")] = "en"
    timezone: Annotated[str, msgspec.Meta(max_length=64)] = "UTC"


class MemberOut(msgspec.Struct, rename="camel"):
    id: int
    card_number: str
    email: str
    first_name: str
    last_name: str
    phone: str | None
    birth_date: date | None
    locale: str
    timezone: str
    status: str
    tier: str
    joined_at: datetime


class UnitBalance(msgspec.Struct, rename="camel"):
    unit: str
    posted: int
    held: int
    available: int
    debt: Annotated[int, msgspec.Meta(description=(
        "Miles owed after a clawback took back miles already spent (0 when none): "
        "redemptions, gifts and transfers wait until later accruals repay it"))] = 0


class ExpiringLot(msgspec.Struct, rename="camel"):
    miles: int
    expires_at: datetime


class BalanceResponse(msgspec.Struct, rename="camel"):
    card_number: str
    balances: list[UnitBalance]
    next_expiring: list[ExpiringLot]
    expiring_in_90_days: int


class StatementLine(msgspec.Struct, rename="camel"):
    id: int
    entry_id: int
    kind: str
    unit: str
    amount: Annotated[int, msgspec.Meta(description="Signed: credits positive, debits "
                                                    "negative")]
    balance_after: int
    description: str
    reference: str | None
    at: datetime


class StatementPage(msgspec.Struct, rename="camel"):
    lines: list[StatementLine]
    next_cursor: str | None
