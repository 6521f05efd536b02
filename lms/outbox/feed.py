"""The journal as the feed of miles events (``miles.credited`` / ``miles.debited``).

The ledger writes no outbox row for them: every journal entry records the transaction that
wrote it (``journal_entries.xid``), and the relay reads, beyond its cursor in ``outbox_feeds``,
the entries whose transaction is older than the oldest one still running
(``xid < pg_snapshot_xmin(pg_current_snapshot())``). Those are committed or rolled back for
good: no entry can appear later below that horizon, so reading in (xid, id) order past the
cursor misses none and sees none twice. Entry ids alone would not do: they are drawn before
commit, and a transaction holding a smaller id may commit after a larger one was read.

What consumers get from an entry, in the order of its postings, for its member and pool legs
(system accounts are not the subject of any event):

- each MILES leg: ``miles.credited`` (amount > 0) or ``miles.debited``, payload ``entryId``,
  ``accountId``, ``unit``, ``amount``, ``kind`` (the entry's), ``balanceAfter``; when the same
  account has STATUS_MILES or SEGMENTS legs in the entry (a flown coupon), their sums come
  along as ``statusMiles`` and ``segments`` rather than as events of their own;
- a STATUS_MILES or SEGMENTS leg of an account without a MILES leg in the entry: an event of
  its own, shaped as above.

An event's id is minus its posting's id: outbox ids are positive, so the two never collide,
and a consumer deduplicating on ``Event.id`` (webhook deliveries are unique per partner and
event id) sees the same id each time the same posting is handed over.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.outbox.repository import Event

LEDGER_FEED = "ledger"

# SKIP LOCKED: a relay running beside one that holds the cursor leaves the journal to it.
CLAIM_CURSOR = text(
    "SELECT xid, entry_id FROM outbox_feeds WHERE name = :name FOR UPDATE SKIP LOCKED")

MOVE_CURSOR = text("UPDATE outbox_feeds SET xid = :xid, entry_id = :entry_id WHERE name = :name")

# The batch's entries by the partial index on (xid, id); their member legs by the postings'
# primary key (entry_id, id). An entry without member legs still moves the cursor.
READ_ENTRIES = text("""
WITH batch AS (
  SELECT e.id, e.xid, e.kind, e.created_at FROM journal_entries e
  WHERE e.xid IS NOT NULL
    AND (e.xid, e.id) > (CAST(CAST(:xid AS bigint) AS text)::xid8, :entry_id)
    AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
  ORDER BY e.xid, e.id
  LIMIT :limit
)
SELECT b.xid::text::bigint AS xid, b.id AS entry_id, b.kind, b.created_at,
       p.id AS posting_id, p.account_id, p.unit, p.amount, p.balance_after
FROM batch b
LEFT JOIN (postings p JOIN accounts a ON a.id = p.account_id AND a.kind <> 'system')
  ON p.entry_id = b.id
ORDER BY b.xid, b.id, p.id
""")

HORIZON = text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")

# The newest entry's transaction: what a relay waits to see past (``relay(settle_seconds)``).
NEWEST_XID = text("SELECT xid::text::bigint FROM journal_entries WHERE xid IS NOT NULL "
                  "ORDER BY xid DESC, id DESC LIMIT 1")

FOLDED_UNITS = {"STATUS_MILES": "statusMiles", "SEGMENTS": "segments"}


@dataclass(frozen=True, slots=True)
class FeedBatch:
    events: list[Event]
    entries: int
    # Transactions below this id had all ended before the batch was read.
    horizon: int
    cursor: tuple[int, int] | None


def events_of_entry(rows: Sequence[Any]) -> list[Event]:
    """The events of one entry, from its member legs (rows of READ_ENTRIES, in posting order)."""
    legs = [r for r in rows if r.posting_id is not None]
    folded: dict[int, dict[str, int]] = defaultdict(dict)
    with_miles = {r.account_id for r in legs if r.unit == "MILES"}
    for r in legs:
        if r.unit in FOLDED_UNITS and r.account_id in with_miles:
            key = FOLDED_UNITS[r.unit]
            folded[r.account_id][key] = folded[r.account_id].get(key, 0) + r.amount
    events = []
    for r in legs:
        if r.unit != "MILES" and r.account_id in with_miles:
            continue
        payload: dict[str, Any] = {
            "entryId": r.entry_id, "accountId": r.account_id, "unit": r.unit,
            "amount": r.amount, "kind": r.kind, "balanceAfter": r.balance_after}
        if r.unit == "MILES" and r.account_id in folded:
            payload |= {"statusMiles": 0, "segments": 0} | folded[r.account_id]
        events.append(Event(id=-r.posting_id,
                            topic="miles.credited" if r.amount > 0 else "miles.debited",
                            payload=payload, created_at=r.created_at))
    return events


class JournalFeed:
    """Reads and advances the ledger feed inside the relay's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(self, limit: int) -> FeedBatch | None:
        """The next ``limit`` entries' events, or None when another relay holds the cursor."""
        cursor = (await self.session.execute(CLAIM_CURSOR, {"name": LEDGER_FEED})).first()
        if cursor is None:
            return None
        # Read first: the entries' statement runs on a later snapshot, whose horizon is at
        # least this one, so everything below it that is not in a full batch was read.
        horizon: int = (await self.session.execute(HORIZON)).scalar_one()
        rows = (await self.session.execute(READ_ENTRIES, {
            "xid": cursor.xid, "entry_id": cursor.entry_id, "limit": limit})).all()
        by_entry: dict[int, list[Any]] = {}
        for r in rows:
            by_entry.setdefault(r.entry_id, []).append(r)
        events = [e for entry_rows in by_entry.values() for e in events_of_entry(entry_rows)]
        last = (rows[-1].xid, rows[-1].entry_id) if rows else None
        return FeedBatch(events=events, entries=len(by_entry), horizon=horizon, cursor=last)

    async def advance(self, batch: FeedBatch) -> None:
        if batch.cursor is not None:
            await self.session.execute(MOVE_CURSOR, {
                "name": LEDGER_FEED, "xid": batch.cursor[0], "entry_id": batch.cursor[1]})

    async def horizon(self) -> int:
        value: int = (await self.session.execute(HORIZON)).scalar_one()
        return value

    async def newest_xid(self) -> int | None:
        value: int | None = (await self.session.execute(NEWEST_XID)).scalar()
        return value
