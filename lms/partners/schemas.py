"""API shapes of partners, API keys, earn rates and partner accruals (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,31}$",
                                   description="Short lower-case code, e.g. `acme-shop`")]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217")]
Scope = Literal["accrue", "redeem", "statements", "flights"]
Category = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
PartnerTxnId = Annotated[str, msgspec.Meta(
    pattern=r"^[A-Za-z0-9._:-]{1,100}$",
    description="The partner's own id of the purchase, unique per partner (it appears in URLs)")]
MilliMinor = Annotated[int, msgspec.Meta(
    ge=0, le=10**12, description="Thousandths of the currency's minor unit per mile: "
    "1.25 cents per mile is 1250")]


class PartnerCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    code: Code
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    kind: Literal["shop", "ota", "airline", "client"]
    currency: Currency
    price_per_mile_milli_minor: MilliMinor = 0
    value_per_mile_milli_minor: MilliMinor = 0
    min_cash_share_bp: Annotated[int, msgspec.Meta(
        ge=0, le=10000, description="Minimum cash share of an order, in basis points")] = 0
    webhook_url: Annotated[str, msgspec.Meta(pattern=r"^https?://", max_length=500)] | None \
        = None


class EarnRateOut(msgspec.Struct, rename="camel"):
    id: int
    category: str
    miles_per_unit_bp: int
    effective_from: datetime
    effective_to: datetime | None


class PartnerOut(msgspec.Struct, rename="camel"):
    id: int
    code: str
    name: str
    kind: str
    status: str
    currency: str
    price_per_mile_milli_minor: int
    value_per_mile_milli_minor: int
    min_cash_share_bp: int
    webhook_url: str | None
    clearing_account_id: int | None
    created_at: datetime
    earn_rates: list[EarnRateOut] = []


class EarnRateSet(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    category: Category
    miles_per_unit_bp: Annotated[int, msgspec.Meta(
        ge=0, le=100_000_000,
        description="Miles per whole currency unit in basis points: 1.5 miles per euro is "
                    "15000")]
    effective_from: datetime
    effective_to: datetime | None = None


class ApiKeyCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=4)]
    ip_allow_list: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]],
                             msgspec.Meta(max_length=100,
                                          description="CIDR networks, e.g. 203.0.113.0/24"
                                          )] | None = None
    expires_at: datetime | None = None
    rate_limit_per_minute: Annotated[int, msgspec.Meta(
        ge=1, le=1_000_000, description="Requests per fixed one-minute window; more are "
        "answered 429 `rate_limited` with Retry-After")] = 6000


class ApiKeyRotate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    overlap_seconds: Annotated[int, msgspec.Meta(
        ge=0, le=30 * 86400,
        description="How long the partner's current keys keep working")] = 86400


class ApiKeyOut(msgspec.Struct, rename="camel"):
    id: int
    partner_code: str
    prefix: str
    scopes: list[str]
    status: str
    ip_allow_list: list[str] | None
    rate_limit_per_minute: int
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class IssuedApiKeyOut(msgspec.Struct, rename="camel"):
    """The key itself appears here once and is never shown again."""

    key: str
    api_key: ApiKeyOut


class AccrualRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    card_number: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{8,16}$")]
    partner_txn_id: PartnerTxnId
    amount: Annotated[int, msgspec.Meta(gt=0, le=10**12,
                                        description="Purchase amount in minor units")]
    currency: Currency
    category: Category
    occurred_at: datetime


class AccrualOut(msgspec.Struct, rename="camel"):
    id: int | None  # the accrual's journal entry; None when the purchase earned 0 miles
    card_number: str
    partner_txn_id: str
    miles: int
    amount: int
    currency: str
    category: str
    occurred_at: datetime
    reversed_amount: int
    reversed_miles: int
    balance_after: int | None = None


class ReversalRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    amount: Annotated[int, msgspec.Meta(
        gt=0, le=10**12, description="Minor units to reverse; all that is left if absent")] \
        | None = None
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class ReversalOut(msgspec.Struct, rename="camel"):
    id: int | None  # the reversal's journal entry; None when it takes back 0 miles
    partner_txn_id: str
    amount: int
    miles: int
    total_reversed_amount: int
    total_reversed_miles: int
    remaining_amount: int
    balance_after: int | None
