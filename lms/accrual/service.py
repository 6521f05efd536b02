"""Accrual operations: crediting flown coupons, and the programme's rules and promotions.

``credit_coupons`` is the one path of every flown coupon, whether it comes from the HTTP feed
or from ``lms import flights``: up to 1,000 coupons in one unit of work, each answered
credited, duplicate or rejected. The batch reads what it needs in bulk (members, earlier
credits, registrations) and writes one journal entry per coupon, with external reference
``<ticket>/<coupon>`` under source ``flight``, so a coupon is credited once, ever.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from lms.accrual.earning import (
    RULE_TYPES,
    Coupon,
    Earning,
    MemberFacts,
    Promotion,
    Reason,
    Rejection,
    RuleBook,
    RuleKind,
    apply_limits,
    coupon_problem,
    earn,
    rulebook,
)
from lms.accrual.errors import (
    InvalidPromotion,
    InvalidRule,
    PromotionExists,
    PromotionNotFound,
    RegistrationNotOpen,
    RuleVersionExists,
)
from lms.accrual.repository import AccrualRepository
from lms.accrual.schemas import EarnRuleIn, EarnRuleOut, PromotionIn, PromotionOut
from lms.claims.service import ClaimService
from lms.db import Database, RawConnection, raw_connection
from lms.family.routing import PoolRoute, record_contributions, redeemable_accounts_for
from lms.ledger.errors import DuplicateExternalReference
from lms.ledger.repository import LedgerRepository
from lms.ledger.service import Ledger, SystemAccounts, add_months
from lms.ledger.types import Actor, SystemAccount
from lms.tiers.service import TierService

SOURCE = "flight"
FEED_ACTOR = Actor("system", "flights")
# A twin of one of our coupons committed by a concurrent batch between our duplicate check
# and our insert makes ledger_post() refuse the whole statement; the rerun sees the twin.
DUPLICATE_RERUNS = 3
# Feeds run in UTC; a coupon dated tomorrow can be a flight that already left in Asia.
FUTURE_TOLERANCE = timedelta(days=1)


class BudgetsContended(Exception):
    """Concurrent batches spent a promotion's budget between this batch's unlocked read and
    its settling under the lock: the batch rolls back and is decided again under the lock."""


@dataclass(slots=True)
class Outcome:
    coupon: Coupon
    status: str = "rejected"  # credited | duplicate | rejected
    miles: int = 0
    status_miles: int = 0
    segments: int = 0
    reason: Reason | None = None
    detail: str | None = None
    entry_id: int | None = None
    promotions: dict[str, int] = field(default_factory=dict)
    member_id: int | None = None
    account_id: int | None = None


@dataclass(frozen=True, slots=True)
class BatchMember:
    id: int
    account_id: int
    status: str
    tier: str
    # As read before the batch's locks: it only ever moves forward, so a flight before it
    # cannot move it, whatever a concurrent batch does meanwhile.
    last_activity_at: datetime | None = None


@lru_cache(maxsize=4096)
def credit_times(flight_date: date, lot_validity_months: int
                 ) -> tuple[datetime, str, str, str]:
    """When a flight's credit takes effect (the flight date, UTC) and when its lot expires,
    the two as the statement's text too, and the date as the description shows it: a feed
    holds few distinct flight dates, each formatted once."""
    effective = datetime.combine(flight_date, time(), UTC)
    return (effective, effective.isoformat(),
            add_months(effective, lot_validity_months).isoformat(), flight_date.isoformat())


DETAILS = msgspec.json.Encoder()  # a coupon's entry details: a quarter of json.dumps' time
# Rule books by their rows (see FlightCredits.rules); a handful of distinct ones at most.
_RULEBOOKS: dict[Any, RuleBook] = {}
RULEBOOKS_KEPT = 16


@lru_cache(maxsize=256)
def json_string(text: str) -> str:
    """A string as a JSON value (a cabin's name: a handful of distinct ones)."""
    return DETAILS.encode(text).decode()


def json_text(raw: Any) -> str:
    """A jsonb column's value as canonical text (see ``json_value``)."""
    return raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True)


def json_value(raw: Any) -> Any:
    """A jsonb column's value: asyncpg hands over text, the connection of a SQLAlchemy
    session (which installs its own codec) the decoded value."""
    return json.loads(raw) if isinstance(raw, str) else raw


def rejected(coupon: Coupon, reason: Reason, detail: str = "") -> Outcome:
    return Outcome(coupon, "rejected", reason=reason, detail=detail or None)


def promotion_from_row(r: Any) -> Promotion:
    return Promotion(
        code=r["code"], bonus_percent=r["bonus_percent"], fixed_miles=r["fixed_miles"],
        carriers=frozenset(r["carriers"]), origins=frozenset(r["origins"]),
        destinations=frozenset(r["destinations"]), countries=frozenset(r["countries"]),
        booking_classes=frozenset(r["booking_classes"]), tiers=frozenset(r["tiers"]),
        travel_from=r["travel_from"], travel_to=r["travel_to"],
        booked_from=r["booked_from"], booked_to=r["booked_to"],
        first_flight_only=r["first_flight_only"],
        requires_registration=r["requires_registration"], member_cap=r["member_cap"],
        budget=r["budget"])


class FlightCredits:
    """Credits one batch of coupons inside the caller's transaction (an asyncpg connection)."""

    def __init__(self, conn: RawConnection, system: SystemAccounts, *,
                 lot_validity_months: int = 36, actor: Actor = FEED_ACTOR,
                 lane: int | None = None, optimistic_budgets: bool = False) -> None:
        self.conn = conn
        self.repo = AccrualRepository(conn)
        self.ledger = Ledger(conn, system)
        self.system = system
        self.lot_validity_months = lot_validity_months
        self.actor = actor
        # Concurrent batches of an import each keep to their own system shards (a random
        # pick would now and then make two of them queue on one row).
        self.lane = lane
        # Budgets decided from an unlocked read and spent under the lock at the very end
        # (``_grant_promotions``), rather than locked before the posting: every batch that
        # earns a budgeted promotion needs its row, and held across the posting that lock
        # made concurrent batches run one at a time.
        self.optimistic_budgets = optimistic_budgets
        self._unsettled: dict[str, int] = {}

    async def rules(self, first: date, last: date) -> RuleBook:
        """The rules as this transaction reads them. Read for every batch (a new version
        applies from the next batch on), built once per distinct content: a book of the same
        rows is the same book, and keeps what its lookups learnt over the batches."""
        rows = await self.repo.all_rules()
        promotions = tuple(promotion_from_row(r)
                           for r in await self.repo.active_promotions(first, last))
        key = (tuple((r["kind"], r["key"], r["effective_from"], json_text(r["body"]))
                     for r in rows), promotions)
        book = _RULEBOOKS.get(key)
        if book is None:
            if len(_RULEBOOKS) >= RULEBOOKS_KEPT:
                _RULEBOOKS.clear()
            book = _RULEBOOKS[key] = rulebook(
                ((r["kind"], r["key"], r["effective_from"], json_value(r["body"]))
                 for r in rows), promotions)
        return book

    async def credit(self, coupons: Sequence[Coupon], *, today: date | None = None
                     ) -> list[Outcome]:
        today = today or datetime.now(UTC).date()
        outcomes: list[Outcome | None] = [None] * len(coupons)
        todo: list[int] = []
        seen: set[str] = set()
        for i, c in enumerate(coupons):
            problem = coupon_problem(c)
            if problem:
                outcomes[i] = rejected(c, Reason.INVALID_COUPON, problem)
            elif c.flight_date > today + FUTURE_TOLERANCE:
                outcomes[i] = rejected(c, Reason.FLIGHT_IN_FUTURE, c.flight_date.isoformat())
            elif c.external_ref in seen:
                outcomes[i] = Outcome(c, "duplicate", detail="repeated in this batch")
            else:
                seen.add(c.external_ref)
                todo.append(i)
        if todo:
            await self._credit(coupons, todo, outcomes)
            if self._unsettled:
                await self._settle_budgets()
        return [o for o in outcomes if o is not None]

    async def _credit(self, coupons: Sequence[Coupon], todo: list[int],
                      outcomes: list[Outcome | None]) -> None:
        if not self.system.loaded():
            await self.system.load(LedgerRepository(self.conn))
        members = {r["card_number"]: BatchMember(r["id"], r["account_id"], r["status"],
                                                 r["tier"], r["last_activity_at"])
                   for r in await self.repo.members_by_card(
                       list({coupons[i].card_number for i in todo}))}
        known: list[tuple[int, BatchMember]] = []
        unknown: list[int] = []
        for i in todo:
            member = members.get(coupons[i].card_number)
            if member is None:
                unknown.append(i)
            else:
                known.append((i, member))
        if unknown:
            # No member to claim them for; one credited before is still a duplicate.
            credited = await self.repo.credited_coupons(
                [(coupons[i].ticket_number, coupons[i].coupon_number) for i in unknown])
            for i in unknown:
                c = coupons[i]
                outcomes[i] = (Outcome(c, "duplicate", detail="credited before")
                               if (c.ticket_number, c.coupon_number) in credited
                               else rejected(c, Reason.UNKNOWN_MEMBER, c.card_number))
        if not known:
            return
        # Lock order of every batch: coupon claims (by ticket), balance rows (by account),
        # limited promotions (by code) and their award rows, member rows (by id). Promotions
        # come late so that a budget row, which every batch may need, is held only for the
        # posting and the commit, never while waiting for a member's balance.
        known.sort(key=lambda x: (x[1].account_id, coupons[x[0]].flight_date,
                                  coupons[x[0]].external_ref))
        rules = await self.rules(min(coupons[i].flight_date for i, _ in known),
                                 max(coupons[i].flight_date for i, _ in known))
        # Read before the claims below: a member's first flight is one with no claim yet.
        facts = await self._member_facts(rules, [m for _, m in known if m.status != "closed"])
        # Every coupon of a known member is claimed before anything else is decided, so that
        # one credited before (or by a concurrent batch, which the claim waits for) is a
        # duplicate whatever the member or the rules say now: the claim is the duplicate
        # check. A claimed coupon that is then refused gives its claim back.
        claimed = await self.repo.claim_coupons([
            (c.ticket_number, c.coupon_number, m.id, c.flight_date, c.marketing_carrier,
             c.flight_number, c.origin, c.destination, c.booking_class)
            for c, m in ((coupons[i], m) for i, m in known)])
        released: list[tuple[str, int]] = []
        flown: set[int] = set()
        earned: list[tuple[int, BatchMember, Earning]] = []
        for i, member in known:
            c = coupons[i]
            key = (c.ticket_number, c.coupon_number)
            if key not in claimed:
                outcomes[i] = Outcome(c, "duplicate", detail="credited before")
                continue
            # A locked member (sign-in or fraud hold) still earns what they flew; only a
            # closed membership refuses credit.
            if member.status == "closed":
                outcomes[i] = rejected(c, Reason.MEMBER_NOT_ACTIVE, member.status)
                released.append(key)
                continue
            fact = facts[member.id]
            if fact.first_flight and member.id in flown:
                fact = MemberFacts(fact.tier, False, fact.registrations)
            result = earn(rules, c, fact)
            if isinstance(result, Rejection):
                outcomes[i] = rejected(c, result.reason, result.detail)
                released.append(key)
                continue
            flown.add(member.id)
            earned.append((i, member, result))
        if released:  # not "used up": once the cause is fixed the coupon can be credited
            await self.repo.release_coupons(released)
        if not earned:
            return
        # Members in a family pool: their MILES go to the pool (lms.family.routing), whose
        # memberships are locked here, before any balance row, as every pool operation does.
        routes = await redeemable_accounts_for(self.conn, [m.id for _, m, _ in earned])
        shards = self._shards()
        granted = await self._grant_promotions(earned, [
            *shards, *(m.account_id for _, m, _ in earned),
            *(r.account_id for r in routes.values())])
        # The balance rows are written (and so locked, in ledger order) only now, by
        # Ledger.post_credits; a member whose account was closed after the lookup above
        # (rare: closing locks the same rows) makes it raise AccountClosed, and the whole
        # batch rolls back and can be resent.
        await self._post(coupons, earned, granted, outcomes, shards, routes)

    async def _member_facts(self, rules: RuleBook, members: list[BatchMember]
                            ) -> dict[int, MemberFacts]:
        ids = sorted({m.id for m in members})
        registrations: dict[int, set[str]] = defaultdict(set)
        if any(p.requires_registration for p in rules.promotions):
            for code, member_id in await self.repo.registrations(ids):
                registrations[member_id].add(code)
        flew: set[int] | None = None
        if any(p.first_flight_only for p in rules.promotions):
            flew = await self.repo.members_who_flew(ids)
        return {m.id: MemberFacts(m.tier, flew is not None and m.id not in flew,
                                  frozenset(registrations[m.id])) for m in members}

    async def _grant_promotions(self, earned: list[tuple[int, BatchMember, Earning]],
                                accounts: list[int]) -> dict[int, dict[str, int]]:
        """Promotion miles per coupon after member caps and budgets.

        Per-member award rows are locked for the rest of the transaction and read under the
        lock (a member's batches queue on their balance rows anyway). A budget is spent
        from its true remaining amount, never exceeded even under concurrent credits (a
        CHECK constraint guards it as well), in one of two ways. Locked: the limited
        promotions are locked here, in code order, and read under the lock; a coupon gets
        what is left, perhaps part of its bonus. Optimistic (``optimistic_budgets``): read
        without the lock; if no budget limits any coupon of the batch, every coupon gets its
        whole bonus and the batch's spending is settled under the lock at the end
        (``_settle_budgets``), which reruns the batch locked if the budget no longer holds
        it. Either way a coupon gets exactly what the locked way would give it.

        Balance rows come before promotions and award rows in every batch's lock order (an
        optimistic batch settles after its posting): before locking either here, the batch
        locks its balance rows (``accounts``), which its posting would otherwise lock only
        later.
        """
        limited_codes = sorted({h.promotion.code for _, _, e in earned for h in e.promotions
                                if h.promotion.limited})
        if not limited_codes:
            return self._grants(earned, {}, {})[0]
        optimistic = self.optimistic_budgets
        keys = sorted({(h.promotion.code, m.id) for _, m, e in earned for h in e.promotions
                       if h.promotion.member_cap is not None})
        locked = not optimistic or bool(keys)
        if locked:
            await self.ledger.lock_for_credits(accounts)
        state = {r["code"]: r for r in await (
            self.repo.promotion_limits(limited_codes) if optimistic
            else self.repo.lock_promotions(limited_codes))}
        awards = await self.repo.lock_awards(keys) if keys else {}
        granted, usage, award_add, budget_bound = self._grants(earned, state, awards)
        if optimistic and budget_bound:  # a budget nearly spent: decided under its lock
            if not locked:
                await self.ledger.lock_for_credits(accounts)
            state = {r["code"]: r for r in await self.repo.lock_promotions(limited_codes)}
            granted, usage, award_add, _ = self._grants(earned, state, awards)
            optimistic = False
        if optimistic:
            self._unsettled = {k: v for k, v in usage.items() if v}
        else:
            await self.repo.add_usage({k: v for k, v in usage.items() if v})
        await self.repo.add_awards({k: v for k, v in award_add.items() if v})
        return granted

    @staticmethod
    def _grants(earned: list[tuple[int, BatchMember, Earning]], state: dict[str, Any],
                awards: dict[tuple[str, int], int]
                ) -> tuple[dict[int, dict[str, int]], dict[str, int], dict[tuple[str, int], int],
                           bool]:
        """(miles per coupon and code, usage per code, awards per (code, member), whether a
        budget cut any coupon's bonus) from these promotion rows and award rows."""
        granted: dict[int, dict[str, int]] = {}
        usage: dict[str, int] = defaultdict(int)
        award_add: dict[tuple[str, int], int] = defaultdict(int)
        budget_bound = False
        for i, member, earning in earned:
            per_coupon: dict[str, int] = {}
            for hit in earning.promotions:
                code = hit.promotion.code
                miles = hit.miles
                if hit.promotion.limited:
                    locked = state.get(code)
                    if locked is None:  # deleted meanwhile: nothing to spend from
                        continue
                    budget_left = (None if locked["budget"] is None
                                   else locked["budget"] - locked["used"] - usage[code])
                    cap = locked["member_cap"]
                    member_left = (None if cap is None
                                   else cap - awards.get((code, member.id), 0)
                                   - award_add[(code, member.id)])
                    miles = apply_limits(miles, member_left=member_left,
                                         budget_left=budget_left)
                    if budget_left is not None and miles == budget_left and miles < hit.miles:
                        budget_bound = True
                    usage[code] += miles
                    if cap is not None:
                        award_add[(code, member.id)] += miles
                if miles > 0:
                    per_coupon[code] = miles
            granted[i] = per_coupon
        return granted, usage, award_add, budget_bound

    async def _settle_budgets(self) -> None:
        """Spend the optimistic batch's promotion usage under the promotions' locks (code
        order), the last statements of the batch: the lock is held only until the commit."""
        spend, self._unsettled = self._unsettled, {}
        state = {r["code"]: r for r in await self.repo.lock_promotions(sorted(spend))}
        for code, miles in spend.items():
            row = state.get(code)
            if row is None or (row["budget"] is not None
                               and row["used"] + miles > row["budget"]):
                raise BudgetsContended(code)
        await self.repo.add_usage(spend)

    def _shards(self) -> tuple[int, int]:
        """The batch's one (issuance, qualification) shard pair (see POST_CREDITS)."""
        return (self.pick(self.system.all(SystemAccount.ISSUANCE)),
                self.pick(self.system.all(SystemAccount.QUALIFICATION)))

    def pick(self, shards: list[int]) -> int:
        if self.lane is None:
            return random.choice(shards)  # noqa: S311 - load spreading, not security
        return shards[self.lane % len(shards)]

    async def _post(self, coupons: Sequence[Coupon],
                    earned: list[tuple[int, BatchMember, Earning]],
                    granted: dict[int, dict[str, int]], outcomes: list[Outcome | None],
                    shards: tuple[int, int], routes: dict[int, PoolRoute]) -> None:
        issuance, qualification = shards
        rows = []
        contributions: dict[int, int] = defaultdict(int)
        activity: dict[int, datetime] = {}
        for i, member, e in earned:
            c = coupons[i]
            promo = granted.get(i, {})
            miles = e.miles_before_promotions + sum(promo.values())
            effective, effective_text, expires, day = credit_times(c.flight_date,
                                                                   self.lot_validity_months)
            # The entry's details as JSON text, written out: every coupon field in it is
            # letters and digits (coupon_problem), nothing to escape; the cabin, from the
            # rules, and the promotions go through the encoder.
            details = (f'{{"ticket":"{c.ticket_number}","coupon":{c.coupon_number},'
                       f'"flight":"{c.marketing_carrier}{c.flight_number}",'
                       f'"operatedBy":"{c.operating_carrier}",'
                       f'"route":"{c.origin}-{c.destination}","class":"{c.booking_class}",'
                       f'"cabin":{json_string(e.cabin)},"distance":{e.distance},'
                       f'"baseMiles":{e.base_miles},"tierBonus":{e.tier_bonus}')
            if promo:
                details += f',"promotions":{DETAILS.encode(promo).decode()}'
            route = routes.get(member.id)
            if route is not None:
                details += f',"familyPoolId":{route.pool_id}'
                contributions[route.membership_id] += miles
            rows.append((c.external_ref, member.account_id, miles, e.status_miles, e.segments,
                         effective_text, f"Flight {c.marketing_carrier}{c.flight_number} "
                         f"{c.origin}-{c.destination} {day}", details + "}", expires,
                         route.account_id if route is not None else None))
            outcomes[i] = Outcome(c, "credited", miles=miles, status_miles=e.status_miles,
                                  segments=e.segments, promotions=promo, member_id=member.id,
                                  account_id=member.account_id)
            # Only a flight after the member's last activity moves it: the others would lock
            # and rewrite the member row for nothing (a feed is rarely in date order).
            if member.last_activity_at is None or effective > member.last_activity_at:
                activity[member.id] = max(activity.get(member.id, effective), effective)
        entry_ids = await self.ledger.post_credits(
            rows, issuance=issuance, qualification=qualification, actor=self.actor,
            source=SOURCE)
        for (i, _, _), entry_id in zip(earned, entry_ids, strict=True):
            outcome = outcomes[i]
            assert outcome is not None
            outcome.entry_id = entry_id
        await record_contributions(self.conn, contributions)
        await self.repo.touch_members(activity)


async def credit_in_session(session: AsyncSession, system: SystemAccounts,
                            coupons: Sequence[Coupon], *, actor: Actor = FEED_ACTOR,
                            lot_validity_months: int = 36, today: date | None = None,
                            optimistic_budgets: bool = False) -> list[Outcome]:
    """Credit a batch in the session's unit of work, then, in the same unit: bring the tiers
    of the members who earned status miles or segments up to date (lms.tiers, in member id
    order like every other lock on members in this batch) and mark the missing-flight claims
    these coupons answer (lms.claims; its beat job catches whatever a bulk import skips)."""
    conn = await raw_connection(session)
    outcomes = await FlightCredits(conn, system, actor=actor,
                                   lot_validity_months=lot_validity_months,
                                   optimistic_budgets=optimistic_budgets
                                   ).credit(coupons, today=today)
    qualified = sorted({o.member_id for o in outcomes if o.member_id is not None
                        and (o.status_miles or o.segments)})
    tiers = TierService(session)
    for member_id in qualified:
        await tiers.reevaluate(member_id)
    claims = ClaimService(session)
    for o in outcomes:
        if o.status == "credited" and o.account_id is not None:
            await claims.match_credited(o.coupon.ticket_number, account_id=o.account_id,
                                        entry_id=o.entry_id)
    return outcomes


async def credit_coupons(db: Database, system: SystemAccounts, coupons: Sequence[Coupon], *,
                         actor: Actor = FEED_ACTOR, lot_validity_months: int = 36,
                         today: date | None = None, reevaluate_tiers: bool = False,
                         lane: int | None = None) -> list[Outcome]:
    """Credit up to 1,000 coupons as one unit of work; one outcome per coupon, in order.

    With ``reevaluate_tiers`` a member who crosses a tier threshold is upgraded in the same
    unit of work (the feed's HTTP path); bulk imports leave it to one set-based pass at the
    end (lms.tiers.jobs.tiers_nightly), which costs far less than one member at a time.
    """
    def in_session(budgets: bool) -> Callable[[AsyncSession], Awaitable[list[Outcome]]]:
        return lambda session: credit_in_session(
            session, system, coupons, actor=actor, lot_validity_months=lot_validity_months,
            today=today, optimistic_budgets=budgets)

    def on_connection(budgets: bool) -> Callable[[RawConnection], Awaitable[list[Outcome]]]:
        return lambda conn: FlightCredits(
            conn, system, actor=actor, lot_validity_months=lot_validity_months, lane=lane,
            optimistic_budgets=budgets).credit(coupons, today=today)

    attempt = 0
    optimistic = True
    while True:
        attempt += 1
        try:
            if reevaluate_tiers:
                return await db.transaction(in_session(optimistic))
            return await db.raw_transaction(on_connection(optimistic))
        except BudgetsContended:
            optimistic = False  # the rerun decides every budget under its lock
        except DuplicateExternalReference:
            if attempt >= DUPLICATE_RERUNS:
                raise


# -- rules and promotions ---------------------------------------------------------------

def rule_out(r: Any) -> EarnRuleOut:
    return EarnRuleOut(id=r["id"], kind=r["kind"], key=r["key"],
                       effective_from=r["effective_from"], body=json_value(r["body"]),
                       created_by=r["created_by"], created_at=r["created_at"])


def promotion_out(r: Any) -> PromotionOut:
    # Records are read by attribute name (snake_case), not by the camelCase wire names.
    return msgspec.convert(SimpleNamespace(**dict(r)), PromotionOut, from_attributes=True)


def rule_key_fits(kind: RuleKind, key: str) -> bool:
    if kind is RuleKind.CARRIER:
        return 2 <= len(key) <= 3 and key.isalnum() and key.isupper()
    if kind is RuleKind.BOOKING_CLASS:
        carrier, _, booking_class = key.partition("/")
        return (rule_key_fits(RuleKind.CARRIER, carrier) and len(booking_class) == 1
                and booking_class.isalpha() and booking_class.isupper())
    return bool(key) and key.strip() == key


def check_rule(data: EarnRuleIn) -> dict[str, Any]:
    """The rule's body in canonical form, or InvalidRule saying what is wrong."""
    kind = RuleKind(data.kind)
    try:
        body = msgspec.convert(data.body, RULE_TYPES[kind])
    except msgspec.ValidationError as exc:
        raise InvalidRule(str(exc), errors=[{"key": "body", "message": str(exc),
                                             "source": "body"}]) from exc
    if not rule_key_fits(kind, data.key):
        raise InvalidRule(f"key {data.key!r} does not fit a {kind} rule",
                          errors=[{"key": "key", "message": "wrong shape", "source": "body"}])
    for name in ("miles_percent", "status_miles_percent", "segments", "bonus_percent",
                 "min_miles_per_segment", "min_status_miles_per_segment",
                 "revenue_miles_per_unit"):
        value = getattr(body, name, 0)
        if value < 0:
            raise InvalidRule(f"{name} must not be negative")
    result: dict[str, Any] = msgspec.to_builtins(body)
    return result


# (actor type, actor id, role) of a staff user, for the audit log.
StaffActor = tuple[str, str, str]


class ProgrammeRules:
    """Reading and adding versions of earn rules and promotions (asyncpg, caller's tx)."""

    def __init__(self, conn: RawConnection) -> None:
        self.repo = AccrualRepository(conn)

    async def list_rules(self, kind: str | None = None, key: str | None = None
                         ) -> list[EarnRuleOut]:
        return [rule_out(r) for r in await self.repo.rules(kind, key)]

    async def add_rule(self, data: EarnRuleIn, created_by: str, *,
                       if_absent: bool = False, staff: StaffActor | None = None
                       ) -> EarnRuleOut | None:
        """A new version; an existing (kind, key, effectiveFrom) is never overwritten."""
        body = check_rule(data)
        row = await self.repo.insert_rule(data.kind, data.key, data.effective_from, body,
                                          created_by)
        if row is None:
            if if_absent:
                return None
            raise RuleVersionExists(f"{data.kind} {data.key} from {data.effective_from}")
        out = rule_out(row)
        if staff is not None:  # rules decide how many miles members get: audited
            await self.repo.audit(staff, "earn_rule.added", "earn_rule", str(out.id),
                                  msgspec.to_builtins(out))
        return out

    async def list_promotions(self) -> list[PromotionOut]:
        return [promotion_out(r) for r in await self.repo.promotions()]

    async def add_promotion(self, data: PromotionIn, *, if_absent: bool = False,
                            staff: StaffActor | None = None) -> PromotionOut | None:
        if data.bonus_percent == 0 and data.fixed_miles == 0:
            raise InvalidPromotion("A promotion needs bonusPercent or fixedMiles")
        for start, end, name in ((data.travel_from, data.travel_to, "travel"),
                                 (data.booked_from, data.booked_to, "booking")):
            if start and end and start > end:
                raise InvalidPromotion(f"The {name} window ends before it starts")
        row = await self.repo.insert_promotion((
            data.code, data.name, data.bonus_percent, data.fixed_miles, data.carriers,
            data.origins, data.destinations, data.countries, data.booking_classes, data.tiers,
            data.travel_from, data.travel_to, data.booked_from, data.booked_to,
            data.first_flight_only, data.requires_registration, data.member_cap, data.budget))
        if row is None:
            if if_absent:
                return None
            raise PromotionExists(data.code)
        out = promotion_out(row)
        if staff is not None:
            await self.repo.audit(staff, "promotion.added", "promotion", out.code,
                                  msgspec.to_builtins(out))
        return out

    async def register(self, code: str, member_id: int, *, today: date | None = None
                       ) -> tuple[datetime, bool]:
        """Register a member for a promotion that asks for it; registering twice is a no-op
        that answers the first registration."""
        promotion = await self.repo.promotion(code)
        if promotion is None:
            raise PromotionNotFound(code)
        today = today or datetime.now(UTC).date()
        if not promotion["requires_registration"] or (
                promotion["travel_to"] is not None and promotion["travel_to"] < today):
            raise RegistrationNotOpen(code)
        return await self.repo.register(code, member_id)
