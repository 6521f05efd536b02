"""SQL of claims: insert, list, and the set-based matching against the ledger's journal."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

COLUMNS = ("id, ticket_number, flight_number, flight_date, status, reason, entry_id, "
           "created_at, resolved_at")

INSERT = text(f"""
INSERT INTO claims (member_id, ticket_number, flight_number, flight_date)
VALUES (:member_id, :ticket, :flight, :flight_date)
ON CONFLICT ON CONSTRAINT uq_claims_member_flight DO NOTHING
RETURNING {COLUMNS}
""")

GET = text(f"SELECT {COLUMNS} FROM claims WHERE id = :id")

LIST = text(f"""
SELECT {COLUMNS} FROM claims WHERE member_id = :member_id ORDER BY id DESC LIMIT :limit
""")

MEMBER_ACCOUNT = text("SELECT account_id FROM members WHERE id = :id")

# A coupon credit is a journal entry with source 'flight' and external_ref
# '<ticket>/<coupon>'. Coupons of a ticket are numbered 1 to 4 (IATA), so the four exact
# references are looked up on the unique (source, external_ref) index instead of a prefix
# scan. The entry must post to the claimant's account, and where it records the flight
# ("flight" in details, with the flight date as effective time) that must be the claimed one,
# so that a claim for coupon 2 is not answered by the credit of coupon 1. Flight numbers are
# compared without leading zeros (LM0123 is LM123), as the service stores the claim's.
MATCH = text("""
WITH matched AS (
  SELECT DISTINCT ON (c.id) c.id, e.id AS entry_id
  FROM claims c
  JOIN members m ON m.id = c.member_id
  JOIN journal_entries e
    ON e.source = 'flight'
   AND e.external_ref = ANY (ARRAY[c.ticket_number || '/1', c.ticket_number || '/2',
                                   c.ticket_number || '/3', c.ticket_number || '/4'])
  WHERE c.status = 'pending'
    AND (CAST(:claim_id AS bigint) IS NULL OR c.id = CAST(:claim_id AS bigint))
    AND (CAST(:member_id AS bigint) IS NULL OR c.member_id = CAST(:member_id AS bigint))
    AND (CAST(:ticket AS text) IS NULL OR c.ticket_number = CAST(:ticket AS text))
    AND (CAST(:entry_id AS bigint) IS NULL OR e.id = CAST(:entry_id AS bigint))
    AND e.reverses_id IS NULL
    AND EXISTS (SELECT 1 FROM postings p
                WHERE p.entry_id = e.id AND p.account_id = m.account_id AND p.amount > 0)
    AND (e.details ->> 'flight' IS NULL
         OR (regexp_replace(upper(e.details ->> 'flight'), '^([A-Z0-9]{2}[A-Z]?)0+([0-9])',
                            '\\1\\2') = c.flight_number
             AND (e.effective_at AT TIME ZONE 'UTC')::date = c.flight_date))
  ORDER BY c.id, e.id
  LIMIT :limit
),
credited AS (
  UPDATE claims SET status = 'credited', entry_id = matched.entry_id, resolved_at = now()
  FROM matched
  WHERE claims.id = matched.id AND claims.status = 'pending'
  RETURNING claims.id, claims.member_id, claims.ticket_number, claims.flight_number,
            claims.flight_date, claims.entry_id
)
INSERT INTO outbox_events (topic, payload)
SELECT 'claim.credited', jsonb_build_object(
  'claimId', id, 'memberId', member_id, 'ticketNumber', ticket_number,
  'flightNumber', flight_number, 'flightDate', flight_date, 'entryId', entry_id)
FROM credited
""")

# Claims still pending when the window has closed: the feed never sent the flight.
REJECT_EXPIRED = text("""
WITH rejected AS (
  UPDATE claims SET status = 'rejected', reason = 'no_matching_flight', resolved_at = now()
  WHERE id IN (SELECT id FROM claims WHERE status = 'pending' AND flight_date < :oldest
               ORDER BY flight_date, id LIMIT :limit FOR UPDATE SKIP LOCKED)
  RETURNING id, member_id, ticket_number, flight_number, flight_date
)
INSERT INTO outbox_events (topic, payload)
SELECT 'claim.rejected', jsonb_build_object(
  'claimId', id, 'memberId', member_id, 'ticketNumber', ticket_number,
  'flightNumber', flight_number, 'flightDate', flight_date, 'reason', 'no_matching_flight')
FROM rejected
""")

MEMBER_OF_ACCOUNT = text("SELECT id FROM members WHERE account_id = :account_id")


class ClaimRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def member_account(self, member_id: int) -> int | None:
        value: int | None = (await self.session.execute(
            MEMBER_ACCOUNT, {"id": member_id})).scalar_one_or_none()
        return value

    async def member_of_account(self, account_id: int) -> int | None:
        value: int | None = (await self.session.execute(
            MEMBER_OF_ACCOUNT, {"account_id": account_id})).scalar_one_or_none()
        return value

    async def insert(self, member_id: int, ticket: str, flight: str, flight_date: date
                     ) -> Any | None:
        return (await self.session.execute(INSERT, {
            "member_id": member_id, "ticket": ticket, "flight": flight,
            "flight_date": flight_date})).first()

    async def get(self, claim_id: int) -> Any:
        return (await self.session.execute(GET, {"id": claim_id})).one()

    async def list(self, member_id: int, limit: int) -> list[Any]:
        return list((await self.session.execute(LIST, {"member_id": member_id,
                                                       "limit": limit})).all())

    async def match(self, *, limit: int, claim_id: int | None = None,
                    member_id: int | None = None, ticket: str | None = None,
                    entry_id: int | None = None) -> int:
        result: Any = await self.session.execute(MATCH, {
            "limit": limit, "claim_id": claim_id, "member_id": member_id, "ticket": ticket,
            "entry_id": entry_id})
        return int(result.rowcount)

    async def reject_expired(self, oldest: date, limit: int) -> int:
        result: Any = await self.session.execute(REJECT_EXPIRED, {"oldest": oldest,
                                                                  "limit": limit})
        return int(result.rowcount)
