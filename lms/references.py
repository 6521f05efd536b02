"""References between rows that the database does not enforce, checked by ``lms ledger verify``
(numbered on from the statements' checks).

Migration 0021 dropped the foreign keys of the single-transfer writes' rows: each key's check
locked the row it named, and rows such as the partner's or the gift terms' were shared by every
concurrent write. Each of those rows is written by one code path that has just read the rows it
names, in the same transaction, and none of the rows named is ever deleted. This check is what
stands in for the keys: a row that names a row that does not exist is a violation.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from lms.ledger.verify import Invariant, Violation, run_checks

# (table, column, referenced table, referenced column): the keys 0021 dropped.
UNENFORCED: tuple[tuple[str, str, str, str], ...] = (
    ("gifts", "sender_id", "members", "id"),
    ("gifts", "recipient_id", "members", "id"),
    ("gifts", "rule_id", "gift_rules", "id"),
    ("gifts", "entry_id", "journal_entries", "id"),
    ("partner_accruals", "partner_id", "partners", "id"),
    ("redemption_codes", "member_id", "members", "id"),
    ("redemption_codes", "partner_id", "partners", "id"),
    ("partner_holds", "hold_id", "holds", "id"),
    ("partner_holds", "partner_id", "partners", "id"),
    ("partner_holds", "member_id", "members", "id"),
    ("partner_holds", "code_id", "redemption_codes", "id"),
    ("redemptions", "hold_id", "partner_holds", "hold_id"),
    ("redemptions", "partner_id", "partners", "id"),
    ("redemptions", "member_id", "members", "id"),
    ("redemptions", "entry_id", "journal_entries", "id"),
)


def dangling(table: str, column: str, referred: str, referred_column: str) -> str:
    return f"""
        SELECT '{table}.{column}' AS reference, t.{column} AS missing_id, count(*) AS rows
        FROM {table} t
        WHERE t.{column} IS NOT NULL AND NOT EXISTS (
          SELECT 1 FROM {referred} r WHERE r.{referred_column} = t.{column})
        GROUP BY t.{column}"""


CHECKS: tuple[Invariant, ...] = (
    Invariant(10, "the money path's rows name rows that exist (keys not enforced since 0021)",
              "\n        UNION ALL".join(dangling(*key) for key in UNENFORCED)
              + "\n        ORDER BY 1, 2"),
)


async def verify_references(conn: AsyncConnection, limit: int = 100) -> list[Violation]:
    """Every dangling reference (at most ``limit``), in the caller's snapshot."""
    return await run_checks(conn, CHECKS, limit)
