"""SQL of partner statements: a month's postings on a partner's clearing account (live), and
the insert-only snapshot of a closed month.

The clearing account is split into shards (lms.partners.clearing): ``:clearing`` is the list
of every shard's account id, and a statement reads them all.

A line is one journal entry with a posting on the clearing account, in the month of its
``journal_entries.created_at`` (the posting time, UTC). ``side`` and the partner-facing
``miles`` and ``amount`` are computed here, once, for the live statement and the snapshot alike.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Issued miles are what left the clearing account for members (accruals, net of partner
# returns); redeemed miles are what came back from members (captures, net of refunds).
ISSUED_KINDS = ("accrual", "reversal")
REDEEMED_KINDS = ("capture", "refund")

# Per entry, the sum of its clearing postings (one in every flow today; summed to be safe),
# the partner's reference and the member's card (masked to its last four digits).
LINES_CTE = """
WITH clearing AS (
  SELECT p.entry_id, sum(p.amount)::bigint AS clearing_miles
  FROM postings p
  JOIN journal_entries e ON e.id = p.entry_id
  WHERE p.account_id = ANY(CAST(:clearing AS bigint[])) AND p.unit = 'MILES'
    AND e.created_at >= :start AND e.created_at < :end
  GROUP BY p.entry_id
), lines AS (
  SELECT e.id AS entry_id, e.created_at AS posted_at, e.kind,
         CASE WHEN e.kind IN ('accrual', 'reversal') THEN 'issued'
              WHEN e.kind IN ('capture', 'refund') THEN 'redeemed'
              ELSE 'other' END AS side,
         left(COALESCE(e.details->>'partnerTxnId', e.details->>'orderReference',
                       e.details->>'reference', h.reference, e.external_ref), 200) AS reference,
         (SELECT CASE WHEN m.card_number IS NULL THEN NULL
                      ELSE repeat('*', greatest(length(m.card_number) - 4, 0))
                           || right(m.card_number, 4) END
          FROM postings q JOIN members m ON m.account_id = q.account_id
          WHERE q.entry_id = e.id AND q.account_id <> ALL(CAST(:clearing AS bigint[]))
          ORDER BY q.id LIMIT 1) AS card_number,
         c.clearing_miles
  FROM clearing c
  JOIN journal_entries e ON e.id = c.entry_id
  LEFT JOIN holds h ON h.id = e.hold_id
), priced AS (
  SELECT l.*,
         CASE l.side WHEN 'issued' THEN -l.clearing_miles ELSE l.clearing_miles END AS miles,
         CASE l.side WHEN 'issued' THEN :price WHEN 'redeemed' THEN :value ELSE 0 END AS rate
  FROM lines l
)
"""

# Rounded half away from zero to the minor unit, like the totals (see service.money).
LINE_COLUMNS = """
entry_id, posted_at, kind, side, reference, card_number, clearing_miles, miles,
(sign(miles) * floor((abs(miles)::numeric * rate + 500) / 1000))::bigint AS amount
"""

LIVE_LINES = text(LINES_CTE + f"SELECT {LINE_COLUMNS} FROM priced ORDER BY posted_at, entry_id")

SNAPSHOT_LINES = text(LINES_CTE + f"""
INSERT INTO partner_statement_lines (statement_id, entry_id, posted_at, kind, side, reference,
                                     card_number, clearing_miles, miles, amount)
SELECT :statement_id, {LINE_COLUMNS} FROM priced
""")

LEDGER_TOTALS = text("""
SELECT e.kind, sum(p.amount)::bigint AS miles, count(DISTINCT e.id)::int AS entries
FROM postings p JOIN journal_entries e ON e.id = p.entry_id
WHERE p.account_id = ANY(CAST(:clearing AS bigint[])) AND p.unit = 'MILES'
  AND e.created_at >= :start AND e.created_at < :end
GROUP BY e.kind
""")

ADD_STATEMENT = text("""
INSERT INTO partner_statements (partner_id, month, clearing_account_id, currency,
    price_per_mile_milli_minor, value_per_mile_milli_minor, issued_miles, partner_owes,
    redeemed_miles, programme_owes, line_count)
VALUES (:partner_id, :month, :clearing_account_id, :currency, :price, :value, :issued_miles,
        :partner_owes, :redeemed_miles, :programme_owes, :line_count)
ON CONFLICT ON CONSTRAINT uq_partner_statements_partner_month DO NOTHING
RETURNING id
""")

ADD_TOTAL = text("""
INSERT INTO partner_statement_totals (statement_id, kind, miles, entries)
VALUES (:statement_id, :kind, :miles, :entries)
""")

STATEMENT = text("SELECT * FROM partner_statements WHERE partner_id = :partner_id "
                 "AND month = :month")

STATEMENT_TOTALS = text("SELECT kind, miles, entries FROM partner_statement_totals "
                        "WHERE statement_id = :statement_id ORDER BY kind")

STATEMENT_LINES = text("""
SELECT entry_id, posted_at, kind, side, reference, card_number, clearing_miles, miles, amount
FROM partner_statement_lines WHERE statement_id = :statement_id
ORDER BY posted_at, entry_id
""")

CLOSED_MONTHS = text("SELECT month FROM partner_statements WHERE partner_id = :partner_id")


class SettlementRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def _window(clearing: list[int], start: datetime, end: datetime) -> dict[str, Any]:
        return {"clearing": clearing, "start": start, "end": end}

    async def live_lines(self, clearing: list[int], start: datetime, end: datetime, *,
                         price: int, value: int) -> list[Any]:
        return list(await self.session.execute(
            LIVE_LINES, self._window(clearing, start, end) | {"price": price, "value": value}))

    async def ledger_totals(self, clearing: list[int], start: datetime, end: datetime
                            ) -> dict[str, tuple[int, int]]:
        rows = await self.session.execute(LEDGER_TOTALS, self._window(clearing, start, end))
        return {r.kind: (r.miles, r.entries) for r in rows}

    async def add_statement(self, **values: Any) -> int | None:
        """The new statement's id, or None when the month was closed already (also by a
        concurrent closer, which this waits for)."""
        statement_id: int | None = (await self.session.execute(
            ADD_STATEMENT, values)).scalar_one_or_none()
        return statement_id

    async def add_totals(self, statement_id: int,
                         totals: dict[str, tuple[int, int]]) -> None:
        for kind, (miles, entries) in sorted(totals.items()):
            await self.session.execute(ADD_TOTAL, {"statement_id": statement_id, "kind": kind,
                                                   "miles": miles, "entries": entries})

    async def snapshot_lines(self, statement_id: int, clearing: list[int], start: datetime,
                             end: datetime, *, price: int, value: int) -> int:
        result: Any = await self.session.execute(SNAPSHOT_LINES, self._window(
            clearing, start, end) | {"statement_id": statement_id, "price": price,
                                     "value": value})
        count: int = result.rowcount
        return count

    async def statement(self, partner_id: int, month: date) -> Any | None:
        return (await self.session.execute(
            STATEMENT, {"partner_id": partner_id, "month": month})).one_or_none()

    async def statement_totals(self, statement_id: int) -> dict[str, tuple[int, int]]:
        rows = await self.session.execute(STATEMENT_TOTALS, {"statement_id": statement_id})
        return {r.kind: (r.miles, r.entries) for r in rows}

    async def statement_lines(self, statement_id: int) -> list[Any]:
        return list(await self.session.execute(STATEMENT_LINES,
                                               {"statement_id": statement_id}))

    async def closed_months(self, partner_id: int) -> set[date]:
        rows = await self.session.execute(CLOSED_MONTHS, {"partner_id": partner_id})
        return {r.month for r in rows}
