"""API shapes of partner statements (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec


class StatementLineOut(msgspec.Struct, rename="camel"):
    entry_id: int
    posted_at: datetime
    kind: str
    side: Literal["issued", "redeemed", "other"]
    reference: str | None
    card_number: str | None  # masked: only the last four digits are shown
    miles: int  # signed, as it counts towards its side's total
    amount: int  # minor units, signed like ``miles``


class KindTotalOut(msgspec.Struct, rename="camel"):
    kind: str
    clearing_miles: int  # signed sum of the postings on the clearing account
    entries: int


class StatementOut(msgspec.Struct, rename="camel"):
    partner_code: str
    month: str
    status: Literal["open", "closed"]
    period_start: datetime
    period_end: datetime
    currency: str
    price_per_mile_milli_minor: int
    value_per_mile_milli_minor: int
    issued_miles: int
    partner_owes: int
    redeemed_miles: int
    programme_owes: int
    net: int  # partnerOwes - programmeOwes: positive, the partner pays the programme
    closed_at: datetime | None
    totals_by_kind: list[KindTotalOut]
    lines: list[StatementLineOut]
