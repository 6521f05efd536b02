"""All SQL of accrual, spoken to asyncpg directly inside the caller's transaction.

A batch of coupons is a handful of statements whatever its size: members, coupon claims,
registrations and first flights are read with array parameters, and the credits themselves
are one set-based call into the ledger (``Ledger.post_credits``), so that each coupon is still
its own journal entry with its own external reference and postings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import asyncpg

from lms.ledger.repository import packed

MEMBERS_BY_CARD = """
SELECT id, account_id, card_number, status, tier, last_activity_at FROM members
WHERE card_number = ANY($1::text[])
"""

# Claims the coupons in key order, so that two batches sharing coupons never wait on each
# other in a cycle; a coupon another transaction holds is waited for, then skipped if it
# committed. What comes back is ours to credit; the rest are duplicates. The columns come
# packed (lms.ledger.repository.packed: one text each, not an array parameter of a thousand).
CLAIM_COUPONS = """
INSERT INTO flown_coupons (ticket_number, coupon_number, member_id, flight_date, carrier,
                           flight_number, origin, destination, booking_class)
SELECT * FROM unnest(string_to_array($1, E'\\x1f'), string_to_array($2, E'\\x1f')::smallint[],
                     string_to_array($3, E'\\x1f')::bigint[],
                     string_to_array($4, E'\\x1f')::date[], string_to_array($5, E'\\x1f'),
                     string_to_array($6, E'\\x1f'), string_to_array($7, E'\\x1f'),
                     string_to_array($8, E'\\x1f'), string_to_array($9, E'\\x1f'))
ORDER BY 1, 2
ON CONFLICT DO NOTHING
RETURNING ticket_number, coupon_number
"""

# The same, the claimed keys answered as two arrays in one row (a record each cost the
# client a microsecond a coupon).
CLAIM_COUPONS_ARRAYS = f"""
WITH claimed AS ({CLAIM_COUPONS})
SELECT array_agg(ticket_number) AS tickets, array_agg(coupon_number) AS coupons FROM claimed
"""

# Claims a batch took and then refused (closed member, earn rules): gone with the transaction.
RELEASE_COUPONS = """
DELETE FROM flown_coupons f
USING unnest(string_to_array($1, E'\\x1f'), string_to_array($2, E'\\x1f')::smallint[])
        AS k(ticket_number, coupon_number)
WHERE f.ticket_number = k.ticket_number AND f.coupon_number = k.coupon_number
"""

# Coupons credited before: answered duplicate whatever the rules or the member say today.
CREDITED_COUPONS = """
SELECT f.ticket_number, f.coupon_number FROM flown_coupons f
JOIN unnest(string_to_array($1, E'\\x1f'), string_to_array($2, E'\\x1f')::smallint[])
       AS k(ticket_number, coupon_number)
  ON f.ticket_number = k.ticket_number AND f.coupon_number = k.coupon_number
"""

# A member has flown before when a coupon of theirs was credited (the index on
# flown_coupons (member_id, flight_date) answers this without reading the journal).
MEMBERS_WHO_FLEW = """
SELECT m.id FROM unnest($1::bigint[]) AS m(id)
WHERE EXISTS (SELECT 1 FROM flown_coupons f WHERE f.member_id = m.id)
"""

REGISTRATIONS = """
SELECT promotion_code, member_id FROM promotion_registrations WHERE member_id = ANY($1::bigint[])
"""

ALL_RULES = """
SELECT kind, key, effective_from, body FROM earn_rules ORDER BY kind, key, effective_from
"""

RULES_PAGE = """
SELECT id, kind, key, effective_from, body, created_by, created_at FROM earn_rules
WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR key = $2)
ORDER BY kind, key, effective_from
"""

INSERT_RULE = """
INSERT INTO earn_rules (kind, key, effective_from, body, created_by) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT ON CONSTRAINT uq_earn_rules_version DO NOTHING
RETURNING id, kind, key, effective_from, body, created_by, created_at
"""

PROMOTION_COLUMNS = """code, name, bonus_percent, fixed_miles, carriers, origins, destinations,
countries, booking_classes, tiers, travel_from, travel_to, booked_from, booked_to,
first_flight_only, requires_registration, member_cap, budget, used, created_at"""

ALL_PROMOTIONS = f"SELECT {PROMOTION_COLUMNS} FROM promotions ORDER BY code"

# Promotions whose travel window is still open for some coupon of the batch, and whose
# budget is not spent: ``used`` only ever grows (a reversal does not give it back), so a spent
# budget stays spent, and its promotion would award nothing: left out, no batch locks it.
ACTIVE_PROMOTIONS = f"""
SELECT {PROMOTION_COLUMNS} FROM promotions
WHERE (travel_to IS NULL OR travel_to >= $1) AND (travel_from IS NULL OR travel_from <= $2)
  AND (budget IS NULL OR used < budget)
ORDER BY code
"""

GET_PROMOTION = f"SELECT {PROMOTION_COLUMNS} FROM promotions WHERE code = $1"

INSERT_PROMOTION = f"""
INSERT INTO promotions (code, name, bonus_percent, fixed_miles, carriers, origins, destinations,
  countries, booking_classes, tiers, travel_from, travel_to, booked_from, booked_to,
  first_flight_only, requires_registration, member_cap, budget)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (code) DO NOTHING
RETURNING {PROMOTION_COLUMNS}
"""

# Limited promotions are locked in code order, after the batch's balance rows, by every batch
# (nothing else locks them): the same order everywhere, so batches queue, never cycle.
LOCK_PROMOTIONS = """
SELECT code, used, budget, member_cap FROM promotions WHERE code = ANY($1::text[])
ORDER BY code FOR UPDATE
"""

# The same, read without a lock (an optimistic batch; see FlightCredits._grant_promotions).
PROMOTION_LIMITS = """
SELECT code, used, budget, member_cap FROM promotions WHERE code = ANY($1::text[])
"""

ENSURE_AWARDS = """
INSERT INTO promotion_awards (promotion_code, member_id)
SELECT * FROM unnest($1::text[], $2::bigint[]) ORDER BY 1, 2
ON CONFLICT DO NOTHING
"""

LOCK_AWARDS = """
SELECT w.promotion_code, w.member_id, w.awarded
FROM promotion_awards w
JOIN unnest($1::text[], $2::bigint[]) AS k(code, member_id)
  ON w.promotion_code = k.code AND w.member_id = k.member_id
ORDER BY w.promotion_code, w.member_id
FOR UPDATE OF w
"""

ADD_USAGE = """
UPDATE promotions p SET used = p.used + d.amount
FROM unnest($1::text[], $2::bigint[]) AS d(code, amount) WHERE p.code = d.code
"""

ADD_AWARDS = """
UPDATE promotion_awards w SET awarded = w.awarded + d.amount
FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS d(code, member_id, amount)
WHERE w.promotion_code = d.code AND w.member_id = d.member_id
"""

REGISTER = """
INSERT INTO promotion_registrations (promotion_code, member_id) VALUES ($1, $2)
ON CONFLICT DO NOTHING
RETURNING registered_at
"""

REGISTERED_AT = """
SELECT registered_at FROM promotion_registrations WHERE promotion_code = $1 AND member_id = $2
"""

AUDIT = """
INSERT INTO audit_log (actor_type, actor_id, actor_role, action, target_type, target_id, after)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
"""

# Locks every balance row the batch posts to, in (account, unit) order like ledger_post():
# the batch's one issuance and one qualification shard (lower ids than any member) first,
# then the members ascending, so concurrent batches and single postings queue, never cycle.
# Locked in id order, like everything else, and only moved forward.
TOUCH_MEMBERS = """
UPDATE members m SET last_activity_at = d.at
FROM (SELECT u.id, max(u.at) AS at FROM unnest($1::bigint[], $2::timestamptz[]) AS u(id, at)
      GROUP BY u.id) AS d
WHERE m.id = d.id AND (m.last_activity_at IS NULL OR m.last_activity_at < d.at)
  AND m.id IN (SELECT id FROM members WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE)
"""


class AccrualRepository:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    # -- rules and promotions ----------------------------------------------------------

    async def all_rules(self) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(ALL_RULES)
        return rows

    async def rules(self, kind: str | None, key: str | None) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(RULES_PAGE, kind, key)
        return rows

    async def insert_rule(self, kind: str, key: str, effective_from: date,
                          body: dict[str, Any], created_by: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(
            INSERT_RULE, kind, key, effective_from, json.dumps(body), created_by)
        return row

    async def promotions(self) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(ALL_PROMOTIONS)
        return rows

    async def active_promotions(self, first: date, last: date) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(ACTIVE_PROMOTIONS, first, last)
        return rows

    async def promotion(self, code: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(GET_PROMOTION, code)
        return row

    async def insert_promotion(self, values: Sequence[Any]) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.conn.fetchrow(INSERT_PROMOTION, *values)
        return row

    async def register(self, code: str, member_id: int) -> tuple[datetime, bool]:
        """(registered_at, created now?)"""
        at = await self.conn.fetchval(REGISTER, code, member_id)
        if at is not None:
            return at, True
        return await self.conn.fetchval(REGISTERED_AT, code, member_id), False

    async def audit(self, actor: tuple[str, str, str], action: str, target_type: str,
                    target_id: str, after: dict[str, Any]) -> None:
        await self.conn.execute(AUDIT, *actor, action, target_type, target_id,
                                json.dumps(after, default=str))

    # -- a batch of coupons ------------------------------------------------------------

    async def members_by_card(self, cards: Sequence[str]) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(MEMBERS_BY_CARD, list(cards))
        return rows

    async def credited_coupons(self, keys: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        # Checked by coupon_problem() before they get here: letters and digits only.
        rows = await self.conn.fetch(CREDITED_COUPONS, packed([k[0] for k in keys]),
                                     packed([k[1] for k in keys]))
        return {(r["ticket_number"], r["coupon_number"]) for r in rows}

    async def claim_coupons(self, rows: Sequence[tuple[Any, ...]]) -> set[tuple[str, int]]:
        """Claim (ticket, coupon, member_id, flight_date, carrier, flight_number, origin,
        destination, booking_class) rows; returns the (ticket, coupon) claimed now."""
        if not rows:
            return set()
        columns = [packed(c) for c in zip(*rows, strict=True)]
        result = await self.conn.fetchrow(CLAIM_COUPONS_ARRAYS, *columns)
        if result is None or result["tickets"] is None:
            return set()
        return set(zip(result["tickets"], result["coupons"], strict=True))

    async def release_coupons(self, keys: Sequence[tuple[str, int]]) -> None:
        """Give back claims this transaction took (``claim_coupons``)."""
        await self.conn.execute(RELEASE_COUPONS, packed([k[0] for k in keys]),
                                packed([k[1] for k in keys]))

    async def members_who_flew(self, member_ids: Sequence[int]) -> set[int]:
        rows = await self.conn.fetch(MEMBERS_WHO_FLEW, list(member_ids))
        return {r["id"] for r in rows}

    async def registrations(self, member_ids: Sequence[int]) -> set[tuple[str, int]]:
        rows = await self.conn.fetch(REGISTRATIONS, list(member_ids))
        return {(r["promotion_code"], r["member_id"]) for r in rows}

    async def lock_promotions(self, codes: Sequence[str]) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(LOCK_PROMOTIONS, sorted(codes))
        return rows

    async def promotion_limits(self, codes: Sequence[str]) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(PROMOTION_LIMITS, list(codes))
        return rows

    async def lock_awards(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        codes, members = [k[0] for k in keys], [k[1] for k in keys]
        await self.conn.execute(ENSURE_AWARDS, codes, members)
        rows = await self.conn.fetch(LOCK_AWARDS, codes, members)
        return {(r["promotion_code"], r["member_id"]): r["awarded"] for r in rows}

    async def add_usage(self, usage: dict[str, int]) -> None:
        if usage:
            await self.conn.execute(ADD_USAGE, list(usage), list(usage.values()))

    async def add_awards(self, awards: dict[tuple[str, int], int]) -> None:
        if awards:
            await self.conn.execute(ADD_AWARDS, [k[0] for k in awards],
                                    [k[1] for k in awards], list(awards.values()))

    async def touch_members(self, activity: dict[int, datetime]) -> None:
        if activity:
            ids = sorted(activity)
            await self.conn.execute(TOUCH_MEMBERS, ids, [activity[i] for i in ids])
