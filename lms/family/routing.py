"""Where a member's redeemable miles go: the one rule every credit path asks.

While a member belongs to a family pool, their MILES credits (flights, partner purchases)
are posted to the pool's account and counted as their contribution, in the same transaction;
STATUS_MILES and SEGMENTS always stay on the member's own account. Gifts received and
purchased miles are not routed: they stay personal (docs/family-pools.md says why).

``redeemable_accounts_for`` locks the memberships it returns (``FOR NO KEY UPDATE``, member
id order) until the caller commits, so a member cannot leave, be removed or see the pool
dissolved between the routing and the posting: a credit lands either in the pool while the
membership lasts, or on the member's account after it ended, never in a pool they left.
Callers take these locks before the ledger's balance rows. A partner accrual applies the
same rule and lock in SQL (partner_accrue(), migration 0023).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lms.family.repository import FamilyRepository


@dataclass(frozen=True, slots=True)
class PoolRoute:
    membership_id: int
    pool_id: int
    account_id: int  # the pool's ledger account


async def redeemable_accounts_for(conn: Any, member_ids: Sequence[int]
                                  ) -> dict[int, PoolRoute]:
    """The pool route of each of these members that is in a pool (others are absent: their
    miles go to their own account). ``conn`` is the unit of work's asyncpg connection."""
    if not member_ids:
        return {}
    rows = await FamilyRepository(conn).lock_current_routes(member_ids)
    return {r["member_id"]: PoolRoute(r["id"], r["pool_id"], r["account_id"]) for r in rows}


async def redeemable_account_for(conn: Any, member_id: int, own_account_id: int
                                 ) -> tuple[int, PoolRoute | None]:
    """The account to credit with one member's redeemable miles, and the route if pooled."""
    route = (await redeemable_accounts_for(conn, [member_id])).get(member_id)
    return (route.account_id if route else own_account_id), route


async def record_contributions(conn: Any, miles_by_membership: dict[int, int]) -> None:
    """Add MILES routed to pools to their members' contributions (same unit of work)."""
    await FamilyRepository(conn).add_contributions(miles_by_membership)
