"""API shapes of missing-flight claims (camelCase on the wire)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec


class ClaimRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    ticket_number: Annotated[str, msgspec.Meta(
        pattern=r"^[0-9]{13}$", description="The 13-digit ticket number, e.g. 0741234567890")]
    flight_number: Annotated[str, msgspec.Meta(
        pattern=r"^[A-Za-z0-9]{2}[A-Za-z]?[0-9]{1,4}[A-Za-z]?$", max_length=8,
        description="Marketing carrier and number, e.g. AF1234")]
    flight_date: Annotated[date, msgspec.Meta(description="Local date of departure")]


class ClaimOut(msgspec.Struct, rename="camel"):
    id: int
    ticket_number: str
    flight_number: str
    flight_date: date
    status: Annotated[str, msgspec.Meta(description="pending, credited or rejected")]
    reason: str | None
    entry_id: int | None
    created_at: datetime
    resolved_at: datetime | None


class ClaimList(msgspec.Struct, rename="camel"):
    claims: list[ClaimOut]
