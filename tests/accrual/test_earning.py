"""The earn engine by hand, without a database."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date

from lms.accrual.earning import (
    BookingClassRule,
    CarrierRule,
    Coupon,
    Earning,
    EarnMethod,
    MemberFacts,
    Promotion,
    Reason,
    Rejection,
    RuleBook,
    RuleKind,
    TierBonusRule,
    apply_limits,
    coupon_of,
    earn,
    great_circle_miles,
    pct_of,
)

LHR_JFK = 3442  # haversine, earth radius 3958.8 statute miles


def book() -> RuleBook:
    rules = RuleBook()
    rules.add(RuleKind.CARRIER, "LM", date(2020, 1, 1),
              CarrierRule(name="Own", min_miles_per_segment=500))
    rules.add(RuleKind.BOOKING_CLASS, "LM/J", date(2020, 1, 1),
              BookingClassRule(cabin="business", miles_percent=200, status_miles_percent=150))
    rules.add(RuleKind.BOOKING_CLASS, "LM/Q", date(2020, 1, 1),
              BookingClassRule(cabin="economy", miles_percent=25, status_miles_percent=25))
    # From 2026-07-01, Q earns 10 % (the version in force on the flight date applies).
    rules.add(RuleKind.BOOKING_CLASS, "LM/Q", date(2026, 7, 1),
              BookingClassRule(cabin="economy", miles_percent=10, status_miles_percent=25))
    rules.add(RuleKind.BOOKING_CLASS, "LM/G", date(2020, 1, 1),
              BookingClassRule(cabin="economy", eligible=False))
    rules.add(RuleKind.TIER_BONUS, "GOLD", date(2020, 1, 1), TierBonusRule(bonus_percent=50))
    rules.add(RuleKind.CARRIER, "RV", date(2020, 1, 1), CarrierRule(
        name="Revenue", earn_method=EarnMethod.REVENUE, revenue_miles_per_unit=5,
        revenue_miles_per_unit_by_tier={"GOLD": 8}))
    rules.add(RuleKind.BOOKING_CLASS, "RV/Y", date(2020, 1, 1),
              BookingClassRule(cabin="economy"))
    return rules


def flight(**kw: object) -> Coupon:
    values: dict[str, object] = dict(
        ticket_number="1251234567890", coupon_number=1, card_number="7000000001",
        flight_date=date(2026, 6, 1), marketing_carrier="LM", operating_carrier="LM",
        flight_number="1", origin="LHR", destination="JFK", booking_class="J")
    values.update(kw)
    return Coupon(**values)  # type: ignore[arg-type]


def test_great_circle_distance() -> None:
    assert great_circle_miles("LHR", "JFK") == LHR_JFK
    assert great_circle_miles("JFK", "LHR") == LHR_JFK
    assert great_circle_miles("LHR", "XQZ") is None


def test_business_class_with_gold_tier_bonus() -> None:
    result = earn(book(), flight(), MemberFacts("GOLD"))
    assert isinstance(result, Earning)
    # 3442 x 200 % = 6884; GOLD bonus 50 % of 6884 = 3442; status 3442 x 150 % = 5163.
    assert (result.base_miles, result.tier_bonus) == (6884, 3442)
    assert result.miles_before_promotions == 10326
    assert (result.status_miles, result.segments, result.cabin) == (5163, 1, "business")


def test_minimum_per_segment_and_rule_in_force_on_the_flight_date() -> None:
    short = earn(book(), flight(destination="CDG", booking_class="Q"), MemberFacts("BASIC"))
    assert isinstance(short, Earning)
    assert short.base_miles == 500  # 216 x 25 % = 54, raised to the minimum
    before = earn(book(), flight(booking_class="Q", flight_date=date(2026, 6, 30)),
                  MemberFacts("BASIC"))
    after = earn(book(), flight(booking_class="Q", flight_date=date(2026, 7, 1)),
                 MemberFacts("BASIC"))
    assert isinstance(before, Earning) and isinstance(after, Earning)
    assert before.base_miles == pct_of(LHR_JFK, 25) == 861
    assert after.base_miles == 500  # 344 under the new 10 %, raised to the minimum


def test_revenue_based_carrier_earns_on_the_fare_per_tier() -> None:
    coupon = flight(marketing_carrier="RV", booking_class="Y", fare_amount=45_099,
                    fare_currency="USD")
    basic = earn(book(), coupon, MemberFacts("BASIC"))
    gold = earn(book(), coupon, MemberFacts("GOLD"))
    assert isinstance(basic, Earning) and isinstance(gold, Earning)
    assert basic.base_miles == 450 * 5  # whole dollars only
    assert gold.base_miles == 450 * 8
    assert basic.status_miles == LHR_JFK  # status miles stay distance-based
    no_fare = earn(book(), flight(marketing_carrier="RV", booking_class="Y"),
                   MemberFacts("BASIC"))
    assert no_fare == Rejection(Reason.FARE_REQUIRED, "revenue-based carrier: send the fare")
    euros = earn(book(), flight(marketing_carrier="RV", booking_class="Y", fare_amount=100,
                                fare_currency="EUR"), MemberFacts("BASIC"))
    assert isinstance(euros, Rejection) and euros.reason is Reason.FARE_CURRENCY_NOT_ACCEPTED


def test_rejections_name_their_reason() -> None:
    member = MemberFacts("BASIC")

    def reason(coupon: Coupon) -> Reason:
        result = earn(book(), coupon, member)
        assert isinstance(result, Rejection)
        return result.reason

    assert reason(flight(destination="XQZ")) is Reason.UNKNOWN_AIRPORT
    assert reason(flight(booking_class="G")) is Reason.CLASS_NOT_ELIGIBLE
    assert reason(flight(booking_class="P")) is Reason.CLASS_NOT_ELIGIBLE
    assert reason(flight(marketing_carrier="ZZ")) is Reason.CARRIER_NOT_ELIGIBLE
    assert reason(flight(flight_date=date(2019, 12, 31))) is Reason.CARRIER_NOT_ELIGIBLE


def test_promotions_filter_and_stack() -> None:
    rules = book()
    rules.promotions = [
        Promotion("DOUBLE", bonus_percent=100, origins=frozenset({"LHR"}),
                  travel_from=date(2026, 1, 1), travel_to=date(2026, 12, 31)),
        Promotion("US", fixed_miles=250, countries=frozenset({"US"})),
        Promotion("GOLDONLY", fixed_miles=99, tiers=frozenset({"GOLD"})),
        Promotion("REG", fixed_miles=7, requires_registration=True),
        Promotion("FIRST", fixed_miles=1000, first_flight_only=True),
        Promotion("EARLY", fixed_miles=5, booked_to=date(2026, 1, 31)),
    ]
    result = earn(rules, flight(booking_date=date(2026, 1, 15)),
                  MemberFacts("BASIC", first_flight=True, registrations=frozenset({"REG"})))
    assert isinstance(result, Earning)
    assert {h.promotion.code: h.miles for h in result.promotions} == {
        "DOUBLE": 6884, "US": 250, "REG": 7, "FIRST": 1000, "EARLY": 5}
    later = earn(rules, flight(flight_date=date(2027, 1, 2)), MemberFacts("GOLD"))
    assert isinstance(later, Earning)
    assert {h.promotion.code: h.miles for h in later.promotions} == {"US": 250, "GOLDONLY": 99}


def test_limits_give_a_capped_partial_award() -> None:
    assert apply_limits(1000, member_left=None, budget_left=None) == 1000
    assert apply_limits(1000, member_left=300, budget_left=None) == 300
    assert apply_limits(1000, member_left=300, budget_left=120) == 120
    assert apply_limits(1000, member_left=None, budget_left=0) == 0
    assert apply_limits(1000, member_left=-5, budget_left=10) == 0


def test_remembered_earnings_follow_the_date_the_tier_the_fare_and_new_versions() -> None:
    rules = book()
    basic, gold = MemberFacts("BASIC"), MemberFacts("GOLD")

    def miles(c: Coupon, member: MemberFacts) -> int:
        result = earn(rules, c, member)
        assert isinstance(result, Earning)
        return result.base_miles + result.tier_bonus

    before, after = flight(booking_class="Q", flight_date=date(2026, 6, 30)), flight(
        booking_class="Q", flight_date=date(2026, 7, 1))
    for _ in range(2):  # the second time from what the book remembers
        assert miles(before, basic) == pct_of(LHR_JFK, 25)
        assert miles(after, basic) == max(pct_of(LHR_JFK, 10), 500)
        assert miles(before, gold) == pct_of(LHR_JFK, 25) + pct_of(pct_of(LHR_JFK, 25), 50)
    revenue = flight(marketing_carrier="RV", booking_class="Y", fare_amount=1,
                     fare_currency="USD")
    assert miles(replace(revenue, fare_amount=10_000), basic) == 500
    assert miles(replace(revenue, fare_amount=20_000), basic) == 1000
    # A new version is seen at once, by the coupons of its period only.
    rules.add(RuleKind.BOOKING_CLASS, "LM/Q", date(2026, 6, 15),
              BookingClassRule(cabin="economy", miles_percent=50, status_miles_percent=25))
    assert miles(before, basic) == pct_of(LHR_JFK, 50)
    assert miles(flight(booking_class="Q", flight_date=date(2026, 6, 14)), basic) == pct_of(
        LHR_JFK, 25)
    assert miles(after, basic) == max(pct_of(LHR_JFK, 10), 500)


def test_remembered_earnings_are_what_a_fresh_book_gives() -> None:
    rng = random.Random(5)
    remembered = book()
    airports_ = ["LHR", "JFK", "CDG", "SIN", "XXX"]
    for _ in range(2000):
        origin, destination = rng.sample(airports_, 2)
        carrier = rng.choice(["LM", "RV", "ZZ"])
        fare = rng.choice([None, 10_000, 12_345])
        c = flight(flight_date=date(2026, rng.randint(5, 8), rng.randint(1, 28)),
                   marketing_carrier=carrier, booking_class=rng.choice("JQGY"),
                   origin=origin, destination=destination, fare_amount=fare,
                   fare_currency=None if fare is None else rng.choice(["USD", "EUR"]))
        member = MemberFacts(rng.choice(["BASIC", "GOLD"]))
        assert earn(remembered, c, member) == earn(book(), c, member)


def test_a_coupon_filled_slot_by_slot_is_the_coupon_its_constructor_makes() -> None:
    values = ("1251234567890", 2, "7000000001", date(2026, 6, 1), "LM", "PA", "12", "LHR",
              "JFK", "J", "business", date(2026, 5, 1), 123_45, "USD")
    filled = coupon_of(values)
    assert filled == Coupon(*values)
    assert filled.external_ref == "1251234567890/2"
    assert hash(filled) == hash(Coupon(*values))
