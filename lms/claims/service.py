"""Missing-flight claims: a member names a flight the feed has not credited; the claim waits
for the coupon, is marked credited when it arrives and rejected when the window closes.

The claim never credits anything itself: the coupon from the airline's feed is the only
source of a flight credit (credited once, ever), the claim only follows it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lms.accounts.errors import MemberNotFound
from lms.claims.errors import ClaimExists, ClaimWindowClosed, FlightDateInFuture
from lms.claims.repository import ClaimRepository
from lms.claims.schemas import ClaimOut, ClaimRequest
from lms.outbox.service import emit

CLAIM_WINDOW = timedelta(days=180)
MATCH_BATCH = 5000
LIST_LIMIT = 200


FLIGHT = re.compile(r"([A-Z0-9]{2}[A-Z]??)0*([0-9]+[A-Z]?)")


def normal_flight_number(raw: str) -> str:
    """Upper case, no leading zeros in the number: what members type and what the feed
    sends compare equal (LM0123, lm123 -> LM123)."""
    flight = raw.strip().upper()
    match = FLIGHT.fullmatch(flight)
    return match.group(1) + match.group(2) if match else flight


def today() -> date:
    return datetime.now(UTC).date()


def claim_out(r: Any) -> ClaimOut:
    return ClaimOut(id=r.id, ticket_number=r.ticket_number, flight_number=r.flight_number,
                    flight_date=r.flight_date, status=r.status, reason=r.reason,
                    entry_id=r.entry_id, created_at=r.created_at, resolved_at=r.resolved_at)


class ClaimService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = ClaimRepository(session)

    async def submit(self, member_id: int, data: ClaimRequest, *, on: date | None = None
                     ) -> ClaimOut:
        """Record a claim; a flight the feed already credited to the member is answered
        as credited at once."""
        on = on or today()
        # Flights are dated in local time: a flight "tomorrow" in UTC may have flown
        # already east of Greenwich, so one day of slack.
        if data.flight_date > on + timedelta(days=1):
            raise FlightDateInFuture(field="flightDate")
        if on - data.flight_date > CLAIM_WINDOW:
            raise ClaimWindowClosed(
                f"The flight of {data.flight_date.isoformat()} is more than "
                f"{CLAIM_WINDOW.days} days ago", field="flightDate")
        if await self.repo.member_account(member_id) is None:
            raise MemberNotFound()
        row = await self.repo.insert(member_id, data.ticket_number,
                                     normal_flight_number(data.flight_number), data.flight_date)
        if row is None:
            raise ClaimExists()
        await emit(self.session, "claim.submitted", {
            "claimId": row.id, "memberId": member_id, "ticketNumber": row.ticket_number,
            "flightNumber": row.flight_number, "flightDate": row.flight_date.isoformat()})
        await self.repo.match(limit=1, claim_id=row.id)
        return claim_out(await self.repo.get(row.id))

    async def list(self, member_id: int) -> list[ClaimOut]:
        if await self.repo.member_account(member_id) is None:
            raise MemberNotFound()
        return [claim_out(r) for r in await self.repo.list(member_id, LIST_LIMIT)]

    async def match_credited(self, ticket_number: str, *, account_id: int,
                             entry_id: int | None = None) -> int:
        """For the accrual code, after crediting a coupon of ``ticket_number`` to
        ``account_id`` (in the same unit of work): mark the member's pending claims for
        it credited. Returns how many. The beat job does the same for whatever this missed."""
        member_id = await self.repo.member_of_account(account_id)
        if member_id is None:
            return 0
        return await self.repo.match(limit=MATCH_BATCH, member_id=member_id,
                                     ticket=ticket_number, entry_id=entry_id)

    async def match_pending(self, *, limit: int = MATCH_BATCH) -> int:
        """Up to ``limit`` pending claims whose coupon has been credited: mark them."""
        return await self.repo.match(limit=limit)

    async def reject_expired(self, *, on: date | None = None, limit: int = MATCH_BATCH
                             ) -> int:
        """Reject up to ``limit`` claims whose window closed without a matching flight.
        Run after ``match_pending``, so a coupon that arrived in time always wins."""
        return await self.repo.reject_expired((on or today()) - CLAIM_WINDOW, limit)
