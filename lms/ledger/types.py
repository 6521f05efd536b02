"""Value types of the ledger: units, entry kinds, legs and who acted."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Unit(enum.StrEnum):
    MILES = "MILES"
    STATUS_MILES = "STATUS_MILES"
    SEGMENTS = "SEGMENTS"


class AccountKind(enum.StrEnum):
    MEMBER = "member"
    POOL = "pool"
    SYSTEM = "system"


class EntryKind(enum.StrEnum):
    ACCRUAL = "accrual"
    PURCHASE = "purchase"
    GIFT = "gift"
    POOL_TRANSFER = "pool_transfer"
    TRANSFER = "transfer"
    CAPTURE = "capture"
    REFUND = "refund"
    REVERSAL = "reversal"
    ADJUSTMENT = "adjustment"
    EXPIRY = "expiry"
    STATUS_PURCHASE = "status_purchase"
    REDEMPTION = "redemption"
    MERGE = "merge"


class HoldStatus(enum.StrEnum):
    PENDING = "pending"
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"


class SystemAccount(enum.StrEnum):
    """Codes of the programme's own accounts; each may be split into shards."""

    ISSUANCE = "issuance"
    BREAKAGE = "breakage"
    ADJUSTMENTS = "adjustments"
    PURCHASES = "purchases"
    FEES = "fees"
    REDEMPTIONS = "redemptions"
    QUALIFICATION = "qualification"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who caused an entry: a member, partner, agent (staff) or the system."""

    type: str
    id: str | None = None

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls("system", name)


@dataclass(frozen=True, slots=True)
class Leg:
    """One posting of an entry: ``amount`` is added to the account's balance (signed)."""

    account_id: int
    unit: Unit
    amount: int


@dataclass(frozen=True, slots=True)
class PostedEntry:
    id: int
    created_at: datetime
    # balance (posted) after the entry, per (account, unit) it touched
    balances: dict[tuple[int, Unit], int]


@dataclass(frozen=True, slots=True)
class BalanceView:
    account_id: int
    unit: Unit
    posted: int
    held: int

    @property
    def available(self) -> int:
        return self.posted - self.held


@dataclass(frozen=True, slots=True)
class HoldView:
    id: int
    account_id: int
    amount: int
    captured: int
    status: HoldStatus
    expires_at: datetime
    created_at: datetime
    closed_at: datetime | None
    reference: str | None
    entry_id: int | None
