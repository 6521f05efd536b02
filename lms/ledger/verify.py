"""The ledger's invariants (DESIGN §3), each checked by one SQL query over the whole database.

Each query returns one row per violation, with the ids involved. ``lms ledger verify`` prints
them and exits 1 if there is any; the tests run the same checks after every concurrent scenario.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from lms.ledger.models import APPEND_ONLY_TABLES


@dataclass(frozen=True, slots=True)
class Invariant:
    number: int
    name: str
    sql: str


INVARIANTS: tuple[Invariant, ...] = (
    Invariant(1, "every entry sums to zero per unit", """
        SELECT entry_id, unit, sum(amount) AS total FROM postings
        GROUP BY entry_id, unit HAVING sum(amount) <> 0
        UNION ALL
        SELECT e.id, NULL, NULL FROM journal_entries e
        WHERE NOT EXISTS (SELECT 1 FROM postings p WHERE p.entry_id = e.id)
        UNION ALL  -- postings carry no foreign key (see lms.ledger.models.Posting)
        SELECT p.entry_id, p.unit, p.amount FROM postings p
        WHERE NOT EXISTS (SELECT 1 FROM journal_entries e WHERE e.id = p.entry_id)
        ORDER BY 1
    """),
    Invariant(2, "every balance row equals the sum of its postings", """
        SELECT b.account_id, b.unit, b.posted, COALESCE(p.total, 0) AS postings_total
        FROM balances b
        LEFT JOIN (SELECT account_id, unit, sum(amount) AS total FROM postings
                   GROUP BY account_id, unit) p
          ON p.account_id = b.account_id AND p.unit = b.unit
        WHERE b.posted <> COALESCE(p.total, 0)
        UNION ALL
        SELECT p.account_id, p.unit, NULL, sum(p.amount) FROM postings p
        WHERE NOT EXISTS (SELECT 1 FROM balances b
                          WHERE b.account_id = p.account_id AND b.unit = p.unit)
        GROUP BY p.account_id, p.unit
        UNION ALL
        SELECT b.account_id, b.unit, b.held, COALESCE(h.total, 0) AS pending_holds
        FROM balances b
        LEFT JOIN (SELECT account_id, unit, sum(amount) AS total FROM holds
                   WHERE status = 'pending' GROUP BY account_id, unit) h
          ON h.account_id = b.account_id AND h.unit = b.unit
        WHERE b.held <> COALESCE(h.total, 0)
        ORDER BY 1, 2
    """),
    Invariant(3, "a member or pool account is below zero available only by a clawback", """
        SELECT b.account_id, b.unit, b.posted, b.held FROM balances b
        JOIN accounts a ON a.id = b.account_id
        WHERE a.kind IN ('member', 'pool')
          AND (b.held < 0 OR (b.posted - b.held < 0 AND NOT EXISTS (
                 SELECT 1 FROM postings p JOIN journal_entries e ON e.id = p.entry_id
                 WHERE p.account_id = b.account_id AND p.unit = b.unit
                   AND e.details ? 'clawback')))
        ORDER BY 1, 2
    """),
    Invariant(4, "open lots sum to the account's MILES balance (zero while in debt)", """
        SELECT b.account_id, b.posted, COALESCE(l.total, 0) AS open_lots
        FROM balances b
        JOIN accounts a ON a.id = b.account_id AND a.kind IN ('member', 'pool')
        LEFT JOIN (SELECT account_id, sum(remaining) AS total FROM lots GROUP BY account_id) l
          ON l.account_id = b.account_id
        WHERE b.unit = 'MILES' AND GREATEST(b.posted, 0) <> COALESCE(l.total, 0)
        UNION ALL  -- lots carry no foreign key either
        SELECT l.account_id, NULL, sum(l.remaining) FROM lots l
        WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = l.account_id
                          AND a.kind IN ('member', 'pool'))
        GROUP BY l.account_id
        ORDER BY 1
    """),
    Invariant(5, "no external reference or idempotency key applied twice", """
        SELECT 'external_ref' AS what, source || ':' || external_ref AS ref, count(*) AS times
        FROM journal_entries WHERE external_ref IS NOT NULL
        GROUP BY source, external_ref HAVING count(*) > 1
        UNION ALL
        SELECT 'reversal', reverses_id::text, count(*) FROM journal_entries
        WHERE reverses_id IS NOT NULL GROUP BY reverses_id HAVING count(*) > 1
        UNION ALL
        SELECT 'idempotency_key', principal || ':' || key, count(*) FROM idempotency_keys
        GROUP BY principal, key HAVING count(*) > 1
        UNION ALL
        SELECT 'captured_hold', hold_id::text, count(*) FROM journal_entries
        WHERE hold_id IS NOT NULL AND kind = 'capture' GROUP BY hold_id HAVING count(*) > 1
    """),
    Invariant(6, "journal rows are never updated or deleted (enforced in the database)", """
        SELECT t.name AS "table", e.event AS unprotected
        FROM unnest(CAST(:tables AS text[])) AS t(name)
        CROSS JOIN (VALUES ('UPDATE', 16), ('DELETE', 8), ('TRUNCATE', 32)) AS e(event, bit)
        WHERE NOT EXISTS (
          SELECT 1 FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
          WHERE c.relname = t.name AND NOT tg.tgisinternal AND tg.tgenabled IN ('O', 'A')
            AND tg.tgtype & 2 <> 0 AND tg.tgtype & e.bit <> 0  -- a BEFORE trigger on it
        )
        ORDER BY 1, 2
    """),
)


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: Invariant
    row: dict[str, Any]

    def __str__(self) -> str:
        details = ", ".join(f"{k}={v}" for k, v in self.row.items())
        return f"invariant {self.invariant.number} ({self.invariant.name}): {details}"


async def run_checks(conn: AsyncConnection, checks: Sequence[Invariant], limit: int,
                     tables: Sequence[str] = ()) -> list[Violation]:
    """The violations of ``checks`` (at most ``limit`` each); ``tables`` fills a check's
    ``:tables`` parameter."""
    violations: list[Violation] = []
    for check in checks:
        params = {"tables": list(tables)} if ":tables" in check.sql else {}
        result = await conn.execute(text(f"SELECT * FROM ({check.sql}) v LIMIT {int(limit)}"),
                                    params)
        violations.extend(Violation(check, dict(r._mapping)) for r in result)
    return violations


async def verify(conn: AsyncConnection, limit: int = 100) -> list[Violation]:
    """All violations (at most ``limit`` per invariant), read in one repeatable snapshot."""
    await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    return await run_checks(conn, INVARIANTS, limit, APPEND_ONLY_TABLES)
