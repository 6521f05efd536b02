"""One member's life in the programme, simulated in time order, written as ledger rows.

Each member gets a locale, a tier and a history: flown coupons (miles, status miles and a
segment per flight, by distance and booking class as the demo carrier earns them), partner
purchases, redemptions, partner holds (captured, voided, expired, some still pending) and the
expiry of lots left unspent for their validity. The rows are exactly what the ledger itself
would have written for that history: balanced entries, postings with the balance after each,
lots consumed oldest expiry first, balances equal to the sum of postings, ``held`` equal to
the pending holds. The tier is the one the status rules give for the member's status miles and
segments of the last 12 months, so the tier job has nothing to change.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from lms.accounts.cards import make_card_number
from lms.generator.locales import LOCALES
from lms.generator.reference import (
    ECONOMY,
    MIN_MILES,
    MIN_STATUS_MILES,
    PREMIUM,
    Route,
)
from lms.ledger.service import add_months

# (code, share of members, status miles, segments, bonus % on flown miles) as migration 0005
# and programme/demo.toml define them: a tier is reached by either threshold.
T = TypeVar("T")

TIERS = (
    ("BASIC", 80, 0, 0, 0),
    ("SILVER", 12, 25_000, 30, 25),
    ("GOLD", 6, 50_000, 60, 50),
    ("PLATINUM", 2, 100_000, 100, 100),
)
TIER_CUM_WEIGHTS = [sum(t[1] for t in TIERS[: i + 1]) for i in range(len(TIERS))]
LOCALE_CUM_WEIGHTS = [sum(loc.weight for loc in LOCALES[: i + 1]) for i in range(len(LOCALES))]
QUALIFICATION_MONTHS = 12
DAY = 86_400.0
HOUR = 3_600.0

# What a member does, on average, per month of membership (tuned for about 20 entries per
# member over the default 48 months).
PARTNER_PER_MONTH = 0.42
OLD_FLIGHTS_PER_MONTH = 0.04
REDEMPTIONS_PER_MONTH = 0.08
CAPTURES_PER_MONTH = 0.06
SHARE_WITH_PHONE = 0.9
SHARE_LOCKED = 0.002
SHARE_PENDING_HOLD = 0.08
SHARE_CLOSED_HOLD = 0.1
PARTNER_CATEGORIES = ("general", "hotel", "car", "dining", "fuel")


@dataclass(frozen=True, slots=True)
class Partner:
    id: int
    account_id: int
    name: str


@dataclass(frozen=True, slots=True)
class Context:
    """Everything constant over a run."""

    now: datetime
    months: int
    lot_validity_months: int
    password_hash: str
    card_prefix: str
    issuance: tuple[int, ...]
    qualification: tuple[int, ...]
    redemptions: tuple[int, ...]
    breakage: tuple[int, ...]
    partners: tuple[Partner, ...]
    short_routes: tuple[Route, ...]
    long_routes: tuple[Route, ...]
    phone_stems: dict[str, list[str]]


@dataclass(slots=True)
class Counters:
    """The next id of each table; the loader reserved the ranges in their sequences."""

    member: int
    account: int
    card: int
    entry: int
    posting: int
    lot: int
    hold: int


@dataclass(slots=True)
class Rows:
    """One chunk's rows, table by table, in COPY column order (see lms.generator.load)."""

    accounts: list[tuple[Any, ...]] = field(default_factory=list)
    balances: list[tuple[Any, ...]] = field(default_factory=list)
    members: list[tuple[Any, ...]] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    postings: list[tuple[Any, ...]] = field(default_factory=list)
    lots: list[tuple[Any, ...]] = field(default_factory=list)
    holds: list[tuple[Any, ...]] = field(default_factory=list)
    tiers: dict[str, int] = field(default_factory=dict)


class SystemBook:
    """Running balances of the system account shards, for balance_after and the final update
    of their balance rows."""

    def __init__(self, posted: dict[tuple[int, str], int]) -> None:
        self.start = dict(posted)
        self.posted = dict(posted)

    def add(self, account_id: int, unit: str, amount: int) -> int:
        key = (account_id, unit)
        value = self.posted[key] + amount
        self.posted[key] = value
        return value

    def deltas(self) -> list[tuple[int, str, int]]:
        return [(a, u, v - self.start[(a, u)]) for (a, u), v in self.posted.items()
                if v != self.start[(a, u)]]


class Simulator:
    def __init__(self, ctx: Context, ids: Counters, book: SystemBook) -> None:
        self.ctx = ctx
        self.ids = ids
        self.book = book
        self.today = ctx.now.date().toordinal()

    # -- one member ---------------------------------------------------------------------------

    def member(self, rng: random.Random, rows: Rows) -> None:
        ctx, ids = self.ctx, self.ids
        member_id, account_id = ids.member, ids.account
        ids.member += 1
        ids.account += 1
        card = make_card_number(ctx.card_prefix, ids.card)
        ids.card += 1
        loc = rng.choices(LOCALES, cum_weights=LOCALE_CUM_WEIGHTS)[0]
        first, last = pick(rng, loc.first_names), pick(rng, loc.last_names)
        email = f"{first.ascii}.{last.ascii}.{member_id}@{pick(rng, loc.domains)}"
        phone = region = None
        if rng.random() < SHARE_WITH_PHONE:
            region = loc.region
            phone = f"{pick(rng, ctx.phone_stems[region])}{rng.randrange(10_000):04d}"
        birth = date.fromordinal(self.today - rng.randrange(18 * 365, 85 * 365))
        rank = rng.choices(range(len(TIERS)), cum_weights=TIER_CUM_WEIGHTS)[0]
        span = ctx.months * 30.4 * DAY
        # A member with status has been flying with us for at least a qualification period.
        earliest = 13 * 30.4 * DAY if rank and span > 13 * 30.4 * DAY else 7 * DAY
        joined = ctx.now - timedelta(seconds=rng.uniform(earliest, max(span, earliest + DAY)))

        life = Life(self, rng, member_id, account_id, joined, rank, rows)
        tier, valid_until = life.run()
        status = "locked" if rng.random() < SHARE_LOCKED else "active"
        rows.accounts.append((account_id, "member", False, "open", joined))
        rows.members.append((
            member_id, card, account_id, email, ctx.password_hash, first.native, last.native,
            phone, region, birth, loc.code, loc.timezone, status, tier, valid_until, joined,
            life.last_activity))
        rows.tiers[tier] = rows.tiers.get(tier, 0) + 1


class Life:
    """The history of one member: events in time order, each applied as the ledger would."""

    def __init__(self, sim: Simulator, rng: random.Random, member_id: int, account_id: int,
                 joined: datetime, rank: int, rows: Rows) -> None:
        self.sim, self.ctx, self.ids, self.book = sim, sim.ctx, sim.ids, sim.book
        self.rng = rng
        self.member_id = member_id
        self.account = account_id
        self.joined = joined
        self.rank = rank
        self.rows = rows
        self.miles = self.status_miles = self.segments = 0
        # Open lots oldest first: [id, entry_id, amount, remaining, expires_at, created_at].
        # All lots run for the same validity, so oldest expiry first is creation order.
        self.lots: list[list[Any]] = []
        self.head = 0
        self.last_activity: datetime | None = None
        self.bonus = 0

    def at(self, start: datetime, end: datetime) -> datetime:
        return start + (end - start) * self.rng.random()

    def run(self) -> tuple[str, datetime | None]:
        ctx, rng = self.ctx, self.rng
        now = ctx.now
        window_start = max(self.joined, add_months(now, -QUALIFICATION_MONTHS))
        membership_months = (now - self.joined).total_seconds() / (30.4 * DAY)
        events: list[tuple[datetime, int, Any]] = []
        # Flights in the qualification window decide the tier; older ones are history.
        for when, route, cls in self.window_flights(window_start, now):
            events.append((when, 0, (route, cls)))
        old_months = (window_start - self.joined).total_seconds() / (30.4 * DAY)
        for _ in range(self.count(old_months * OLD_FLIGHTS_PER_MONTH * (1 + self.rank))):
            events.append((self.at(self.joined, window_start), 0, self.pick_flight()))
        for _ in range(self.count(membership_months * PARTNER_PER_MONTH)):
            events.append((self.at(self.joined, now), 1, pick(rng, ctx.partners)))
        for _ in range(self.count(membership_months * REDEMPTIONS_PER_MONTH)):
            events.append((self.at(self.joined, now), 2, None))
        for _ in range(self.count(membership_months * CAPTURES_PER_MONTH)):
            # Captured within hours of the hold, never after now.
            events.append((self.at(self.joined, now - timedelta(hours=12)), 3, None))
        if rng.random() < SHARE_CLOSED_HOLD:
            events.append((self.at(self.joined, now - timedelta(days=3)), 4, None))
        events.sort(key=lambda e: e[0])

        qualified_at: datetime | None = None
        window_sm = window_seg = 0
        tier_rank = 0
        for when, kind, payload in events:
            self.expire(when)
            if kind == 0:
                route, cls = payload
                in_window = when >= window_start
                self.flight(when, route, cls)
                if in_window:
                    window_sm += status_of(route, cls)
                    window_seg += 1
                    reached = qualified_rank(window_sm, window_seg)
                    if reached > tier_rank:
                        tier_rank, qualified_at = reached, when
                        self.bonus = TIERS[reached][4]
            elif kind == 1:
                self.partner_accrual(when, payload)
            elif kind == 2:
                self.redemption(when)
            elif kind == 3:
                self.captured_hold(when)
            else:
                self.closed_hold(when)
        self.expire(now)
        held = self.pending_hold() if rng.random() < SHARE_PENDING_HOLD else 0
        self.write_state(held)
        valid_until = (add_months(qualified_at, QUALIFICATION_MONTHS)
                       if tier_rank and qualified_at is not None else None)
        return TIERS[tier_rank][0], valid_until

    def count(self, mean: float) -> int:
        """A whole number of events with this mean (Poisson-like, cheap)."""
        if mean <= 0:
            return 0
        whole = int(mean * 2 * self.rng.random() + 0.5)
        return whole

    # -- flights ------------------------------------------------------------------------------

    def pick_flight(self, cheap: bool = False) -> tuple[Route, tuple[str, int, int]]:
        rng, ctx = self.rng, self.ctx
        if cheap:
            return pick(rng, ctx.short_routes), ECONOMY[-1]
        long_share = (0.25, 0.4, 0.5, 0.6)[self.rank]
        premium_share = (0.08, 0.2, 0.35, 0.5)[self.rank]
        route = pick(rng, ctx.long_routes if rng.random() < long_share else ctx.short_routes)
        cls = pick(rng, PREMIUM if rng.random() < premium_share else ECONOMY)
        return route, cls

    def window_flights(self, start: datetime, end: datetime
                       ) -> list[tuple[datetime, Route, tuple[str, int, int]]]:
        """Flights of the last 12 months that land the member in their drawn tier: status
        miles from its threshold up to (not reaching) the next tier's, and fewer segments
        than the next tier asks."""
        rng = self.rng
        _, _, low, _, _ = TIERS[self.rank]
        if self.rank + 1 < len(TIERS):
            high, seg_cap = TIERS[self.rank + 1][2], TIERS[self.rank + 1][3]
        else:
            high, seg_cap = 10**9, 150
        if self.rank == 0:
            target = min(high - 1, int(rng.expovariate(1 / 3_000)))
        else:
            target = low + rng.randrange(max(1, (high - low) // 2)) if high < 10**9 \
                else low + rng.randrange(70_000)
        flights: list[tuple[Route, tuple[str, int, int]]] = []
        total = 0
        while total < target and len(flights) < seg_cap - 1:
            route, cls = self.pick_flight()
            if total + status_of(route, cls) >= high:
                route, cls = self.pick_flight(cheap=True)
                if total + status_of(route, cls) >= high:
                    break
            flights.append((route, cls))
            total += status_of(route, cls)
        return sorted(((self.at(start, end - timedelta(hours=2)), r, c) for r, c in flights),
                      key=lambda f: f[0])

    # -- entries ------------------------------------------------------------------------------

    def entry(self, kind: str, actor_type: str, actor_id: str, description: str,
              source: str | None, ref: str | None, hold_id: int | None,
              when: datetime) -> int:
        entry_id = self.ids.entry
        self.ids.entry += 1
        if source is not None and ref is None:
            ref = f"{'220' if source == 'flight' else 'gen'}{entry_id:010d}" + (
                "/1" if source == "flight" else "")
        self.rows.entries.append((entry_id, kind, actor_type, actor_id, description, source,
                                  ref, hold_id, when, when))
        self.last_activity = when
        return entry_id

    def legs(self, entry_id: int, when: datetime, unit: str, system: int, amount: int) -> None:
        """A system leg and the member's leg of ``amount`` (signed for the member)."""
        ids, postings = self.ids, self.rows.postings
        if unit == "MILES":
            self.miles += amount
            mine = self.miles
        elif unit == "STATUS_MILES":
            self.status_miles += amount
            mine = self.status_miles
        else:
            self.segments += amount
            mine = self.segments
        pid = ids.posting
        ids.posting += 2
        if amount > 0:  # the system side first, as the ledger writes a credit
            postings.append((pid, entry_id, system, unit, -amount,
                             self.book.add(system, unit, -amount), when))
            postings.append((pid + 1, entry_id, self.account, unit, amount, mine, when))
        else:
            postings.append((pid, entry_id, self.account, unit, amount, mine, when))
            postings.append((pid + 1, entry_id, system, unit, -amount,
                             self.book.add(system, unit, -amount), when))

    def credit_lot(self, entry_id: int, amount: int, when: datetime) -> None:
        lot_id = self.ids.lot
        self.ids.lot += 1
        self.lots.append([lot_id, entry_id, amount, amount,
                          later_by_months(when, self.ctx.lot_validity_months), when])

    def consume(self, amount: int) -> None:
        lots = self.lots
        while amount > 0:
            lot = lots[self.head]
            take = min(lot[3], amount)
            lot[3] -= take
            amount -= take
            if lot[3] == 0:
                self.head += 1

    def flight(self, when: datetime, route: Route, cls: tuple[str, int, int]) -> None:
        code, pct, _ = cls
        miles = max(MIN_MILES, route.miles * pct // 100) * (100 + self.bonus) // 100
        status = status_of(route, cls)
        number = 100 + self.rng.randrange(900)
        entry_id = self.entry("accrual", "system", "flights",
                              f"LM{number} {route.origin}-{route.destination} {code}",
                              "flight", None, None, when)
        rng, ctx = self.rng, self.ctx
        self.legs(entry_id, when, "MILES", pick(rng, ctx.issuance), miles)
        qualification = pick(rng, ctx.qualification)
        self.legs(entry_id, when, "STATUS_MILES", qualification, status)
        self.legs(entry_id, when, "SEGMENTS", pick(rng, ctx.qualification), 1)
        self.credit_lot(entry_id, miles, when)

    def partner_accrual(self, when: datetime, partner: Partner) -> None:
        rng = self.rng
        miles = 20 + int(rng.expovariate(1 / 600))
        category = pick(rng, PARTNER_CATEGORIES)
        entry_id = self.entry("accrual", "partner", str(partner.id),
                              f"{partner.name}: {category}", f"partner:{partner.id}", None,
                              None, when)
        self.legs(entry_id, when, "MILES", partner.account_id, miles)
        self.credit_lot(entry_id, miles, when)

    def spendable(self, minimum: int) -> int:
        """How much to spend now (a whole 500 miles), or 0 if too little is available."""
        if self.miles < minimum:
            return 0
        share = 0.3 + 0.6 * self.rng.random()
        return max(500, int(self.miles * share) // 500 * 500)

    def redemption(self, when: datetime) -> None:
        amount = self.spendable(5_000)
        if not amount:
            return
        entry_id = self.entry("redemption", "member", str(self.member_id), "Award ticket",
                              None, None, None, when)
        self.legs(entry_id, when, "MILES", pick(self.rng, self.ctx.redemptions), -amount)
        self.consume(amount)

    def hold_row(self, amount: int, created: datetime, status: str, captured: int,
                 entry_id: int | None, closed: datetime | None, expires: datetime,
                 partner: Partner, hold_id: int | None = None) -> int:
        if hold_id is None:
            hold_id = self.ids.hold
            self.ids.hold += 1
        self.rows.holds.append((hold_id, self.account, "MILES", amount, captured, status,
                                "partner", str(partner.id), f"gen-hold-{hold_id}", entry_id,
                                expires, created, closed))
        return hold_id

    def captured_hold(self, when: datetime) -> None:
        amount = self.spendable(1_000)
        if not amount:
            return
        partner = pick(self.rng, self.ctx.partners)
        hold_id = self.ids.hold
        self.ids.hold += 1
        captured_at = when + timedelta(minutes=5 + self.rng.randrange(600))
        entry_id = self.entry("capture", "partner", str(partner.id),
                              f"{partner.name}: redemption", None, None, hold_id, captured_at)
        self.legs(entry_id, captured_at, "MILES", pick(self.rng, self.ctx.redemptions),
                  -amount)
        self.consume(amount)
        self.hold_row(amount, when, "captured", amount, entry_id, captured_at,
                      when + timedelta(days=2), partner, hold_id)

    def closed_hold(self, when: datetime) -> None:
        """A hold that was voided or ran out: a row, and no entry."""
        amount = self.spendable(1_000)
        if not amount:
            return
        expired = self.rng.random() < 0.5
        expires = when + timedelta(days=2)
        closed = expires if expired else when + timedelta(minutes=30)
        self.hold_row(amount, when, "expired" if expired else "voided", 0, None, closed,
                      expires, pick(self.rng, self.ctx.partners))

    def pending_hold(self) -> int:
        amount = self.spendable(1_000)
        if not amount:
            return 0
        now, rng = self.ctx.now, self.rng
        created = now - timedelta(seconds=rng.uniform(60, DAY))
        expires = now + timedelta(seconds=rng.uniform(HOUR, 6 * DAY))
        self.hold_row(amount, created, "pending", 0, None, None, expires,
                      pick(rng, self.ctx.partners))
        return amount

    def expire(self, until: datetime) -> None:
        """Lots that ran out before ``until`` go to breakage, as the nightly job does."""
        lots, due, last = self.lots, 0, None
        while self.head < len(lots) and lots[self.head][4] <= until:
            lot = lots[self.head]
            due += lot[3]
            lot[3] = 0
            last = lot[4]
            self.head += 1
        if due and last is not None:
            entry_id = self.entry("expiry", "system", "expiry", "Miles expired", None, None,
                                  None, last)
            self.legs(entry_id, last, "MILES", pick(self.rng, self.ctx.breakage), -due)

    def write_state(self, held: int) -> None:
        rows, account = self.rows, self.account
        rows.balances.append((account, "MILES", self.miles, held, False))
        rows.balances.append((account, "STATUS_MILES", self.status_miles, 0, False))
        rows.balances.append((account, "SEGMENTS", self.segments, 0, False))
        rows.lots.extend((lot[0], account, lot[1], lot[2], lot[3], lot[4], lot[5])
                         for lot in self.lots)


def pick(rng: random.Random, items: Sequence[T]) -> T:
    """``rng.choice`` without its rejection sampling: a third of the simulation's time."""
    return items[int(rng.random() * len(items))]


def later_by_months(moment: datetime, months: int) -> datetime:
    """``add_months`` for whole years (the usual lot validity) in one call."""
    if months % 12:
        return add_months(moment, months)
    try:
        return moment.replace(year=moment.year + months // 12)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + months // 12, day=28)


def status_of(route: Route, cls: tuple[str, int, int]) -> int:
    return max(MIN_STATUS_MILES, route.miles * cls[2] // 100)


def qualified_rank(status_miles: int, segments: int) -> int:
    reached = 0
    for rank, (_, _, sm, seg, _) in enumerate(TIERS):
        if rank and (status_miles >= sm or segments >= seg):
            reached = rank
    return reached
