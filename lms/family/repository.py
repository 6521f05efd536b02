"""All SQL of family pools, spoken to asyncpg inside the caller's transaction.

Lock order of every family operation (and of the accrual paths that route credits to pools):
the advisory lock of each member whose membership starts or ends (by member id), the pool
row, the membership rows (by member id), then the ledger's balance rows. The accrual paths
take only the last two, in the same order, so nothing here can deadlock against them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import asyncpg

from lms.db import advisory_keys

# The first key of the two-key advisory locks that serialise one member's pool changes.
ADVISORY_NAMESPACE = 0x46414D

MEMBER_COLUMNS = ("m.id, m.account_id, m.card_number, m.first_name, m.last_name, m.status")

CURRENT_ROUTES = """
SELECT fm.id, fm.member_id, fm.pool_id, p.account_id
FROM family_members fm JOIN family_pools p ON p.id = fm.pool_id
WHERE fm.member_id = ANY($1::bigint[]) AND fm.left_at IS NULL
ORDER BY fm.member_id
FOR NO KEY UPDATE OF fm
"""

ADD_CONTRIBUTIONS = """
UPDATE family_members fm SET contributed = fm.contributed + d.miles
FROM unnest($1::bigint[], $2::bigint[]) AS d(id, miles)
WHERE fm.id = d.id
"""

RULE_IN_FORCE = """
SELECT id, effective_from, max_members, cooling_off_days, invitation_days FROM family_rules
WHERE effective_from <= $1 ORDER BY effective_from DESC LIMIT 1
"""

INSERT_RULE = """
INSERT INTO family_rules (effective_from, max_members, cooling_off_days, invitation_days,
                          created_by)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (effective_from) DO NOTHING RETURNING id
"""

MEMBERSHIP_COLUMNS = """fm.id, fm.pool_id, fm.member_id, fm.role, fm.contributed, fm.paid_out,
fm.joined_at, fm.left_at, fm.left_reason"""

CURRENT_MEMBERSHIP = f"""
SELECT {MEMBERSHIP_COLUMNS}, p.account_id, p.head_id
FROM family_members fm JOIN family_pools p ON p.id = fm.pool_id
WHERE fm.member_id = $1 AND fm.left_at IS NULL
"""

LAST_LEFT = "SELECT max(left_at) FROM family_members WHERE member_id = $1"

LOCK_POOL = """
SELECT id, account_id, head_id, status, created_at FROM family_pools WHERE id = $1 FOR UPDATE
"""

POOL_MEMBERS = f"""
SELECT {MEMBERSHIP_COLUMNS}, {MEMBER_COLUMNS.replace("m.id, ", "")}
FROM family_members fm JOIN members m ON m.id = fm.member_id
WHERE fm.pool_id = $1 AND fm.left_at IS NULL
ORDER BY fm.member_id
"""

LOCK_POOL_MEMBERS = """
SELECT id, member_id, role, contributed FROM family_members
WHERE pool_id = $1 AND left_at IS NULL ORDER BY member_id FOR UPDATE
"""

INSERT_POOL = """
INSERT INTO family_pools (account_id, head_id) VALUES ($1, $2) RETURNING id, created_at
"""

INSERT_MEMBERSHIP = """
INSERT INTO family_members (pool_id, member_id, role) VALUES ($1, $2, $3) RETURNING id
"""

END_MEMBERSHIPS = """
UPDATE family_members fm SET left_at = $2, left_reason = $3, paid_out = fm.paid_out + d.paid
FROM unnest($1::bigint[], $4::bigint[]) AS d(id, paid)
WHERE fm.id = d.id
"""

DISSOLVE_POOL = """
UPDATE family_pools SET status = 'dissolved', dissolved_at = $2 WHERE id = $1
"""

INVITATION_COLUMNS = """i.id, i.pool_id, i.member_id, i.invited_by, i.status, i.created_at,
i.expires_at, i.answered_at"""

PENDING_INVITATIONS = f"""
SELECT {INVITATION_COLUMNS}, m.card_number, m.first_name, m.last_name
FROM family_invitations i JOIN members m ON m.id = i.member_id
WHERE i.pool_id = $1 AND i.status = 'pending' AND i.expires_at > $2
ORDER BY i.id
"""

INVITATIONS_FOR = f"""
SELECT {INVITATION_COLUMNS}, h.card_number AS head_card_number, h.first_name AS head_first_name,
       h.last_name AS head_last_name
FROM family_invitations i JOIN family_pools p ON p.id = i.pool_id
JOIN members h ON h.id = p.head_id
WHERE i.member_id = $1 AND i.status = 'pending' AND i.expires_at > $2
ORDER BY i.id
"""

INSERT_INVITATION = f"""
INSERT INTO family_invitations AS i (pool_id, member_id, invited_by, expires_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (pool_id, member_id) WHERE status = 'pending' DO NOTHING
RETURNING {INVITATION_COLUMNS}
"""

LOCK_INVITATION = f"SELECT {INVITATION_COLUMNS} FROM family_invitations i WHERE id = $1 FOR UPDATE"

ANSWER_INVITATION = f"""
UPDATE family_invitations i SET status = $2, answered_at = $3 WHERE id = $1
RETURNING {INVITATION_COLUMNS}
"""

# A stale invitation (expired, or to a pool that is dissolved) is simply left pending and
# ignored; this one frees the (pool, member) slot so that a fresh invitation can be sent.
CANCEL_STALE = """
UPDATE family_invitations SET status = 'cancelled', answered_at = $3
WHERE pool_id = $1 AND member_id = $2 AND status = 'pending' AND expires_at <= $3
"""

CANCEL_POOL_INVITATIONS = """
UPDATE family_invitations SET status = 'cancelled', answered_at = $2
WHERE pool_id = $1 AND status = 'pending'
"""


class FamilyRepository:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    # -- routing of credits -------------------------------------------------------------

    async def lock_current_routes(self, member_ids: Sequence[int]) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(
            CURRENT_ROUTES, sorted(set(member_ids)))
        return rows

    async def add_contributions(self, miles_by_membership: dict[int, int]) -> None:
        ids = sorted(k for k, v in miles_by_membership.items() if v)
        if ids:
            await self.conn.execute(ADD_CONTRIBUTIONS, ids,
                                    [miles_by_membership[i] for i in ids])

    # -- rules ------------------------------------------------------------------------------

    async def rule_in_force(self, day: date) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(RULE_IN_FORCE, day)
        return row

    async def insert_rule(self, effective_from: date, max_members: int, cooling_off_days: int,
                          invitation_days: int, created_by: str) -> bool:
        return await self.conn.fetchval(INSERT_RULE, effective_from, max_members,
                                        cooling_off_days, invitation_days,
                                        created_by) is not None

    # -- members, pools, memberships -------------------------------------------------------

    async def lock_member_changes(self, member_ids: Sequence[int]) -> None:
        for key in advisory_keys(member_ids):
            await self.conn.execute("SELECT pg_advisory_xact_lock($1::int, $2::int)",
                                    ADVISORY_NAMESPACE, key)

    async def member(self, member_id: int) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            f"SELECT {MEMBER_COLUMNS} FROM members m WHERE m.id = $1", member_id)
        return row

    async def member_by_card(self, card_number: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            f"SELECT {MEMBER_COLUMNS} FROM members m WHERE m.card_number = $1", card_number)
        return row

    async def current_membership(self, member_id: int) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(CURRENT_MEMBERSHIP, member_id)
        return row

    async def last_left(self, member_id: int) -> datetime | None:
        left: datetime | None = await self.conn.fetchval(LAST_LEFT, member_id)
        return left

    async def lock_pool(self, pool_id: int) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(LOCK_POOL, pool_id)
        return row

    async def pool_members(self, pool_id: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(POOL_MEMBERS, pool_id)
        return rows

    async def lock_pool_members(self, pool_id: int) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(LOCK_POOL_MEMBERS, pool_id)
        return rows

    async def insert_pool(self, account_id: int, head_id: int) -> asyncpg.Record:
        row: asyncpg.Record = await self.conn.fetchrow(INSERT_POOL, account_id, head_id)
        return row

    async def insert_membership(self, pool_id: int, member_id: int, role: str) -> int:
        membership_id: int = await self.conn.fetchval(INSERT_MEMBERSHIP, pool_id, member_id,
                                                      role)
        return membership_id

    async def end_memberships(self, paid: dict[int, int], at: datetime, reason: str) -> None:
        ids = sorted(paid)
        await self.conn.execute(END_MEMBERSHIPS, ids, at, reason, [paid[i] for i in ids])

    async def dissolve_pool(self, pool_id: int, at: datetime) -> None:
        await self.conn.execute(DISSOLVE_POOL, pool_id, at)
        await self.conn.execute(CANCEL_POOL_INVITATIONS, pool_id, at)

    # -- invitations ---------------------------------------------------------------------------

    async def pending_invitations(self, pool_id: int, now: datetime) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(PENDING_INVITATIONS, pool_id, now)
        return rows

    async def invitations_for(self, member_id: int, now: datetime) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(INVITATIONS_FOR, member_id, now)
        return rows

    async def insert_invitation(self, pool_id: int, member_id: int, invited_by: int,
                                expires_at: datetime, now: datetime) -> asyncpg.Record | None:
        await self.conn.execute(CANCEL_STALE, pool_id, member_id, now)
        row: asyncpg.Record | None = await self.conn.fetchrow(
            INSERT_INVITATION, pool_id, member_id, invited_by, expires_at)
        return row

    async def member_invitation(self, invitation_id: int) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            f"SELECT {INVITATION_COLUMNS} FROM family_invitations i WHERE id = $1",
            invitation_id)
        return row

    async def lock_invitation(self, invitation_id: int) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(LOCK_INVITATION, invitation_id)
        return row

    async def answer_invitation(self, invitation_id: int, status: str,
                                at: datetime) -> asyncpg.Record:
        row: asyncpg.Record = await self.conn.fetchrow(ANSWER_INVITATION, invitation_id,
                                                       status, at)
        return row
