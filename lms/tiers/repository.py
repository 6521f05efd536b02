"""SQL of tiers, policies and expiry: the rules tables, qualifying sums from the ledger's
postings, the member's standing, and the set-based statements of the nightly jobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from lms.audit.models import AuditRecord
from lms.tiers.policy import Change, Progress, TierRule, Window

EFFECTIVE_TIERS = text("""
SELECT code, name, rank, status_miles_threshold, segments_threshold,
       background_color, foreground_color, label_color
FROM tiers
WHERE effective_from <= :on AND (effective_to IS NULL OR effective_to > :on)
ORDER BY rank
""")

EFFECTIVE_POLICIES = text("""
SELECT DISTINCT ON (name) name, value FROM policy_settings
WHERE effective_from <= :at ORDER BY name, effective_from DESC
""")

# Status comes from what was earned, not from the balance: the sum of the account's postings
# in the qualifying units inside the window (a reversal is a negative posting and counts).
QUALIFYING_SUMS = text("""
SELECT COALESCE(sum(amount) FILTER (WHERE unit = 'STATUS_MILES'), 0)::bigint AS status_miles,
       COALESCE(sum(amount) FILTER (WHERE unit = 'SEGMENTS'), 0)::bigint AS segments
FROM postings
WHERE account_id = :account_id AND unit IN ('STATUS_MILES', 'SEGMENTS')
  AND created_at >= :start AND created_at < :end
""")

LOCK_MEMBER = text("""
SELECT id, account_id, tier, tier_valid_until FROM members WHERE id = :id FOR UPDATE
""")

GET_MEMBER = text("""
SELECT id, account_id, tier, tier_valid_until FROM members WHERE id = :id
""")

MEMBER_ACCOUNT_BOUNDS = text("SELECT min(account_id), max(account_id) FROM members")

# Candidates of one range of member accounts for the nightly job: members whose period has
# ended, and members whose current-window sums reach the tier above theirs (``next_*``
# thresholds per tier code; the top tier has none). Everyone else cannot change, and is not
# sent to the application at all. The range predicate keeps the postings scan on the
# (account_id, unit, id) index.
TIER_CANDIDATES = text("""
WITH m AS (
  SELECT id, account_id, tier, tier_valid_until FROM members
  WHERE account_id >= :lo AND account_id < :hi
),
cur AS (
  SELECT p.account_id,
         sum(p.amount) FILTER (WHERE p.unit = 'STATUS_MILES')::bigint AS sm,
         sum(p.amount) FILTER (WHERE p.unit = 'SEGMENTS')::bigint AS seg
  FROM postings p
  WHERE p.account_id >= :lo AND p.account_id < :hi
    AND p.unit IN ('STATUS_MILES', 'SEGMENTS')
    AND p.created_at >= :start AND p.created_at < :end
  GROUP BY p.account_id
),
ladder AS (
  SELECT * FROM unnest(CAST(:codes AS text[]), CAST(:next_sm AS bigint[]),
                       CAST(:next_seg AS bigint[])) AS l(code, next_sm, next_seg)
),
due AS (
  SELECT m.* FROM m WHERE m.tier_valid_until <= :now
),
rev AS (
  SELECT due.account_id,
         sum(p.amount) FILTER (WHERE p.unit = 'STATUS_MILES')::bigint AS sm,
         sum(p.amount) FILTER (WHERE p.unit = 'SEGMENTS')::bigint AS seg
  FROM due JOIN postings p ON p.account_id = due.account_id
  WHERE p.unit IN ('STATUS_MILES', 'SEGMENTS')
    AND p.created_at >= due.tier_valid_until - interval '12 months'
    AND p.created_at < due.tier_valid_until
  GROUP BY due.account_id
)
SELECT m.id, m.tier, m.tier_valid_until,
       COALESCE(cur.sm, 0) AS cur_sm, COALESCE(cur.seg, 0) AS cur_seg,
       COALESCE(rev.sm, 0) AS rev_sm, COALESCE(rev.seg, 0) AS rev_seg
FROM m
LEFT JOIN cur ON cur.account_id = m.account_id
LEFT JOIN rev ON rev.account_id = m.account_id
LEFT JOIN ladder ON ladder.code = m.tier
WHERE m.tier_valid_until <= :now
   OR ladder.code IS NULL
   OR COALESCE(cur.sm, 0) >= ladder.next_sm
   OR COALESCE(cur.seg, 0) >= ladder.next_seg
""")

# Applies decided changes only to members still as they were when decided (a concurrent
# reevaluate may have moved them on), with the history row and the domain event, in one
# statement.
APPLY_CHANGES = text("""
WITH c AS (
  SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:old_tier AS text[]),
                       CAST(:old_until AS timestamptz[]), CAST(:new_tier AS text[]),
                       CAST(:new_until AS timestamptz[]), CAST(:reason AS text[]))
    AS c(id, old_tier, old_until, new_tier, new_until, reason)
),
u AS (
  UPDATE members m SET tier = c.new_tier, tier_valid_until = c.new_until
  FROM c
  WHERE m.id = c.id AND m.tier = c.old_tier
    AND m.tier_valid_until IS NOT DISTINCT FROM c.old_until
  RETURNING m.id, c.old_tier, c.new_tier, c.new_until, c.reason
),
h AS (
  INSERT INTO tier_history (member_id, from_tier, to_tier, reason, valid_until)
  SELECT id, old_tier, new_tier, reason, new_until FROM u WHERE old_tier <> new_tier
)
INSERT INTO outbox_events (topic, payload)
SELECT 'tier.changed', jsonb_build_object('memberId', id, 'from', old_tier, 'to', new_tier,
                                          'reason', reason, 'validUntil', new_until)
FROM u WHERE old_tier <> new_tier
""")

# A granted (bought) tier: the member row, a history line even when only the validity moves
# (what was bought stays on record), and the event when the tier itself changes.
GRANT = text("""
WITH u AS (
  UPDATE members SET tier = :to_tier, tier_valid_until = :until WHERE id = :id
  RETURNING id
),
h AS (
  INSERT INTO tier_history (member_id, from_tier, to_tier, reason, valid_until)
  SELECT id, :from_tier, :to_tier, :reason, :until FROM u
)
INSERT INTO outbox_events (topic, payload)
SELECT 'tier.changed', jsonb_build_object('memberId', id, 'from', CAST(:from_tier AS text),
                                          'to', CAST(:to_tier AS text),
                                          'reason', CAST(:reason AS text),
                                          'validUntil', CAST(:until AS timestamptz))
FROM u WHERE CAST(:from_tier AS text) <> CAST(:to_tier AS text)
""")

HISTORY = text("""
SELECT from_tier, to_tier, reason, valid_until, at FROM tier_history
WHERE member_id = :member_id ORDER BY id DESC LIMIT :limit
""")


@dataclass(frozen=True, slots=True)
class Standing:
    member_id: int
    account_id: int
    tier: str
    valid_until: datetime | None


@dataclass(frozen=True, slots=True)
class Candidate:
    member_id: int
    tier: str
    valid_until: datetime | None
    current: Progress
    review: Progress


def tier_from_row(r: Any) -> TierRule:
    return TierRule(code=r.code, name=r.name, rank=r.rank,
                    status_miles=r.status_miles_threshold, segments=r.segments_threshold,
                    background_color=r.background_color, foreground_color=r.foreground_color,
                    label_color=r.label_color)


class TierRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def effective_tiers(self, on: date) -> list[TierRule]:
        rows = (await self.session.execute(EFFECTIVE_TIERS, {"on": on})).all()
        return [tier_from_row(r) for r in rows]

    async def effective_policies(self, at: datetime) -> dict[str, str]:
        rows = (await self.session.execute(EFFECTIVE_POLICIES, {"at": at})).all()
        return {r.name: r.value for r in rows}

    async def standing(self, member_id: int, *, lock: bool) -> Standing | None:
        row = (await self.session.execute(LOCK_MEMBER if lock else GET_MEMBER,
                                          {"id": member_id})).first()
        if row is None:
            return None
        return Standing(row.id, row.account_id, row.tier, row.tier_valid_until)

    async def qualifying(self, account_id: int, window: Window) -> Progress:
        row = (await self.session.execute(QUALIFYING_SUMS, {
            "account_id": account_id, "start": window.start, "end": window.end})).one()
        return Progress(row.status_miles, row.segments)

    async def member_account_bounds(self) -> tuple[int, int] | None:
        lo, hi = (await self.session.execute(MEMBER_ACCOUNT_BOUNDS)).one()
        return None if lo is None else (lo, hi)

    async def candidates(self, lo: int, hi: int, *, window: Window, now: datetime,
                         ladder: Sequence[tuple[str, int, int]]) -> list[Candidate]:
        rows = (await self.session.execute(TIER_CANDIDATES, {
            "lo": lo, "hi": hi, "start": window.start, "end": window.end, "now": now,
            "codes": [t[0] for t in ladder], "next_sm": [t[1] for t in ladder],
            "next_seg": [t[2] for t in ladder]})).all()
        return [Candidate(r.id, r.tier, r.tier_valid_until, Progress(r.cur_sm, r.cur_seg),
                          Progress(r.rev_sm, r.rev_seg)) for r in rows]

    async def apply(self, changes: Sequence[tuple[int, datetime | None, Change]]) -> None:
        if not changes:
            return
        await self.session.execute(APPLY_CHANGES, {
            "ids": [c[0] for c in changes], "old_tier": [c[2].from_code for c in changes],
            "old_until": [c[1] for c in changes], "new_tier": [c[2].to_code for c in changes],
            "new_until": [c[2].valid_until for c in changes],
            "reason": [str(c[2].reason) for c in changes]})

    async def grant(self, member_id: int, *, from_tier: str, to_tier: str,
                    until: datetime | None, reason: str) -> None:
        await self.session.execute(GRANT, {"id": member_id, "from_tier": from_tier,
                                           "to_tier": to_tier, "until": until,
                                           "reason": reason})

    async def history(self, member_id: int, limit: int = 20) -> list[Any]:
        return list((await self.session.execute(HISTORY, {"member_id": member_id,
                                                          "limit": limit})).all())


# One ``miles.expiring`` event per lot and expiry date, ``limit`` lots per statement; the
# notice row is the memory of what was announced, so a second run announces nothing.
NOTIFY_EXPIRING = text("""
WITH due AS (
  SELECT l.id, l.account_id, l.remaining, l.expires_at FROM lots l
  WHERE l.remaining > 0 AND l.expires_at > :now AND l.expires_at <= :horizon
    AND NOT EXISTS (SELECT 1 FROM lot_expiry_notices n
                    WHERE n.lot_id = l.id AND n.expires_at = l.expires_at)
  ORDER BY l.expires_at, l.id
  LIMIT :limit
),
noticed AS (
  INSERT INTO lot_expiry_notices (lot_id, expires_at, account_id, miles)
  SELECT id, expires_at, account_id, remaining FROM due
  ON CONFLICT DO NOTHING
  RETURNING lot_id, expires_at, account_id, miles
)
INSERT INTO outbox_events (topic, payload)
SELECT 'miles.expiring',
       jsonb_build_object('memberId', m.id, 'accountId', n.account_id, 'lotId', n.lot_id,
                          'miles', n.miles, 'expiresAt', n.expires_at)
FROM noticed n LEFT JOIN members m ON m.account_id = n.account_id
""")

# Activity policy: every open lot of an account that earned in the last N months lives until
# N months after its latest earning. Lots are the ledger's mutable projection of what is
# left of each credit; moving their dates writes nothing to the journal. Dates only move
# later, never earlier.
EXTEND_FOR_ACTIVITY = text("""
WITH active AS (
  SELECT lo.account_id, max(lo.created_at) AS last_at
  FROM lots lo JOIN journal_entries e ON e.id = lo.entry_id
  WHERE lo.account_id >= :lo AND lo.account_id < :hi AND lo.created_at >= :since
    AND e.kind = ANY(CAST(:kinds AS text[]))
  GROUP BY lo.account_id
)
UPDATE lots l SET expires_at = active.last_at + make_interval(months => :months)
FROM active
WHERE l.account_id = active.account_id AND l.remaining > 0
  AND l.expires_at < active.last_at + make_interval(months => :months)
""")

ACCOUNTS_WITH_DUE_LOTS = text("""
SELECT DISTINCT account_id FROM lots WHERE remaining > 0 AND expires_at <= :now
ORDER BY account_id
""")

LOT_ACCOUNT_BOUNDS = text("SELECT min(account_id), max(account_id) FROM lots")

# The ledger's lock order: (account, unit) ascending, so that a batch never deadlocks
# against postings or other batches.
LOCK_MILES_BALANCES = text("""
SELECT b.account_id, b.posted - b.held AS available, a.status
FROM balances b JOIN accounts a ON a.id = b.account_id
WHERE b.account_id = ANY(CAST(:ids AS bigint[])) AND b.unit = 'MILES'
ORDER BY b.account_id
FOR UPDATE OF b
""")

DUE_LOTS = text("""
SELECT account_id, sum(remaining)::bigint AS due FROM lots
WHERE account_id = ANY(CAST(:ids AS bigint[])) AND remaining > 0 AND expires_at <= :now
GROUP BY account_id
""")


class ExpiryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def notify_expiring(self, now: datetime, horizon: datetime, limit: int) -> int:
        result: Any = await self.session.execute(NOTIFY_EXPIRING, {
            "now": now, "horizon": horizon, "limit": limit})
        return int(result.rowcount)

    async def extend_for_activity(self, lo: int, hi: int, *, since: datetime, months: int,
                                  kinds: Sequence[str]) -> int:
        result: Any = await self.session.execute(EXTEND_FOR_ACTIVITY, {
            "lo": lo, "hi": hi, "since": since, "months": months, "kinds": list(kinds)})
        return int(result.rowcount)

    async def accounts_with_due_lots(self, now: datetime) -> list[int]:
        return list((await self.session.execute(ACCOUNTS_WITH_DUE_LOTS,
                                                {"now": now})).scalars())

    async def lot_account_bounds(self) -> tuple[int, int] | None:
        lo, hi = (await self.session.execute(LOT_ACCOUNT_BOUNDS)).one()
        return None if lo is None else (lo, hi)

    async def lock_miles_balances(self, account_ids: Sequence[int]) -> dict[int, Any]:
        rows = (await self.session.execute(LOCK_MILES_BALANCES,
                                           {"ids": list(account_ids)})).all()
        return {r.account_id: r for r in rows}

    async def due_lots(self, account_ids: Sequence[int], now: datetime) -> dict[int, int]:
        rows = (await self.session.execute(DUE_LOTS, {"ids": list(account_ids),
                                                      "now": now})).all()
        return {r.account_id: r.due for r in rows}


# -- versions of tiers and policies (the admin API) ----------------------------------------

TIER_VERSIONS = text("""
SELECT code, name, rank, status_miles_threshold, segments_threshold, background_color,
       foreground_color, label_color, effective_from, effective_to
FROM tiers ORDER BY code, effective_from
""")

# Serialises changes to the ladder: two admins adding versions at once would otherwise both
# check the ladder without seeing the other's version.
LOCK_TIERS = text("LOCK TABLE tiers IN SHARE ROW EXCLUSIVE MODE")

# The version in force for this code on that day ends there; a later version stays.
CLOSE_TIER_VERSION = text("""
UPDATE tiers SET effective_to = :on
WHERE code = :code AND effective_from < :on AND (effective_to IS NULL OR effective_to > :on)
RETURNING effective_to
""")

NEXT_TIER_VERSION = text("""
SELECT min(effective_from) FROM tiers WHERE code = :code AND effective_from > :on
""")

INSERT_TIER_VERSION = text("""
INSERT INTO tiers (code, name, rank, status_miles_threshold, segments_threshold,
                   background_color, foreground_color, label_color, effective_from,
                   effective_to)
VALUES (:code, :name, :rank, :status_miles_threshold, :segments_threshold, :background_color,
        :foreground_color, :label_color, :effective_from, :effective_to)
ON CONFLICT (code, effective_from) DO NOTHING
RETURNING id
""")

POLICY_VERSIONS = text("""
SELECT name, value, effective_from FROM policy_settings ORDER BY name, effective_from
""")

INSERT_POLICY = text("""
INSERT INTO policy_settings (name, value, effective_from) VALUES (:name, :value, :at)
ON CONFLICT DO NOTHING RETURNING name
""")

class RulesRepository:
    """The tiers and policy_settings tables as versioned rules."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def tier_versions(self) -> list[Any]:
        return list((await self.session.execute(TIER_VERSIONS)).mappings())

    async def lock_tiers(self) -> None:
        await self.session.execute(LOCK_TIERS)

    async def add_tier_version(self, values: dict[str, Any]) -> bool:
        """Insert a version that runs until the code's next version, if any, and end the
        one in force on its first day; False if that (code, day) exists."""
        on, code = values["effective_from"], values["code"]
        following = (await self.session.execute(
            NEXT_TIER_VERSION, {"code": code, "on": on})).scalar()
        inserted = (await self.session.execute(
            INSERT_TIER_VERSION, values | {"effective_to": following})).first()
        if inserted is None:
            return False
        await self.session.execute(CLOSE_TIER_VERSION, {"code": code, "on": on})
        return True

    async def policy_versions(self) -> list[Any]:
        return list((await self.session.execute(POLICY_VERSIONS)).mappings())

    async def add_policy(self, name: str, value: str, at: datetime) -> bool:
        return (await self.session.execute(
            INSERT_POLICY, {"name": name, "value": value, "at": at})).first() is not None

    async def audit(self, actor: tuple[str, str, str], action: str, target_type: str,
                    target_id: str, after: dict[str, Any]) -> None:
        await self.session.execute(insert(AuditRecord).values(
            actor_type=actor[0], actor_id=actor[1], actor_role=actor[2], action=action,
            target_type=target_type, target_id=target_id, after=after))
