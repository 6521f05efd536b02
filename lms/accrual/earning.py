"""The earn engine: what a flown coupon is worth under the programme's rules (pure functions).

Nothing here touches the database. ``RuleBook`` holds every version of every rule; the version
in force on the flight date applies, so adding a version never changes what was credited
before it. ``earn`` turns one coupon into miles, status miles and segments, or a rejection
reason. Promotion budgets and caps need the database and are applied by the service, on top
of the ``PromotionHit`` amounts computed here.

Arithmetic is on integers only: percentages are whole numbers and every product is rounded
half up (``pct_of``), so that a hand computation gives the same figure.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

import airportsdata
import msgspec

EARTH_RADIUS_MILES = 3958.8
# ISO 4217 currencies without minor units; every other one has two (enough for fares).
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "HUF", "XOF", "XAF"})


class Reason(enum.StrEnum):
    """Why a coupon was not credited (stable codes, part of the API contract)."""

    INVALID_COUPON = "invalid_coupon"
    UNKNOWN_MEMBER = "unknown_member"
    MEMBER_NOT_ACTIVE = "member_not_active"
    UNKNOWN_AIRPORT = "unknown_airport"
    CARRIER_NOT_ELIGIBLE = "carrier_not_eligible"
    CLASS_NOT_ELIGIBLE = "class_not_eligible"
    FARE_REQUIRED = "fare_required"
    FARE_CURRENCY_NOT_ACCEPTED = "fare_currency_not_accepted"
    FLIGHT_IN_FUTURE = "flight_in_future"
    NOTHING_TO_CREDIT = "nothing_to_credit"


class EarnMethod(enum.StrEnum):
    DISTANCE = "distance"
    REVENUE = "revenue"


class RuleKind(enum.StrEnum):
    CARRIER = "carrier"
    BOOKING_CLASS = "booking_class"
    TIER_BONUS = "tier_bonus"


Percent = msgspec.Meta(ge=0, le=10_000)


class CarrierRule(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """How a carrier's flights earn: by distance (times the booking class's percentage) or by
    revenue (miles per whole currency unit of the fare, optionally per tier)."""

    name: str
    earn_method: EarnMethod = EarnMethod.DISTANCE
    own_airline: bool = False
    min_miles_per_segment: int = 0
    min_status_miles_per_segment: int = 0
    revenue_currency: str = "USD"
    revenue_miles_per_unit: int = 0
    revenue_miles_per_unit_by_tier: dict[str, int] = {}


class BookingClassRule(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    cabin: str
    miles_percent: int = 100
    status_miles_percent: int = 100
    segments: int = 1
    eligible: bool = True


class TierBonusRule(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    bonus_percent: int


RULE_TYPES: dict[RuleKind, type[Any]] = {
    RuleKind.CARRIER: CarrierRule,
    RuleKind.BOOKING_CLASS: BookingClassRule,
    RuleKind.TIER_BONUS: TierBonusRule,
}


def class_key(carrier: str, booking_class: str) -> str:
    return f"{carrier}/{booking_class}"


@dataclass(frozen=True, slots=True)
class Promotion:
    """A promotion's terms as the engine needs them (empty filter = no restriction)."""

    code: str
    bonus_percent: int = 0
    fixed_miles: int = 0
    carriers: frozenset[str] = frozenset()
    origins: frozenset[str] = frozenset()
    destinations: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()
    booking_classes: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()
    travel_from: date | None = None
    travel_to: date | None = None
    booked_from: date | None = None
    booked_to: date | None = None
    first_flight_only: bool = False
    requires_registration: bool = False
    member_cap: int | None = None
    budget: int | None = None

    @property
    def limited(self) -> bool:
        return self.member_cap is not None or self.budget is not None


# Coupons' earnings without promotions kept per rule book (see RuleBook.base_earning): a feed
# holds some tens of thousands of distinct (route, class, period) at most, each with its
# tiers; past this the memo starts again rather than grow without bound (fares in the key
# would make it unbounded).
BASE_EARNINGS_KEPT = 200_000


@dataclass(slots=True)
class RuleBook:
    """Every version of every rule, keyed by (kind, key), sorted by effective date."""

    versions: dict[tuple[RuleKind, str], list[tuple[date, Any]]] = field(default_factory=dict)
    promotions: list[Promotion] = field(default_factory=list)
    # (kind, key, day) -> the version in force: an import asks the same few thousand.
    _memo: dict[tuple[RuleKind, str, date], Any] = field(default_factory=dict, repr=False,
                                                         compare=False)
    # Every effective date of every version, sorted: between two of them no rule changes,
    # so a day's period (its index here) stands for the day in ``_base``'s keys.
    _changes: list[date] = field(default_factory=list, repr=False, compare=False)
    _periods: dict[date, int] = field(default_factory=dict, repr=False, compare=False)
    _base: dict[tuple[Any, ...], dict[str, Earning | Rejection]] = field(
        default_factory=dict, repr=False, compare=False)

    def add(self, kind: RuleKind, key: str, effective_from: date, body: Any) -> None:
        entries = self.versions.setdefault((kind, key), [])
        bisect.insort(entries, (effective_from, body), key=lambda e: e[0])
        if effective_from not in self._changes:
            bisect.insort(self._changes, effective_from)
        self._memo.clear()
        self._periods.clear()
        self._base.clear()

    def in_force(self, kind: RuleKind, key: str, on: date) -> Any | None:
        memo_key = (kind, key, on)
        try:
            return self._memo[memo_key]
        except KeyError:
            pass
        entries = self.versions.get((kind, key))
        found = None
        if entries:
            i = bisect.bisect_right(entries, on, key=lambda e: e[0])
            found = entries[i - 1][1] if i else None
        self._memo[memo_key] = found
        return found

    def base_earning(self, coupon: Coupon, tier: str) -> Earning | Rejection:
        """What ``coupon`` earns a member of ``tier`` before promotions (``earn_base``),
        worked out once per route, class, tier, fare and period of unchanged rules: what
        each coupon of a feed would otherwise work out again (distance, three rule
        look-ups, the arithmetic), a fifth of the import's own CPU."""
        on = coupon.flight_date
        period = self._periods.get(on)
        if period is None:
            period = self._periods[on] = bisect.bisect_right(self._changes, on)
        key = (coupon.marketing_carrier, coupon.booking_class, coupon.origin,
               coupon.destination, period, coupon.fare_amount, coupon.fare_currency)
        by_tier = self._base.get(key)
        if by_tier is None:
            if len(self._base) >= BASE_EARNINGS_KEPT:
                self._base.clear()
            by_tier = self._base[key] = {}
        found = by_tier.get(tier)
        if found is None:
            found = by_tier[tier] = earn_base(self, coupon, tier)
        return found


@dataclass(frozen=True, slots=True)
class Coupon:
    """A flown coupon, already checked for shape (see ``coupon_problem``)."""

    ticket_number: str
    coupon_number: int
    card_number: str
    flight_date: date
    marketing_carrier: str
    operating_carrier: str
    flight_number: str
    origin: str
    destination: str
    booking_class: str
    cabin: str | None = None
    booking_date: date | None = None
    fare_amount: int | None = None  # minor units of fare_currency
    fare_currency: str | None = None

    @property
    def external_ref(self) -> str:
        return f"{self.ticket_number}/{self.coupon_number}"


# Each field's slot, in order (see ``coupon_of``).
_COUPON_SLOTS = tuple(getattr(Coupon, name).__set__ for name in Coupon.__dataclass_fields__)
_new_object = object.__new__


def coupon_of(values: Sequence[Any]) -> Coupon:
    """``Coupon(*values)`` for a bulk reader: the frozen dataclass's ``__init__`` sets each
    of its fourteen fields through ``object.__setattr__``, half of what parsing a row of a
    feed costs; this fills the slots directly (nothing else happens in ``__init__``)."""
    coupon: Coupon = _new_object(Coupon)
    for fill, value in zip(_COUPON_SLOTS, values, strict=True):
        fill(coupon, value)
    return coupon


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """What the engine needs to know about the member at credit time."""

    tier: str
    first_flight: bool = False
    registrations: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PromotionHit:
    promotion: Promotion
    miles: int  # before caps and budget


@dataclass(frozen=True, slots=True)
class Earning:
    distance: int
    cabin: str
    base_miles: int
    tier_bonus: int
    status_miles: int
    segments: int
    promotions: tuple[PromotionHit, ...] = ()

    @property
    def miles_before_promotions(self) -> int:
        return self.base_miles + self.tier_bonus


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str = ""


def pct_of(amount: int, percent: int) -> int:
    """``amount * percent / 100`` rounded half up, in integers."""
    return (amount * percent + 50) // 100


@lru_cache(maxsize=1)
def airports() -> dict[str, Any]:
    result: dict[str, Any] = airportsdata.load("IATA")
    return result


def airport_country(code: str) -> str | None:
    found = airports().get(code)
    return None if found is None else str(found["country"])


@lru_cache(maxsize=65536)
def great_circle_miles(origin: str, destination: str) -> int | None:
    """Statute miles between two airports by the haversine formula; None if either is
    unknown. Cached: a feed repeats the same few thousand city pairs."""
    table = airports()
    a, b = table.get(origin), table.get(destination)
    if a is None or b is None:
        return None
    lat1, lon1, lat2, lon2 = map(math.radians, (a["lat"], a["lon"], b["lat"], b["lon"]))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return round(2 * EARTH_RADIUS_MILES * math.asin(math.sqrt(h)))


def fare_units(amount: int, currency: str) -> int:
    """Whole currency units of a fare given in minor units (cents are not earned on)."""
    return amount if currency in ZERO_DECIMAL_CURRENCIES else amount // 100


def promotion_applies(p: Promotion, coupon: Coupon, member: MemberFacts) -> bool:
    if p.carriers and coupon.marketing_carrier not in p.carriers:
        return False
    if p.origins and coupon.origin not in p.origins:
        return False
    if p.destinations and coupon.destination not in p.destinations:
        return False
    if p.countries and not ({airport_country(coupon.origin),
                             airport_country(coupon.destination)} & p.countries):
        return False
    if p.booking_classes and coupon.booking_class not in p.booking_classes:
        return False
    if p.tiers and member.tier not in p.tiers:
        return False
    if p.travel_from and coupon.flight_date < p.travel_from:
        return False
    if p.travel_to and coupon.flight_date > p.travel_to:
        return False
    if p.booked_from or p.booked_to:
        booked = coupon.booking_date
        if booked is None:
            return False
        if (p.booked_from and booked < p.booked_from) or (p.booked_to and booked > p.booked_to):
            return False
    if p.first_flight_only and not member.first_flight:
        return False
    return not (p.requires_registration and p.code not in member.registrations)


def earn(rules: RuleBook, coupon: Coupon, member: MemberFacts) -> Earning | Rejection:
    """What ``coupon`` earns ``member`` under the rules in force on the flight date."""
    base = rules.base_earning(coupon, member.tier)
    if isinstance(base, Rejection):
        return base
    hits: tuple[PromotionHit, ...] = ()
    if rules.promotions:
        hits = tuple(hit for hit in (
            PromotionHit(p, pct_of(base.base_miles, p.bonus_percent) + p.fixed_miles)
            for p in rules.promotions if promotion_applies(p, coupon, member))
            if hit.miles > 0)
    if hits:
        return Earning(distance=base.distance, cabin=base.cabin, base_miles=base.base_miles,
                       tier_bonus=base.tier_bonus, status_miles=base.status_miles,
                       segments=base.segments, promotions=hits)
    if base.base_miles + base.tier_bonus + base.status_miles + base.segments <= 0:
        return Rejection(Reason.NOTHING_TO_CREDIT)
    return base  # frozen: one object for every coupon of the same terms


def earn_base(rules: RuleBook, coupon: Coupon, tier: str) -> Earning | Rejection:
    """What ``coupon`` earns a member of ``tier`` before promotions: a function of the
    route, the booking class, the tier, the fare and the rules in force on the flight date
    only (``RuleBook.base_earning`` keeps it by those)."""
    on = coupon.flight_date
    distance = great_circle_miles(coupon.origin, coupon.destination)
    if distance is None:
        unknown = [c for c in (coupon.origin, coupon.destination) if c not in airports()]
        return Rejection(Reason.UNKNOWN_AIRPORT, ", ".join(unknown))
    carrier: CarrierRule | None = rules.in_force(RuleKind.CARRIER, coupon.marketing_carrier, on)
    if carrier is None:
        return Rejection(Reason.CARRIER_NOT_ELIGIBLE, coupon.marketing_carrier)
    cls: BookingClassRule | None = rules.in_force(
        RuleKind.BOOKING_CLASS, class_key(coupon.marketing_carrier, coupon.booking_class), on)
    if cls is None or not cls.eligible:
        return Rejection(Reason.CLASS_NOT_ELIGIBLE,
                         class_key(coupon.marketing_carrier, coupon.booking_class))

    if carrier.earn_method is EarnMethod.REVENUE:
        if coupon.fare_amount is None or coupon.fare_currency is None:
            return Rejection(Reason.FARE_REQUIRED, "revenue-based carrier: send the fare")
        if coupon.fare_currency != carrier.revenue_currency:
            return Rejection(Reason.FARE_CURRENCY_NOT_ACCEPTED,
                             f"fares of {coupon.marketing_carrier} are in "
                             f"{carrier.revenue_currency}")
        rate = carrier.revenue_miles_per_unit_by_tier.get(tier, carrier.revenue_miles_per_unit)
        base = fare_units(coupon.fare_amount, coupon.fare_currency) * rate
    else:
        base = pct_of(distance, cls.miles_percent)
    if base > 0 or cls.miles_percent > 0:
        base = max(base, carrier.min_miles_per_segment)
    status = pct_of(distance, cls.status_miles_percent)
    if status > 0 or cls.status_miles_percent > 0:
        status = max(status, carrier.min_status_miles_per_segment)

    bonus_rule: TierBonusRule | None = rules.in_force(RuleKind.TIER_BONUS, tier, on)
    tier_bonus = pct_of(base, bonus_rule.bonus_percent) if bonus_rule else 0
    return Earning(distance=distance, cabin=cls.cabin, base_miles=base, tier_bonus=tier_bonus,
                   status_miles=status, segments=cls.segments)


def apply_limits(requested: int, *, member_left: int | None, budget_left: int | None) -> int:
    """What a promotion may still award: a capped partial award rather than none."""
    granted = requested
    if member_left is not None:
        granted = min(granted, member_left)
    if budget_left is not None:
        granted = min(granted, budget_left)
    return max(granted, 0)


# -- the shape of a coupon ---------------------------------------------------------------

IATA_AIRPORT_LEN = 3


def coupon_problem(c: Coupon) -> str | None:
    """What is wrong with a coupon's fields beyond their types, or None (a flight in the
    future is a reason of its own, decided by the caller, who knows the date)."""
    if not (c.ticket_number.isalnum() and 8 <= len(c.ticket_number) <= 20):
        return "ticketNumber must be 8-20 letters or digits"
    if not 1 <= c.coupon_number <= 16:
        return "couponNumber must be 1-16"
    for name, value in (("origin", c.origin), ("destination", c.destination)):
        if not (len(value) == IATA_AIRPORT_LEN and value.isalpha() and value.isupper()):
            return f"{name} must be an IATA airport code"
    if c.origin == c.destination:
        return "origin and destination are the same airport"
    for name, value in (("marketingCarrier", c.marketing_carrier),
                        ("operatingCarrier", c.operating_carrier)):
        if not (2 <= len(value) <= 3 and value.isalnum()):
            return f"{name} must be an IATA or ICAO airline code"
    if not (len(c.booking_class) == 1 and c.booking_class.isalpha()):
        return "bookingClass must be one letter"
    if not (1 <= len(c.flight_number) <= 5 and c.flight_number.isalnum()):
        return "flightNumber must be 1-5 letters or digits"
    if (c.fare_amount is None) != (c.fare_currency is None):
        return "fareAmount and fareCurrency go together"
    if c.fare_amount is not None and c.fare_amount < 0:
        return "fareAmount must not be negative"
    if c.booking_date is not None and c.booking_date > c.flight_date:
        return "bookingDate is after flightDate"
    return None


def rulebook(rows: Iterable[tuple[str, str, date, Any]],
             promotions: Sequence[Promotion] = ()) -> RuleBook:
    """A RuleBook from (kind, key, effective_from, body as JSON-able dict) rows."""
    book = RuleBook(promotions=list(promotions))
    for kind, key, effective_from, body in rows:
        rule_kind = RuleKind(kind)
        book.add(rule_kind, key, effective_from,
                 msgspec.convert(body, RULE_TYPES[rule_kind]))
    return book
