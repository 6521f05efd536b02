"""Checks of closed partner statements against the ledger, run by ``lms ledger verify``
after the ledger's own invariants (numbered on from them).

A closed statement is a copy; the journal is the truth. The copy must hold, per entry kind,
exactly the postings on the partner's clearing account (every shard of it, the accounts coded
``partner:<id>``, not the copy's own column) whose entries were posted in that month (UTC); its
header and its lines must agree with those totals; and its tables must refuse UPDATE, DELETE
and TRUNCATE.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from lms.ledger.verify import Invariant, Violation, run_checks
from lms.settlement.models import SNAPSHOT_TABLES

MONTH_START = "(s.month::timestamp AT TIME ZONE 'UTC')"
MONTH_END = "((s.month + interval '1 month')::timestamp AT TIME ZONE 'UTC')"
ROUNDED = "(sign({m}) * floor((abs({m})::numeric * {rate} + 500) / 1000))::bigint"

CHECKS: tuple[Invariant, ...] = (
    Invariant(7, "closed partner statements equal the ledger's clearing postings by kind", f"""
        WITH ledger AS (
          SELECT s.id AS statement_id, e.kind, sum(p.amount)::bigint AS miles,
                 count(DISTINCT e.id)::int AS entries
          FROM partner_statements s
          JOIN accounts a ON a.kind = 'system' AND a.code = 'partner:' || s.partner_id
          JOIN postings p ON p.account_id = a.id AND p.unit = 'MILES'
          JOIN journal_entries e ON e.id = p.entry_id
           AND e.created_at >= {MONTH_START} AND e.created_at < {MONTH_END}
          GROUP BY s.id, e.kind
        )
        SELECT s.partner_id, to_char(s.month, 'YYYY-MM') AS month,
               COALESCE(l.kind, t.kind) AS kind, t.miles AS statement_miles,
               l.miles AS ledger_miles, t.entries AS statement_entries,
               l.entries AS ledger_entries
        FROM ledger l
        FULL JOIN partner_statement_totals t
          ON t.statement_id = l.statement_id AND t.kind = l.kind
        JOIN partner_statements s ON s.id = COALESCE(l.statement_id, t.statement_id)
        WHERE l.miles IS DISTINCT FROM t.miles OR l.entries IS DISTINCT FROM t.entries
        ORDER BY 1, 2, 3
    """),
    Invariant(8, "closed partner statements agree with their own totals and lines", f"""
        WITH kinds AS (
          SELECT s.id,
                 COALESCE(-sum(t.miles) FILTER (WHERE t.kind IN ('accrual', 'reversal')), 0)
                   AS issued,
                 COALESCE(sum(t.miles) FILTER (WHERE t.kind IN ('capture', 'refund')), 0)
                   AS redeemed,
                 COALESCE(sum(t.entries), 0) AS entries
          FROM partner_statements s
          LEFT JOIN partner_statement_totals t ON t.statement_id = s.id
          GROUP BY s.id
        ), header AS (
          SELECT s.partner_id, s.month, 'header' AS what
          FROM partner_statements s JOIN kinds k ON k.id = s.id
          WHERE s.issued_miles <> k.issued OR s.redeemed_miles <> k.redeemed
             OR s.line_count <> k.entries
             OR s.partner_owes <> {ROUNDED.format(m="k.issued",
                                                  rate="s.price_per_mile_milli_minor")}
             OR s.programme_owes <> {ROUNDED.format(m="k.redeemed",
                                                    rate="s.value_per_mile_milli_minor")}
        ), lines AS (
          SELECT s.partner_id, s.month, 'lines of ' || COALESCE(t.kind, l.kind) AS what
          FROM (SELECT statement_id, kind, sum(clearing_miles) AS miles, count(*) AS n
                FROM partner_statement_lines GROUP BY statement_id, kind) l
          FULL JOIN partner_statement_totals t
            ON t.statement_id = l.statement_id AND t.kind = l.kind
          JOIN partner_statements s ON s.id = COALESCE(l.statement_id, t.statement_id)
          WHERE l.miles IS DISTINCT FROM t.miles OR l.n IS DISTINCT FROM t.entries
        )
        SELECT partner_id, to_char(month, 'YYYY-MM') AS month, what FROM header
        UNION ALL
        SELECT partner_id, to_char(month, 'YYYY-MM'), what FROM lines
        ORDER BY 1, 2, 3
    """),
    Invariant(9, "closed statements are never updated or deleted (enforced in the database)",
              """
        SELECT t.name AS "table", e.event AS unprotected
        FROM unnest(CAST(:tables AS text[])) AS t(name)
        CROSS JOIN (VALUES ('UPDATE', 16), ('DELETE', 8), ('TRUNCATE', 32)) AS e(event, bit)
        WHERE NOT EXISTS (
          SELECT 1 FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
          WHERE c.relname = t.name AND NOT tg.tgisinternal AND tg.tgenabled IN ('O', 'A')
            AND tg.tgtype & 2 <> 0 AND tg.tgtype & e.bit <> 0
        )
        ORDER BY 1, 2
    """),
)


async def verify_statements(conn: AsyncConnection, limit: int = 100) -> list[Violation]:
    """Every violation (at most ``limit`` per check). Run it in the same repeatable-read
    transaction as the ledger's checks, so both read one snapshot."""
    return await run_checks(conn, CHECKS, limit, SNAPSHOT_TABLES)
