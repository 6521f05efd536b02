"""SQL of partners, earn rates, API keys, rate-limit windows and partner accruals."""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import asyncpg
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from lms.audit.models import AuditRecord
from lms.db import RawConnection, raw_connection
from lms.partners.models import (
    ApiKey,
    Partner,
    PartnerAccrual,
    PartnerAccrualReversal,
    PartnerEarnRate,
)

# The key by its public prefix and, when the request may pass (the whole key matches, key
# and partner are live, the address is allowed: ApiKeyService's rules), the request counted
# in the key's window, in one statement: a partner request pays one round trip before its
# work, and the key's counter row is locked for one statement (``count`` is NULL when the
# request was not counted). $2 is the SHA-256 of the whole key, $5 the caller's address or
# NULL. The table is UNLOGGED (migration 0020), so this commit waits for no WAL flush. The
# window only moves forward (COUNT_REQUEST says why).
#
# $6 is the most request numbers the caller may reserve at once (lms.partners.key_gate): the
# statement counts ``reserve`` requests, a thousandth of the key's limit within 1..$6, and
# ``count`` is the last of the numbers reserved; ``counted_window`` is the window they are in.
CHECK_KEY = """
    WITH k AS (
        SELECT k.id, k.partner_id, k.key_hash, k.scopes, k.status, k.ip_allow_list,
               k.rate_limit_per_minute, k.expires_at, k.revoked_at,
               p.status AS partner_status,
               LEAST($6::int, GREATEST(1, k.rate_limit_per_minute / 1000)) AS reserve
          FROM api_keys k JOIN partners p ON p.id = k.partner_id
         WHERE k.prefix = $1),
    counted AS (
        INSERT INTO api_key_windows AS w (key_id, window_start, count)
        SELECT k.id, $3, k.reserve FROM k
         WHERE k.key_hash = $2 AND k.status = 'active' AND k.revoked_at IS NULL
           AND (k.expires_at IS NULL OR k.expires_at > $4) AND k.partner_status = 'active'
           AND (COALESCE(cardinality(k.ip_allow_list), 0) = 0
                OR EXISTS (SELECT FROM unnest(k.ip_allow_list) AS n
                            WHERE $5::inet <<= n::cidr))
        ON CONFLICT (key_id) DO UPDATE
           SET count = CASE WHEN excluded.window_start > w.window_start THEN excluded.count
                            ELSE w.count + excluded.count END,
               window_start = GREATEST(w.window_start, excluded.window_start)
        RETURNING count, window_start)
    SELECT k.*, c.count, c.window_start AS counted_window
      FROM k LEFT JOIN counted c ON true"""

# One row per key: a new window resets the count, so the table never grows. A window only
# moves forward: a request that read the clock just before the minute turned, but is counted
# after one from the new minute, counts in the new window. Letting it set the window back
# reset the count at each such crossing, and concurrent calls at the edge of a minute then
# passed far beyond the limit (18 of 20 with a limit of 5).
COUNT_REQUEST = """
    INSERT INTO api_key_windows AS w (key_id, window_start, count) VALUES ($1, $2, 1)
    ON CONFLICT (key_id) DO UPDATE
       SET count = CASE WHEN excluded.window_start > w.window_start THEN 1
                        ELSE w.count + 1 END,
           window_start = GREATEST(w.window_start, excluded.window_start)
    RETURNING count"""

# A partner's clearing accounts (lms.partners.clearing), shard 0 first; served by
# uq_accounts_code_shard.
CLEARING_SHARDS = """
    SELECT id FROM accounts WHERE kind = 'system' AND code = 'partner:' || $1::bigint
     ORDER BY shard"""

# A partner accrual's whole unit of work is one call of partner_accrue() (migration 0023),
# sent with the other accruals that arrive meanwhile as one call of partner_accrue_batch()
# (0026, lms.group_commit): the key's claim, the facts, the entry, the accrual's row and the
# stored answer.
ACCRUE_FUNCTION = "partner_accrue"


class KeyRepository:
    """The SQL of checking a partner's API key on every partner request, on a bare
    connection (``Database.autocommit``): the lookup with the rate-limit count."""

    def __init__(self, conn: RawConnection) -> None:
        self.conn = conn

    async def check(self, prefix: str, key_hash: str, window_start: datetime,
                    now: datetime, address: IPv4Address | IPv6Address | None,
                    reserve_at_most: int = 1) -> asyncpg.Record | None:
        """The key's row with ``count``: the last of the ``reserve`` request numbers taken
        in ``counted_window``, or None when it was not counted (see CHECK_KEY)."""
        row: asyncpg.Record | None = await self.conn.fetchrow(
            CHECK_KEY, prefix, key_hash, window_start, now, address, reserve_at_most)
        return row

    async def count_request(self, key_id: int, window_start: datetime) -> int:
        """Count one request in the key's current window, in one statement."""
        count: int = await self.conn.fetchval(COUNT_REQUEST, key_id, window_start)
        return count


class PartnerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- partners ---------------------------------------------------------------------------

    async def add_partner(self, **values: Any) -> Partner | None:
        """The new partner, or None when the code is taken (also by a concurrent insert)."""
        row = (await self.session.execute(
            pg_insert(Partner).values(**values)
            .on_conflict_do_nothing(index_elements=[Partner.code])
            .returning(Partner))).scalar_one_or_none()
        return row

    async def set_clearing_account(self, partner_id: int, account_id: int) -> Partner:
        return (await self.session.execute(
            update(Partner).where(Partner.id == partner_id)
            .values(clearing_account_id=account_id).returning(Partner))).scalar_one()

    async def clearing_shards(self, partner_id: int) -> list[int]:
        conn = await raw_connection(self.session)
        return [r["id"] for r in await conn.fetch(CLEARING_SHARDS, partner_id)]

    async def set_webhook_url(self, partner_id: int, url: str | None) -> Partner:
        return (await self.session.execute(
            update(Partner).where(Partner.id == partner_id)
            .values(webhook_url=url).returning(Partner))).scalar_one()

    async def by_code(self, code: str, *, lock: bool = False) -> Partner | None:
        query = select(Partner).where(Partner.code == code)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def by_id(self, partner_id: int) -> Partner | None:
        return await self.session.get(Partner, partner_id)

    async def all(self) -> list[Partner]:
        return list((await self.session.execute(
            select(Partner).order_by(Partner.id))).scalars())

    # -- earn rates -------------------------------------------------------------------------

    async def earn_rates(self, partner_id: int, category: str | None = None
                         ) -> list[PartnerEarnRate]:
        query = select(PartnerEarnRate).where(PartnerEarnRate.partner_id == partner_id)
        if category is not None:
            query = query.where(PartnerEarnRate.category == category)
        return list((await self.session.execute(query.order_by(
            PartnerEarnRate.category, PartnerEarnRate.effective_from))).scalars())

    async def add_earn_rate(self, **values: Any) -> PartnerEarnRate:
        return (await self.session.execute(
            insert(PartnerEarnRate).values(**values).returning(PartnerEarnRate))).scalar_one()

    async def end_earn_rate(self, rate_id: int, effective_to: datetime) -> None:
        await self.session.execute(update(PartnerEarnRate).where(
            PartnerEarnRate.id == rate_id).values(effective_to=effective_to))

    async def rate_at(self, partner_id: int, category: str, at: datetime
                      ) -> PartnerEarnRate | None:
        return (await self.session.execute(select(PartnerEarnRate).where(
            PartnerEarnRate.partner_id == partner_id, PartnerEarnRate.category == category,
            PartnerEarnRate.effective_from <= at,
            or_(PartnerEarnRate.effective_to.is_(None), PartnerEarnRate.effective_to > at))
            .order_by(PartnerEarnRate.effective_from.desc()).limit(1))).scalar_one_or_none()

    # -- API keys ---------------------------------------------------------------------------

    async def add_key(self, **values: Any) -> ApiKey:
        return (await self.session.execute(
            insert(ApiKey).values(**values).returning(ApiKey))).scalar_one()

    async def keys_of(self, partner_id: int) -> list[ApiKey]:
        return list((await self.session.execute(select(ApiKey).where(
            ApiKey.partner_id == partner_id).order_by(ApiKey.id))).scalars())

    async def live_keys_of(self, partner_id: int, now: datetime) -> list[ApiKey]:
        return list((await self.session.execute(select(ApiKey).where(
            ApiKey.partner_id == partner_id, ApiKey.status == "active",
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))
            .order_by(ApiKey.id))).scalars())

    async def expire_keys(self, key_ids: list[int], until: datetime) -> None:
        """Cut the keys' lives short at ``until`` (never lengthen them)."""
        await self.session.execute(update(ApiKey).where(ApiKey.id.in_(key_ids)).values(
            expires_at=func.least(func.coalesce(ApiKey.expires_at, until), until)))

    async def revoke_key(self, prefix: str, now: datetime) -> ApiKey | None:
        return (await self.session.execute(
            update(ApiKey).where(ApiKey.prefix == prefix)
            .values(status="revoked", revoked_at=func.coalesce(ApiKey.revoked_at, now))
            .returning(ApiKey))).scalar_one_or_none()

    async def audit(self, *, actor_type: str, actor_id: str | None, actor_role: str | None,
                    action: str, target_type: str, target_id: str,
                    after: dict[str, Any]) -> None:
        await self.session.execute(insert(AuditRecord).values(
            actor_type=actor_type, actor_id=actor_id, actor_role=actor_role, action=action,
            target_type=target_type, target_id=target_id, after=after))

    # -- accruals ---------------------------------------------------------------------------

    async def add_accrual(self, **values: Any) -> int | None:
        """The new accrual's id, or None when the partner already sent this transaction id
        (a concurrent duplicate waits for the first one's commit, then gets None)."""
        accrual_id: int | None = (await self.session.execute(
            pg_insert(PartnerAccrual).values(**values)
            .on_conflict_do_nothing(constraint="uq_partner_accruals_partner_txn")
            .returning(PartnerAccrual.id))).scalar_one_or_none()
        return accrual_id

    async def set_accrual_entry(self, accrual_id: int, entry_id: int) -> None:
        await self.session.execute(update(PartnerAccrual).where(
            PartnerAccrual.id == accrual_id).values(entry_id=entry_id))

    async def accrual(self, partner_id: int, partner_txn_id: str, *, lock: bool = False
                      ) -> PartnerAccrual | None:
        query = select(PartnerAccrual).where(and_(
            PartnerAccrual.partner_id == partner_id,
            PartnerAccrual.partner_txn_id == partner_txn_id))
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def add_reversal(self, *, accrual_id: int, entry_id: int | None, amount_minor: int,
                           miles: int, reason: str) -> None:
        await self.session.execute(insert(PartnerAccrualReversal).values(
            accrual_id=accrual_id, entry_id=entry_id, amount_minor=amount_minor,
            miles=miles, reason=reason))
        await self.session.execute(update(PartnerAccrual).where(
            PartnerAccrual.id == accrual_id).values(
            reversed_amount_minor=PartnerAccrual.reversed_amount_minor + amount_minor,
            reversed_miles=PartnerAccrual.reversed_miles + miles))
