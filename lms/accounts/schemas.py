"""API shapes of members, balances and statements (camelCase on the wire)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=200)]


class RegisterRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    email: Email
    password: Password
    first_name: Name
    last_name: Name
    phone: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    birth_date: date | None = None
    locale: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")] = "en"
    timezone: Annotated[str, msgspec.Meta(max_length=64)] = "UTC"


class TokenRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    email: Email
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class TokenResponse(msgspec.Struct, rename="camel"):
    access_token: str
    token_type: str
    expires_at: datetime


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


class RegisterResponse(msgspec.Struct, rename="camel"):
    member: MemberOut
    access_token: str
    expires_at: datetime


class UnitBalance(msgspec.Struct, rename="camel"):
    unit: str
    posted: int
    held: int
    available: int


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
    amount: int
    balance_after: int
    description: str
    reference: str | None
    at: datetime


class StatementPage(msgspec.Struct, rename="camel"):
    lines: list[StatementLine]
    next_cursor: str | None
